"""Metering against real parts: sums, peaks and the 95th percentile equal an independent computation,
redelivered samples count once, and samples published while metering is down are not lost."""

from __future__ import annotations

import json
import math
import random
import re
import time
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest
from bench.metering.fleet import Fleet

from tests.support import eventually, unique
from tingyu.cli.launcher import Platform
from tingyu.common import subjects, timefmt
from tingyu.common.bus import Bus
from tingyu.common.models.metering import (
    MeteringQuery,
    MeteringScope,
    MeteringSeries,
    Sample,
    SampleBatch,
    bucket_range,
)
from tingyu.metering.config import DEFAULT_SCHEMA
from tingyu.metering.queries import run_query
from tingyu.metering.rollups import backfill_bandwidth, backfill_resources
from tingyu.metering.samples import Window, fast_accepted, insert_goods, insert_sql, store_samples, stored_ids
from tingyu.metering.store import ClickHouse

FIVE_MIN = 300


def expected(
    samples: Iterable[Sample], start: float, end: float, *, account: bool, image: str = "", version: str = ""
) -> dict[str, Any]:
    """The figures computed without ClickHouse: per bucket sum across machines, then peak and p95."""
    first = int(start) // FIVE_MIN * FIVE_MIN
    buckets = list(range(first, int(end) // FIVE_MIN * FIVE_MIN + 1, FIVE_MIN))
    tx: dict[int, int] = defaultdict(int)
    rx: dict[int, int] = defaultdict(int)
    busy: dict[tuple[int, str], list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for s in samples:
        if account != (s.deploymentname == ""):
            continue
        if (image and s.image != image) or (version and s.version != version):
            continue
        bucket = int(s.ts) // FIVE_MIN * FIVE_MIN
        tx[bucket] += s.tx_bytes
        rx[bucket] += s.rx_bytes
        acc = busy[bucket, s.deploymentname]
        acc[0] += s.cpu_cores * s.interval_s
        acc[1] += s.memory_mib * s.interval_s
        acc[2] += s.interval_s
    cpu: dict[int, float] = defaultdict(float)
    mem: dict[int, float] = defaultdict(float)
    for (bucket, _), (core_s, mib_s, secs) in busy.items():
        cpu[bucket] += core_s / secs
        mem[bucket] += mib_s / secs

    def billed(values: list[float]) -> float:
        ordered = sorted(values)
        return ordered[math.ceil(len(ordered) * 0.95) - 1]

    up = [tx[b] * 8 / FIVE_MIN for b in buckets]
    down = [rx[b] * 8 / FIVE_MIN for b in buckets]
    cpus = [cpu[b] for b in buckets]
    mems = [mem[b] for b in buckets]
    return {
        "buckets": buckets,
        "up": up,
        "cpu": cpus,
        "peak_up": max(up),
        "p95_up": billed(up),
        "p95_down": billed(down),
        "peak_cpu": max(cpus),
        "p95_cpu": billed(cpus),
        "p95_mem": billed(mems),
        "up_bytes": sum(tx.values()),
    }


def _fleet(machines: int = 3, ticks: int = 240) -> Fleet:
    # Three weeks back at a random minute: no live agent writes there, and within the raw TTL.
    start = int(time.time()) - 21 * 86400 + random.randrange(0, 86400) // 30 * 30
    tag = unique("img")
    return Fleet(unique("fleet"), machines, [(tag, "v1"), (tag, "v2")], start, ticks)


async def test_store_matches_independent_computation_and_counts_once(tmp_path: Path) -> None:
    fleet = _fleet()
    batches = fleet.batches()
    samples = [s for b in batches for s in b.samples]
    store = ClickHouse.open("", tmp_path / "chdb")
    try:
        await store.apply_schema(DEFAULT_SCHEMA)
        half = samples[: len(samples) // 2]
        assert await store_samples(store, half) == len(half)
        # The same INSERT retried (its success was not seen): the deduplication token drops it.
        await store.command(insert_sql(half))
        # A redelivery overlapping what is stored: the lookup finds exactly the stored ids.
        known = await stored_ids(store, samples)
        assert known == {s.sample_id for s in half}
        fresh = [s for s in samples if s.sample_id not in known]
        assert await store_samples(store, fresh + fresh) == len(samples) - len(half)  # one per id
        assert await stored_ids(store, samples) == {s.sample_id for s in samples}

        start, end = fleet.start - 3600, fleet.start + fleet.ticks * fleet.step_s + 1800
        image = fleet.images[0][0]
        for query, want in (
            (
                MeteringQuery(scope=MeteringScope.ACCOUNT, start=start, end=end),
                expected(samples, start, end, account=True),
            ),
            (
                MeteringQuery(scope=MeteringScope.CONTAINERS, start=start, end=end, image=image),
                expected(samples, start, end, account=False, image=image),
            ),
            (
                MeteringQuery(
                    scope=MeteringScope.CONTAINERS, start=start, end=end, image=image, version="v2"
                ),
                expected(samples, start, end, account=False, image=image, version="v2"),
            ),
        ):
            points, summary = await run_query(store, query)
            assert [p.time for p in points] == want["buckets"]
            assert [p.up_bps for p in points] == pytest.approx(want["up"])
            assert [p.cpu_cores for p in points] == pytest.approx(want["cpu"])
            assert summary.up_bytes == want["up_bytes"]
            assert summary.peak_up_bps == pytest.approx(want["peak_up"])
            assert summary.p95_up_bps == pytest.approx(want["p95_up"])
            assert summary.p95_down_bps == pytest.approx(want["p95_down"])
            assert summary.p95_cpu_cores == pytest.approx(want["p95_cpu"])
            assert summary.p95_memory_mib == pytest.approx(want["p95_mem"])
            assert summary.p95_up_bps < summary.peak_up_bps  # the top 5 % really was dropped
    finally:
        await store.close()


# Both rollups per (bucket, kind, image, version); sum() because unmerged parts may hold a key twice.
BY_KEY = {
    "bandwidth_5m": "SELECT toUInt32(toUnixTimestamp(bucket)), toString(kind), image, version,"
    " sum(tx_bytes), sum(rx_bytes) FROM tingyu.bandwidth_5m GROUP BY ALL",
    "samples_5m": "SELECT toUInt32(toUnixTimestamp(bucket)),"
    " if(deploymentname = '', 'machine', 'container'), image, version,"
    " sum(tx_bytes), sum(rx_bytes) FROM tingyu.samples_5m GROUP BY ALL",
}


def _bytes_by_key(samples: Iterable[Sample]) -> dict[tuple[int, str, str, str], tuple[int, int]]:
    """Per (bucket, kind, image, version): tx and rx bytes, computed without ClickHouse."""
    sums: dict[tuple[int, str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    for s in samples:
        kind = "container" if s.deploymentname else "machine"
        acc = sums[int(s.ts) // FIVE_MIN * FIVE_MIN, kind, s.image, s.version]
        acc[0] += s.tx_bytes
        acc[1] += s.rx_bytes
    return {key: (tx, rx) for key, (tx, rx) in sums.items()}


async def _rollup(store: ClickHouse, table: str) -> dict[tuple[int, str, str, str], tuple[int, int]]:
    rows = await store.rows(BY_KEY[table])
    return {(int(b), k, i, v): (int(tx), int(rx)) for b, k, i, v, tx, rx in rows}


async def test_a_batch_stored_from_its_own_bytes_reads_back_as_its_samples(tmp_path: Path) -> None:
    """The fast path hands ClickHouse the agent's JSON as it came: pretty-printed, with fields
    metering does not know, times in exponent form. The rows are what pydantic reads from it."""
    fleet = _fleet(machines=1, ticks=12)
    batch = fleet.batches()[0]
    doc = json.loads(batch.to_bytes())
    doc["agent"] = {"version": "9", "node_uuid": "someone-else"}
    for sample in doc["samples"]:
        sample["labels"] = {"zone": "a"}
    text = re.sub(r'"ts": (\d+)\.0', r'"ts": \1e0', json.dumps(doc, indent=2))
    assert "e0," in text
    good = fast_accepted(text.encode(), Window(time.time(), 35 * 86400, 86400))
    assert good is not None
    store = ClickHouse.open("", tmp_path / "chdb")
    try:
        await store.apply_schema(DEFAULT_SCHEMA)
        assert await insert_goods(store, [good]) == len(batch.samples)
        assert await insert_goods(store, [good]) == len(batch.samples)  # a retry: dropped by its token
        rows = await store.rows(
            "SELECT sample_id, node_uuid, deploymentname, image, version, toUInt32(ts), interval_s,"
            " tx_bytes, rx_bytes, cpu_cores, memory_mib FROM tingyu.samples ORDER BY sample_id"
        )
        want = sorted(batch.samples, key=lambda s: s.sample_id)
        assert [r[:5] for r in rows] == [
            [s.sample_id, s.node_uuid, s.deploymentname, s.image, s.version] for s in want
        ]
        assert [(int(r[5]), float(r[6]), int(r[7]), int(r[8])) for r in rows] == [
            (int(s.ts), s.interval_s, s.tx_bytes, s.rx_bytes) for s in want
        ]
        assert [(r[9], r[10]) for r in rows] == [
            (pytest.approx(s.cpu_cores, rel=1e-6), pytest.approx(s.memory_mib, rel=1e-6)) for s in want
        ]
        want_bytes = _bytes_by_key(batch.samples)
        assert await _rollup(store, "samples_5m") == want_bytes  # fed once, retry included
        assert await _rollup(store, "bandwidth_5m") == want_bytes
    finally:
        await store.close()


async def test_bandwidth_rollup_counts_once_and_agrees_with_samples_5m(tmp_path: Path) -> None:
    fleet = _fleet()
    samples = [s for b in fleet.batches() for s in b.samples]
    store = ClickHouse.open("", tmp_path / "chdb")
    try:
        await store.apply_schema(DEFAULT_SCHEMA)
        await store.apply_schema(DEFAULT_SCHEMA)  # applied at every start: idempotent
        half = samples[: len(samples) // 3]
        assert await store_samples(store, half) == len(half)
        # A retried INSERT (twice): the view into bandwidth_5m must drop them both.
        await store.command(insert_sql(half))
        await store.command(insert_sql(half))
        assert await store_samples(store, samples[len(half) :]) == len(samples) - len(half)

        want = _bytes_by_key(samples)
        assert await _rollup(store, "bandwidth_5m") == want
        assert await _rollup(store, "samples_5m") == want
        assert not await backfill_bandwidth(store)  # not empty: no backfill

        # Both series of every scope agree with the independent computation through either table.
        start, end = fleet.start, fleet.start + fleet.ticks * fleet.step_s
        for scope, image in ((MeteringScope.ACCOUNT, ""), (MeteringScope.CONTAINERS, "")):
            points, summary = await run_query(store, MeteringQuery(scope=scope, start=start, end=end))
            ref = expected(samples, start, end, account=scope == MeteringScope.ACCOUNT, image=image)
            assert [p.up_bps for p in points] == pytest.approx(ref["up"])
            assert summary.up_bytes == ref["up_bytes"]
    finally:
        await store.close()


async def test_upgrade_backfills_the_bandwidth_rollup_once(tmp_path: Path) -> None:
    fleet = _fleet(machines=2, ticks=120)
    samples = [s for b in fleet.batches() for s in b.samples]
    store = ClickHouse.open("", tmp_path / "chdb")
    try:
        await store.apply_schema(DEFAULT_SCHEMA)
        assert not await backfill_bandwidth(store)  # a new store: nothing to copy
        await store_samples(store, samples)
        # A store from before bandwidth_5m existed: rollups in samples_5m only.
        await store.command("DROP VIEW tingyu.bandwidth_5m_mv")
        await store.command("DROP TABLE tingyu.bandwidth_5m")
        await store.apply_schema(DEFAULT_SCHEMA)
        assert await _rollup(store, "bandwidth_5m") == {}

        assert await backfill_bandwidth(store)
        assert not await backfill_bandwidth(store)  # once: the next start finds it filled
        want = _bytes_by_key(samples)
        assert await _rollup(store, "bandwidth_5m") == want

        # The resource rollup likewise: emptied, filled back day by day, equal to what it was.
        start, end = fleet.start, fleet.start + fleet.ticks * fleet.step_s
        before = await _every_answer(store, fleet, start, end)
        await store.command("TRUNCATE TABLE tingyu.resources_5m")
        assert await backfill_resources(store)
        assert not await backfill_resources(store)
        after = await _every_answer(store, fleet, start, end)
        for was, now in zip(before, after, strict=True):  # sums in another order: equal to rounding
            assert [p[0] for p in now] == [p[0] for p in was]
            assert [p[1:] for p in now] == [pytest.approx(p[1:], rel=1e-9) for p in was]

        # New samples after the upgrade reach it through the view, on top of the copy.
        later = _fleet(machines=1, ticks=20)
        more = [s for b in later.batches() for s in b.samples]
        await store_samples(store, more)
        assert await _rollup(store, "bandwidth_5m") == await _rollup(store, "samples_5m")
    finally:
        await store.close()


# Resource use as it was computed before `resources_5m`: from the per-(machine, deployment) rows of
# `samples_5m`, each container averaged over its sampled seconds in the bucket, then summed.
PER_MACHINE = """
SELECT
    toUInt32(toUnixTimestamp(bucket)),
    sum(if(secs > 0, core_s / secs, 0.)),
    sum(if(secs > 0, mib_s / secs, 0.))
FROM
(
    SELECT bucket, sum(cpu_core_s) AS core_s, sum(memory_mib_s) AS mib_s, sum(seconds) AS secs
    FROM tingyu.samples_5m
    WHERE bucket BETWEEN toDateTime({first:UInt32}, 'UTC') AND toDateTime({last:UInt32}, 'UTC') AND {where}
    GROUP BY bucket, node_uuid, deploymentname
)
GROUP BY bucket
"""


def _scopes(fleet: Fleet) -> list[tuple[MeteringScope, str, str]]:
    """Every resource route's scope: the account, every container, by image, by image and version."""
    image = fleet.images[0][0]
    return [
        (MeteringScope.ACCOUNT, "", ""),
        (MeteringScope.CONTAINERS, "", ""),
        (MeteringScope.CONTAINERS, image, ""),
        (MeteringScope.CONTAINERS, image, "v1"),
        (MeteringScope.CONTAINERS, image, "v2"),
    ]


async def _per_machine(
    store: ClickHouse, of: tuple[MeteringScope, str, str], start: float, end: float
) -> list[tuple[float, float, float]]:
    """The old answer for one scope: (bucket, cpu, memory) of every bucket with rows."""
    scope, image, version = of
    if scope == MeteringScope.ACCOUNT:
        where = "deploymentname = '' AND image = '' AND version = ''"
    else:
        where = "deploymentname != ''" + (" AND image = {image:String}" if image else "")
        where += " AND version = {version:String}" if version else ""
    first, last, _ = bucket_range(start, end)
    params = {"first": first, "last": last, "image": image, "version": version}
    rows = await store.rows(PER_MACHINE.replace("{where}", where), params)
    return sorted((float(b), float(c), float(m)) for b, c, m in rows)


async def _every_answer(
    store: ClickHouse, fleet: Fleet, start: float, end: float
) -> list[list[tuple[float, float, float]]]:
    """The resource points of every scope, as the query path answers them."""
    answers = []
    for scope, image, version in _scopes(fleet):
        query = MeteringQuery(scope=scope, start=start, end=end, image=image, version=version)
        points, _ = await run_query(store, query, (MeteringSeries.RESOURCES,))
        answers.append([(p.time, p.cpu_cores, p.memory_mib) for p in points])
    return answers


def _awkward(fleet: Fleet) -> list[Sample]:
    """Samples that make averaging per container matter: a container sampled for part of a bucket
    at an odd interval, and one whose version changes within a bucket under the same name."""
    node, image = fleet.uuid(0), fleet.images[0][0]
    out = []
    for i in range(7):
        ts = fleet.start + 600 + 17 * i
        out.append(
            Sample(
                sample_id=f"{node}/{ts}/late",
                node_uuid=node,
                deploymentname="late",
                image=image,
                version="v1",
                ts=ts,
                interval_s=17,
                cpu_cores=0.25 * i,
                memory_mib=100.0 + i,
            )
        )
    for i in range(10):
        ts = fleet.start + 1200 + 30 * i
        out.append(
            Sample(
                sample_id=f"{node}/{ts}/moved",
                node_uuid=node,
                deploymentname="moved",
                image=image,
                version="v1" if i < 4 else "v2",
                ts=ts,
                interval_s=30,
                cpu_cores=1.0 if i < 4 else 3.0,
                memory_mib=50.0 if i < 4 else 500.0,
            )
        )
    return out


async def test_resource_rollup_answers_as_the_per_machine_computation(tmp_path: Path) -> None:
    fleet = _fleet(machines=4, ticks=200)
    batches = fleet.batches()
    store = ClickHouse.open("", tmp_path / "chdb")
    try:
        await store.apply_schema(DEFAULT_SCHEMA)
        # Stored in several inserts, so a container's samples of one bucket land in more than one
        # (the rollup must not add up per-insert averages); the awkward ones split too.
        extra = _awkward(fleet)
        chunks = [batches[i : i + 5] for i in range(0, len(batches), 5)]
        for index, chunk in enumerate(chunks):
            samples = [s for b in chunk for s in b.samples]
            await store_samples(store, samples + extra[index :: len(chunks)])

        start, end = fleet.start - 600, fleet.start + fleet.ticks * fleet.step_s + 600
        answers = await _every_answer(store, fleet, start, end)
        for (scope, image, version), points in zip(_scopes(fleet), answers, strict=True):
            old = await _per_machine(store, (scope, image, version), start, end)
            assert old, (scope, image, version)
            got = {t: (c, m) for t, c, m in points}
            for t, cpu, mem in old:
                assert got.pop(t) == pytest.approx((cpu, mem), rel=1e-9), (scope, image, version, t)
            assert set(got.values()) == {(0.0, 0.0)}  # every other bucket of the range is empty
    finally:
        await store.close()


def _wire(ts: float) -> str:
    return timefmt.to_wire(ts)


async def _bandwidth(
    api: httpx.AsyncClient, path: str, start: float, end: float, **extra: str
) -> dict[str, Any]:
    params = {"startDate": _wire(start), "endDate": _wire(end), **extra}
    body: dict[str, Any] = (await api.get(f"/info/bandWith/{path}", params=params)).json()
    return body


async def _publish(bus: Bus, batches: list[SampleBatch], suffix: str = "") -> None:
    for batch in batches:
        await bus.publish(subjects.samples(batch.node_uuid), batch, msg_id=batch.batch_id + suffix)


async def test_api_figures_redelivery_and_restart(
    platform: Platform, api: httpx.AsyncClient, bus: Bus
) -> None:
    fleet = _fleet(machines=2, ticks=120)
    batches = fleet.batches()
    samples = [s for b in batches for s in b.samples]
    image = fleet.images[0][0]
    start, end = fleet.start, fleet.start + fleet.ticks * fleet.step_s
    want = expected(samples, start, end, account=False, image=image)

    # Half now; the same half again under other message ids (JetStream cannot dedup it: metering must).
    half = len(batches) // 2
    await _publish(bus, batches[:half])
    await _publish(bus, batches[:half], suffix="-again")

    async def stored(count: int) -> dict[str, Any] | None:
        body = await _bandwidth(api, "getByImage", start, end, image=image)
        got = sum(p["upbps"] for p in body.get("info") or [])
        return body if body["code"] == 200 and math.isclose(got, count, rel_tol=1e-6) else None

    first_half = expected(
        [s for b in batches[:half] for s in b.samples], start, end, account=False, image=image
    )
    await eventually(lambda: stored(sum(first_half["up"])), timeout=30)

    # Metering down: the API says so, the stream keeps what agents publish meanwhile.
    platform.kill("metering", 15)
    down = await _bandwidth(api, "getByImage", start, end, image=image)
    assert down["code"] == "TY0010"
    await _publish(bus, batches[half:])
    await _publish(bus, batches[:half])  # JetStream's duplicate window drops these
    platform.start_service("metering")

    body = await eventually(lambda: stored(sum(want["up"])), timeout=60)
    assert body["info"][0]["time"] == _wire(start // FIVE_MIN * FIVE_MIN)
    assert set(body["info"][0]) == {"time", "upbps", "downbps"}
    assert body["summary"]["p95Upbps"] == pytest.approx(want["p95_up"])
    assert body["summary"]["peakUpbps"] == pytest.approx(want["peak_up"])

    version = await _bandwidth(api, "getByImageVersion", start, end, imageVersion=f"{image}:v1")
    want_v1 = expected(samples, start, end, account=False, image=image, version="v1")
    assert version["summary"]["p95Upbps"] == pytest.approx(want_v1["p95_up"])
    params = {"startDate": _wire(start), "endDate": _wire(end), "imageVersion": f"{image}:v1"}
    resources = (await api.get("/info/resourceUse/getByImageVersion", params=params)).json()
    assert resources["summary"]["p95Cpu"] == pytest.approx(want_v1["p95_cpu"])
    assert [p["cpu"] for p in resources["info"]] == pytest.approx(want_v1["cpu"], abs=1e-3)  # 3 decimals


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"endDate": "2021-05-11 11:24:22"}, "TY0002"),
        ({"startDate": "2021/05/08", "endDate": "2021-05-11 11:24:22"}, "TY0040"),
        ({"startDate": "2021-05-12 11:24:22", "endDate": "2021-05-11 11:24:22"}, "TY0040"),
        ({"startDate": "2020-01-01 00:00:00", "endDate": "2021-05-11 11:24:22"}, "TY0040"),
        (
            {"startDate": "2021-05-08 11:24:22", "endDate": "2021-05-11 11:24:22", "imageVersion": "pcdn"},
            "TY0003",
        ),
    ],
)
async def test_bad_ranges_get_a_clear_error(
    api: httpx.AsyncClient, params: dict[str, str], code: str
) -> None:
    body = (await api.get("/info/bandWith/getByImageVersion", params=params)).json()
    assert body["code"] == code
    assert body["msg"]
