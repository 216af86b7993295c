"""Metering service: apply the schema, consume samples into ClickHouse, answer range queries."""

from __future__ import annotations

import gc
import logging

from tingyu.common import subjects
from tingyu.common.bus import serve
from tingyu.common.models.metering import MeteringQuery
from tingyu.common.service import Service, run_service, settings_checked
from tingyu.metering.config import get_settings
from tingyu.metering.ingest import Ingest
from tingyu.metering.responder import QueryResponder
from tingyu.metering.rollups import backfill
from tingyu.metering.store import ClickHouse

log = logging.getLogger(__name__)

GC_YOUNG = 100_000  # allocations between young-generation collections (Python's default: 700)


async def setup(service: Service) -> None:
    """ClickHouse first, then the bus (closed in reverse order); the query responder; the ingest."""
    settings = get_settings()
    # Opening the store first: with chDB a second process on the same path fails here, before
    # it takes any sample off the stream.
    service.metrics(settings.metrics_port)
    store = ClickHouse.open(settings.clickhouse_url, settings.chdb_path)
    service.stack.push_async_callback(store.close)
    await store.apply_schema(settings.schema_file)
    await backfill(store)  # before consuming: an upgrade's one-time copy
    bus = await service.connect(settings.platform)
    queries = await serve(
        bus,
        subjects.METERING_QUERY,
        MeteringQuery,
        QueryResponder(store).answer,
        queue=subjects.QUEUE_METERING,
    )
    service.stack.push_async_callback(queries.close)
    service.loop("ingest", Ingest(bus, store, settings).run)
    # Ingest keeps tens of thousands of decoded samples alive between inserts; with the default
    # thresholds the cycle collector walks them all again and again (a third of the ingest's CPU).
    # Samples hold no cycles and are freed by reference counting, so it may run far less often.
    gc.freeze()
    gc.set_threshold(GC_YOUNG, 50, 100)
    where = "ClickHouse server" if settings.clickhouse_url else f"chDB at {settings.chdb_path}"
    log.info("metering ready (%s)", where)


def run() -> None:
    with settings_checked("metering"):
        level = get_settings().platform.log_level
    run_service("metering", setup, level)


if __name__ == "__main__":
    run()
