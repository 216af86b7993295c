"""Metering's bus side over real NATS and chDB: the ingest stores sample batches and dead-letters
what does not decode; the query responder answers, or raises a reversed range as its TY error."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.support import eventually, unique
from tingyu.common import subjects
from tingyu.common.bus import Bus, call, serve
from tingyu.common.errors import InvalidTimeRange
from tingyu.common.models.dead import DeadLetter
from tingyu.common.models.metering import MeteringQuery, MeteringReply, MeteringScope, Sample, SampleBatch
from tingyu.common.settings import PlatformSettings
from tingyu.metering.config import DEFAULT_SCHEMA, MeteringSettings
from tingyu.metering.ingest import Ingest
from tingyu.metering.responder import QueryResponder
from tingyu.metering.store import ClickHouse


@pytest_asyncio.fixture
async def metering(nats_url: str, tmp_path: Path) -> AsyncIterator[tuple[Bus, ClickHouse, str]]:
    """A bus, a chDB store fed by a running ingest, and the subject its responder answers on."""
    platform = PlatformSettings(nats_url=nats_url)
    bus = await Bus.connect(platform, "metering-tests")
    store = ClickHouse.open("", tmp_path / "chdb")
    await store.apply_schema(DEFAULT_SCHEMA)
    subject = f"test.metering.{unique()}"
    sub = await serve(bus, subject, MeteringQuery, QueryResponder(store).answer)
    stop = asyncio.Event()
    ingest = asyncio.create_task(
        Ingest(bus, store, MeteringSettings(batch_wait_s=0.2, platform=platform)).run(stop)
    )
    try:
        yield bus, store, subject
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ingest, 10)
        await sub.close()
        await store.close()
        await bus.close()


def _samples(node: str, image: str, start: int, count: int) -> list[Sample]:
    return [
        Sample(
            sample_id=f"{node}-{i}",
            node_uuid=node,
            deploymentname="web",
            image=image,
            version="v1",
            ts=start + 10 * i,
            interval_s=10,
            tx_bytes=3000,
            rx_bytes=1000,
        )
        for i in range(count)
    ]


async def test_ingest_stores_batches_and_dead_letters_garbage(metering: tuple[Bus, ClickHouse, str]) -> None:
    bus, store, subject = metering
    node, image = unique("node"), unique("img")
    start = int(time.time()) // 300 * 300 - 600
    samples = _samples(node, image, start, 12)
    await bus.js.publish(subjects.samples(node), b"not a sample batch")
    for part in (samples[:5], samples[5:]):
        batch = SampleBatch(batch_id=unique("b"), node_uuid=node, samples=part)
        await bus.publish(subjects.samples(node), batch, msg_id=batch.batch_id)

    async def stored() -> int:
        rows = await store.rows(
            "SELECT count() FROM tingyu.samples WHERE node_uuid = {n:String}", {"n": node}
        )
        return int(rows[0][0]) == len(samples)

    await eventually(stored, timeout=30)

    async def parked() -> DeadLetter | None:
        raw = await bus.js.get_last_msg(subjects.DEAD.name, subjects.dead(subjects.METERING_SAMPLES.durable))
        letter = DeadLetter.from_bytes(raw.data or b"")
        return letter if letter.subject == subjects.samples(node) else None

    letter = await eventually(parked, timeout=30)
    assert "undecodable" in letter.reason

    query = MeteringQuery(scope=MeteringScope.CONTAINERS, start=start, end=start + 600, image=image)
    reply = await call(bus, subject, query, MeteringReply)
    assert reply.summary.up_bytes == 3000 * len(samples)
    assert len(reply.columns.a) == reply.summary.buckets == 3


async def test_a_reversed_range_comes_back_as_its_error(metering: tuple[Bus, ClickHouse, str]) -> None:
    bus, _, subject = metering
    query = MeteringQuery(scope=MeteringScope.ACCOUNT, start=2000.0, end=1000.0)
    with pytest.raises(InvalidTimeRange) as reversed_range:
        await call(bus, subject, query, MeteringReply)
    assert reversed_range.value.msg == "时间范围错误: start is after end"
