"""Metering's bus side over real NATS and chDB: the ingest stores sample batches and dead-letters
what does not decode, stores a batch published or delivered again once, loses nothing when it dies
between an insert and its ack; the query responder answers, or raises a reversed range as its TY error."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import math
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from bench.metering.fleet import Fleet
from nats.aio.msg import Msg

from tests.integration.metering.test_metering import _fleet, expected
from tests.support import eventually, unique
from tingyu.common import subjects
from tingyu.common.bus import Bus, call, serve
from tingyu.common.errors import InvalidTimeRange
from tingyu.common.models.dead import DeadLetter
from tingyu.common.models.metering import (
    MeteringQuery,
    MeteringReply,
    MeteringScope,
    MeteringSeries,
    Sample,
    SampleBatch,
)
from tingyu.common.settings import PlatformSettings
from tingyu.common.subjects import ConsumerSpec
from tingyu.metering.config import DEFAULT_SCHEMA, MeteringSettings
from tingyu.metering.ingest import SPEC, Ingest
from tingyu.metering.queries import run_query
from tingyu.metering.responder import QueryResponder
from tingyu.metering.samples import Good
from tingyu.metering.store import ClickHouse


@pytest_asyncio.fixture
async def metering(nats_url: str, tmp_path: Path) -> AsyncIterator[tuple[Bus, ClickHouse, str, Ingest]]:
    """A bus, a chDB store fed by a running ingest, the subject its responder answers on, the ingest."""
    platform = PlatformSettings(nats_url=nats_url)
    bus = await Bus.connect(platform, "metering-tests")
    store = ClickHouse.open("", tmp_path / "chdb")
    await store.apply_schema(DEFAULT_SCHEMA)
    subject = f"test.metering.{unique()}"
    sub = await serve(bus, subject, MeteringQuery, QueryResponder(store).answer)
    stop = asyncio.Event()
    ingest = Ingest(bus, store, MeteringSettings(batch_wait_s=0.2, platform=platform))
    running = asyncio.create_task(ingest.run(stop))
    try:
        yield bus, store, subject, ingest
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(running, 10)
        await sub.close()
        await store.close()
        await bus.close()


@contextlib.asynccontextmanager
async def _bus_and_store(
    nats_url: str, tmp_path: Path, name: str, store: ClickHouse | None = None
) -> AsyncIterator[tuple[Bus, ClickHouse]]:
    """A connection of its own and a chDB store (`store`, or a plain one) with the schema applied."""
    bus = await Bus.connect(PlatformSettings(nats_url=nats_url), name)
    store = store or ClickHouse.open("", tmp_path / "chdb")
    try:
        await store.apply_schema(DEFAULT_SCHEMA)
        yield bus, store
    finally:
        await store.close()
        await bus.close()


def _named_twice(node: str, first: list[Sample], second: list[Sample]) -> bytes:
    """A batch of `node` whose JSON names `samples` twice: `first`, then `second`."""
    head = json.dumps({"batch_id": unique("b"), "node_uuid": node})[:-1]
    dumped = [json.dumps({"samples": [s.model_dump(mode="json") for s in part]}) for part in (first, second)]
    raw = f"{head}, {dumped[0][1:-1]}, {dumped[1][1:]}"
    assert raw.count('"samples"') == 2
    return raw.encode()


async def _drained(bus: Bus, durable: str) -> bool:
    """The ingest's consumer holds nothing pending and nothing unacknowledged."""
    info = await bus.js.consumer_info(subjects.SAMPLES.name, durable)
    return not info.num_pending and not info.num_ack_pending


async def _ingest_until_drained(
    bus: Bus,
    store: ClickHouse,
    settings: MeteringSettings,
    spec: ConsumerSpec[SampleBatch],
    *,
    timeout: float,
) -> None:
    """Run an ingest (a new replica: nothing in memory) until its consumer is drained."""
    stop = asyncio.Event()
    running = asyncio.create_task(Ingest(bus, store, settings, spec).run(stop))
    try:
        await eventually(lambda: _drained(bus, spec.durable), timeout=timeout)
    finally:
        stop.set()
        await asyncio.wait_for(running, 10)


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


async def test_ingest_stores_batches_and_dead_letters_garbage(
    metering: tuple[Bus, ClickHouse, str, Ingest],
) -> None:
    bus, store, subject, _ = metering
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


async def test_a_reversed_range_comes_back_as_its_error(
    metering: tuple[Bus, ClickHouse, str, Ingest],
) -> None:
    bus, _, subject, _ = metering
    query = MeteringQuery(scope=MeteringScope.ACCOUNT, start=2000.0, end=1000.0)
    with pytest.raises(InvalidTimeRange) as reversed_range:
        await call(bus, subject, query, MeteringReply)
    assert reversed_range.value.msg == "时间范围错误: start is after end"


async def _publish(bus: Bus, batches: list[SampleBatch], suffix: str = "") -> None:
    for batch in batches:
        await bus.publish(subjects.samples(batch.node_uuid), batch, msg_id=batch.batch_id + suffix)


async def _counts(store: ClickHouse, nodes: list[str]) -> tuple[int, int]:
    """Raw rows of these machines, and how many distinct sample ids they hold."""
    rows = await store.rows(
        "SELECT count(), uniqExact(sample_id) FROM tingyu.samples WHERE node_uuid IN {n:Array(String)}",
        {"n": nodes},
    )
    return int(rows[0][0]), int(rows[0][1])


async def _answers_once(store: ClickHouse, samples: list[Sample], start: float, end: float) -> None:
    """Every figure of both series, for the machines and for containers, counts each sample once."""
    for scope in (MeteringScope.ACCOUNT, MeteringScope.CONTAINERS):
        want = expected(samples, start, end, account=scope == MeteringScope.ACCOUNT)
        query = MeteringQuery(scope=scope, start=start, end=end)
        points, summary = await run_query(store, query, (MeteringSeries.BANDWIDTH, MeteringSeries.RESOURCES))
        assert summary.up_bytes == want["up_bytes"]
        assert [p.up_bps for p in points] == pytest.approx(want["up"])
        assert [p.cpu_cores for p in points] == pytest.approx(want["cpu"])
        assert summary.p95_memory_mib == pytest.approx(want["p95_mem"])


async def test_a_batch_published_again_counts_once_and_a_bad_sample_drops_alone(
    metering: tuple[Bus, ClickHouse, str, Ingest],
) -> None:
    bus, store, _, ingest = metering
    fleet = _fleet(machines=2, ticks=60)
    batches = fleet.batches()
    samples = [s for b in batches for s in b.samples]
    nodes = [fleet.uuid(m) for m in range(fleet.machines)]
    await _publish(bus, batches)

    async def stored() -> bool:
        return await _counts(store, nodes) == (len(samples), len(samples))

    await eventually(stored, timeout=30)
    # The same batches again under other message ids (JetStream cannot tell), and a batch with
    # one NaN sample among new good ones: the good ones are stored, the repeated ones not.
    await _publish(bus, batches, suffix="-again")
    late = Fleet(unique("late"), 1, fleet.images, fleet.start - 7200, 10)  # outside the range checked
    good = [s for b in late.batches() for s in b.samples]
    poisoned = json.loads(SampleBatch(batch_id=unique("b"), node_uuid=late.uuid(0), samples=good).to_bytes())
    poisoned["samples"].insert(
        1, {**poisoned["samples"][0], "sample_id": unique("nan"), "cpu_cores": "NaN-x"}
    )
    raw = json.dumps(poisoned).replace('"NaN-x"', "NaN").encode()
    await bus.js.publish(subjects.samples(late.uuid(0)), raw, headers={"Nats-Msg-Id": poisoned["batch_id"]})

    async def late_stored() -> bool:
        return await _counts(store, [late.uuid(0)]) == (len(good), len(good))

    await eventually(late_stored, timeout=30)
    assert ingest.dropped["not a finite number"] == 1

    await eventually(
        lambda: _drained(bus, SPEC.durable), timeout=30
    )  # the repeated batches were taken off the stream too
    assert await _counts(store, nodes) == (len(samples), len(samples))
    await _answers_once(store, samples, fleet.start, fleet.start + fleet.ticks * fleet.step_s)


async def test_a_key_named_twice_is_stored_as_it_was_checked(
    metering: tuple[Bus, ClickHouse, str, Ingest],
) -> None:
    """JSON may name a key twice; the checks read its last value, so the store must not read the
    first. A batch whose first `samples` holds another machine's samples and whose second holds
    its own stores its own alone."""
    bus, store, _, _ = metering
    node, other, image = unique("node"), unique("victim"), unique("img")
    start = int(time.time()) // 300 * 300 - 600
    own = _samples(node, image, start, 3)
    await bus.js.publish(subjects.samples(node), _named_twice(node, _samples(other, image, start, 3), own))

    async def stored() -> bool:
        return await _counts(store, [node]) == (len(own), len(own))

    await eventually(stored, timeout=30)
    await eventually(lambda: _drained(bus, SPEC.durable), timeout=30)
    assert await _counts(store, [other]) == (0, 0)


class SlowStore(ClickHouse):
    """Every INSERT of samples takes `delay` more (a quarter of a second: the store is the
    bottleneck); inserts and recomputations are counted."""

    delay = 0.25
    inserts = 0
    recomputations = 0

    async def command(self, sql: str, params: dict[str, object] | None = None) -> None:
        if sql.startswith("INSERT INTO tingyu.samples_in"):
            self.inserts += 1
            await asyncio.sleep(self.delay)
        elif sql.lstrip().startswith("INSERT INTO tingyu.resources_5m"):
            self.recomputations += 1
        await super().command(sql, params)


async def test_inserts_waiting_on_the_store_share_one_recomputation_and_count_once(
    nats_url: str, tmp_path: Path
) -> None:
    """While the next batch waits for the store, an insert leaves its resource recomputation (and
    its acks) to the next one: fewer recomputations than inserts, the same figures."""
    slow = SlowStore(ClickHouse.open("", tmp_path / "chdb").engine)
    async with _bus_and_store(nats_url, tmp_path, "metering-shared-tests", slow) as (bus, store):
        fleet = _fleet(machines=3, ticks=120)
        batches = fleet.batches()
        samples = [s for b in batches for s in b.samples]
        nodes = [fleet.uuid(m) for m in range(fleet.machines)]
        await _publish(bus, batches)
        per_insert = len(samples) // 12  # about twelve inserts
        settings = MeteringSettings(
            batch_wait_s=0.2, batch_samples=per_insert, platform=PlatformSettings(nats_url=nats_url)
        )
        await _ingest_until_drained(bus, store, settings, SPEC, timeout=60)
        assert await _counts(store, nodes) == (len(samples), len(samples))
        assert slow.inserts >= 10
        assert slow.recomputations < slow.inserts / 2, (slow.inserts, slow.recomputations)
        await _answers_once(store, samples, fleet.start, fleet.start + fleet.ticks * fleet.step_s)


async def test_one_bad_message_among_many_costs_a_few_inserts_not_one_each(
    nats_url: str, tmp_path: Path
) -> None:
    """An insert that fails is split in halves until the message that fails is alone: the others
    are stored in a few inserts, the bad one as the checks read it."""
    counted = SlowStore(ClickHouse.open("", tmp_path / "chdb").engine)
    counted.delay = 0.0
    async with _bus_and_store(nats_url, tmp_path, "metering-apart-tests", counted) as (bus, store):
        fleet = _fleet(machines=64, ticks=2)
        batches = fleet.batches()  # one message a machine
        samples = [s for b in batches for s in b.samples]
        nodes = [fleet.uuid(m) for m in range(fleet.machines)]
        node = unique("node")
        own = _samples(node, unique("img"), fleet.start, 3)
        await _publish(bus, batches[:40])
        await bus.js.publish(subjects.samples(node), _named_twice(node, own, own))
        await _publish(bus, batches[40:])
        settings = MeteringSettings(batch_wait_s=0.5, platform=PlatformSettings(nats_url=nats_url))
        await _ingest_until_drained(bus, store, settings, SPEC, timeout=60)
        assert await _counts(store, nodes) == (len(samples), len(samples))
        assert await _counts(store, [node]) == (len(own), len(own))
        levels = math.ceil(math.log2(len(batches) + 1))  # 65 messages: 7
        assert counted.inserts <= 1 + 2 * levels + 1, counted.inserts  # the batch, two a level, the bad one


class Crash(Exception):
    """The process died here."""


class CrashAfterInsert(Ingest):
    """Stores its first batch, then dies before acking it, as a process killed at that point would."""

    async def acknowledge(self, entries: list[tuple[object, list[Sample]]]) -> None:  # type: ignore[override]
        raise Crash


async def test_a_crash_between_insert_and_ack_loses_nothing_and_counts_once(
    nats_url: str, tmp_path: Path
) -> None:
    platform = PlatformSettings(nats_url=nats_url)
    settings = MeteringSettings(batch_wait_s=0.2, platform=platform)
    spec = dataclasses.replace(SPEC, ack_wait_s=1.0)  # redelivered a second after the crash
    bus = await Bus.connect(platform, "metering-crash-tests")
    store = ClickHouse.open("", tmp_path / "chdb")
    try:
        await store.apply_schema(DEFAULT_SCHEMA)
        fleet = _fleet(machines=3, ticks=60)
        batches = fleet.batches()
        samples = [s for b in batches for s in b.samples]
        nodes = [fleet.uuid(m) for m in range(fleet.machines)]
        await _publish(bus, batches)
        with pytest.raises(Crash):
            await asyncio.wait_for(CrashAfterInsert(bus, store, settings, spec).run(asyncio.Event()), 30)
        stored_before = await _counts(store, nodes)
        assert 0 < stored_before[0] == stored_before[1]  # the insert happened, its acks did not

        # A new process (nothing in memory): the unacked messages come again and are found stored.
        before = await bus.js.consumer_info(subjects.SAMPLES.name, spec.durable)
        assert before.num_ack_pending == len(batches)
        await _ingest_until_drained(bus, store, settings, spec, timeout=30)
        after = await bus.js.consumer_info(subjects.SAMPLES.name, spec.durable)
        assert after.delivered.consumer_seq - before.delivered.consumer_seq == len(batches)  # all again
        assert await _counts(store, nodes) == (len(samples), len(samples))
        await _answers_once(store, samples, fleet.start, fleet.start + fleet.ticks * fleet.step_s)
    finally:
        await store.close()
        await bus.close()


async def test_the_end_of_a_backlog_is_stored_without_waiting_out_the_batch_delay(
    nats_url: str, tmp_path: Path
) -> None:
    """A pull comes back with what the stream holds, and a batch at least half full is stored once
    nothing more is there: with a 30 s batch delay, the backlog is stored in seconds."""
    async with _bus_and_store(nats_url, tmp_path, "metering-backlog-tests") as (bus, store):
        fleet = _fleet(machines=3, ticks=60)
        batches = fleet.batches()
        samples = [s for b in batches for s in b.samples]
        nodes = [fleet.uuid(m) for m in range(fleet.machines)]
        await _publish(bus, batches)
        # The backlog fills two thirds of an insert.
        platform = PlatformSettings(nats_url=nats_url)
        settings = MeteringSettings(batch_wait_s=30.0, batch_samples=len(samples) * 3 // 2, platform=platform)
        stop = asyncio.Event()
        running = asyncio.create_task(Ingest(bus, store, settings).run(stop))

        async def stored() -> bool:
            return await _counts(store, nodes) == (len(samples), len(samples))

        try:
            started = time.monotonic()
            await eventually(stored, timeout=10)
            assert time.monotonic() - started < 10
            await eventually(lambda: _drained(bus, SPEC.durable), timeout=10)  # and acked
        finally:
            stop.set()  # its open pull may wait out the 30 s before the loop sees it
            await asyncio.wait_for(running, 40)


async def test_a_pull_cut_at_its_byte_bound_is_no_end_of_the_backlog(nats_url: str, tmp_path: Path) -> None:
    """Large agent batches fill a pull's byte bound long before its count: such a pull says the
    stream holds more, so inserts stay full (a batch half full is stored early only at the end)."""
    counted = SlowStore(ClickHouse.open("", tmp_path / "chdb").engine)
    counted.delay = 0.0
    async with _bus_and_store(nats_url, tmp_path, "metering-bytes-tests", counted) as (bus, store):
        probe = dataclasses.replace(_fleet(machines=1, ticks=130), ticks_per_batch=130)
        message_bytes = len(probe.batches()[0].to_bytes())  # about 100 kB: 390 samples
        per_pull = bus.nc.max_payload // message_bytes  # the least byte bound a pull may have
        assert per_pull >= 3, per_pull
        per_insert = 4 * per_pull  # messages
        fleet = dataclasses.replace(probe, machines=2, ticks=130 * per_insert)  # two inserts' worth
        batches = fleet.batches()
        samples = [s for b in batches for s in b.samples]
        await _publish(bus, batches)
        settings = MeteringSettings(
            batch_wait_s=5.0,
            batch_samples=per_insert * len(batches[0].samples),
            pull_max_bytes=bus.nc.max_payload,
            platform=PlatformSettings(nats_url=nats_url),
        )
        await _ingest_until_drained(bus, store, settings, SPEC, timeout=60)
        assert await _counts(store, [fleet.uuid(m) for m in range(2)]) == (len(samples), len(samples))
        assert counted.inserts == 2, counted.inserts


class Killed(BaseException):
    """The process was killed here: no handler of the ingest runs (not an `Exception`)."""


class KilledBeforeInsert(Ingest):
    """Takes messages off the stream and checks them, then is killed before storing any."""

    async def store_new(
        self, entries: list[tuple[Msg, Good]], again: list[Good], *, recompute: bool = True
    ) -> int:
        raise Killed


async def test_a_kill_between_fetch_and_insert_delivers_every_taken_message_again(
    nats_url: str, tmp_path: Path
) -> None:
    platform = PlatformSettings(nats_url=nats_url)
    settings = MeteringSettings(batch_wait_s=0.2, platform=platform)
    spec = dataclasses.replace(SPEC, ack_wait_s=2.0)  # delivered again two seconds after the kill
    bus = await Bus.connect(platform, "metering-kill-tests")
    killed_bus = await Bus.connect(platform, "metering-killed")
    store = ClickHouse.open("", tmp_path / "chdb")
    try:
        await store.apply_schema(DEFAULT_SCHEMA)
        fleet = _fleet(machines=3, ticks=40)
        batches = fleet.batches()
        taken, later = batches[: len(batches) // 2], batches[len(batches) // 2 :]
        samples = [s for b in batches for s in b.samples]
        nodes = [fleet.uuid(m) for m in range(fleet.machines)]
        await _publish(bus, taken)
        with pytest.raises(Killed):
            await asyncio.wait_for(
                KilledBeforeInsert(killed_bus, store, settings, spec).run(asyncio.Event()), 30
            )
        await killed_bus.close()  # its connection goes with it
        before = await bus.js.consumer_info(subjects.SAMPLES.name, spec.durable)
        assert before.num_ack_pending == len(taken)  # taken off the stream, none acked
        assert await _counts(store, nodes) == (0, 0)

        # Another replica takes the later messages; the taken ones come back after the ack wait.
        await _publish(bus, later)
        await _ingest_until_drained(bus, store, settings, spec, timeout=60)
        after = await bus.js.consumer_info(subjects.SAMPLES.name, spec.durable)
        # each taken message once more, each later one once (more when an insert outlasts the short
        # ack wait on a loaded box: those are found stored, the counts below hold either way)
        assert after.delivered.consumer_seq - before.delivered.consumer_seq >= len(batches)
        assert await _counts(store, nodes) == (len(samples), len(samples))
        await _answers_once(store, samples, fleet.start, fleet.start + fleet.ticks * fleet.step_s)
    finally:
        await store.close()
        await bus.close()


async def test_a_failed_recomputation_after_the_insert_is_retried_without_a_second_insert(
    metering: tuple[Bus, ClickHouse, str, Ingest],
) -> None:
    bus, store, _, _ = metering
    fleet = _fleet(machines=2, ticks=30)
    batches = fleet.batches()
    samples = [s for b in batches for s in b.samples]
    nodes = [fleet.uuid(m) for m in range(fleet.machines)]
    # The resource rollup gone: every insert succeeds and its recomputation fails.
    await store.command("RENAME TABLE tingyu.resources_5m TO tingyu.resources_5m_away")
    try:
        await _publish(bus, batches)

        async def inserted() -> bool:
            return await _counts(store, nodes) == (len(samples), len(samples))

        await eventually(inserted, timeout=30)
        info = await bus.js.consumer_info(subjects.SAMPLES.name, SPEC.durable)
        assert info.num_ack_pending  # not acked while its buckets are not recomputed
    finally:
        await store.command("RENAME TABLE tingyu.resources_5m_away TO tingyu.resources_5m")

    await eventually(
        lambda: _drained(bus, SPEC.durable), timeout=60
    )  # retried after the nak's delay: now recomputed and acked
    assert await _counts(store, nodes) == (len(samples), len(samples))
    await _answers_once(store, samples, fleet.start, fleet.start + fleet.ticks * fleet.step_s)
