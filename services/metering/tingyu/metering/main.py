"""Metering service: apply the schema, consume samples into ClickHouse, answer range queries."""

from __future__ import annotations

import asyncio
import logging

from tingyu.common.bus import Bus
from tingyu.common.service import run as run_service
from tingyu.metering import responder
from tingyu.metering.config import MeteringSettings, get_settings
from tingyu.metering.ingest import ingest
from tingyu.metering.rollups import backfill_bandwidth
from tingyu.metering.store import Store

log = logging.getLogger(__name__)


async def main(stop: asyncio.Event, settings: MeteringSettings | None = None) -> None:
    settings = settings or get_settings()
    # Opening the store first: with chDB a second process on the same path fails here, before
    # it takes any sample off the stream.
    store = Store.open(settings.clickhouse_url, settings.chdb_path)
    try:
        await store.apply_schema(settings.schema_file)
        await backfill_bandwidth(store)  # before consuming: an upgrade's one-time copy
        bus = await Bus.connect(settings.platform, "tingyu-metering")
        try:
            queries = await responder.serve(bus, store)
            where = "ClickHouse server" if settings.clickhouse_url else f"chDB at {settings.chdb_path}"
            log.info("metering ready (%s)", where)
            try:
                await ingest(bus, store, settings, stop)
            finally:
                await queries.unsubscribe()
        finally:
            await bus.close()
    finally:
        await store.close()


def run() -> None:
    settings = get_settings()
    run_service("metering", main, settings.platform.log_level)


if __name__ == "__main__":
    run()
