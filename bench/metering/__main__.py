"""`python -m bench.metering [--machines N --days D --ingest-machines M --ingest-ticks T
--containers C --queries Q]`.

1. History: `days` x `machines` 5-minute rows (one container per machine) bulk-filled into
   `samples_5m`, then `bandwidth_5m` and `resources_5m` backfilled from them (the upgrade path the
   service runs at start). The fill is not measured; the queries over it are.
2. Ingest: `ingest-machines` agents, `containers` containers each, one batch per machine and
   `readings-per-batch` readings (the agent's own format; by default as many readings as the
   agent gathers by default), all published to `TY_SAMPLES` before metering
   starts; then metering (into the filled store) drains the stream: samples / seconds from its
   first delivery to the moment every message is acked (stored, resources recomputed). Baseline
   in the same run: the same samples as plain chDB INSERTs of the same size into a fresh store of
   the same schema.
3. Queries: the 95th-percentile bandwidth query (`/info/bandWith/getByImage`) and the resource query
   (`/info/resourceUse/getByImage`) over all `days`, through the HTTP API with the admin token
   (API -> NATS -> metering -> chDB), against the same SQL on chDB directly.
Every figure is printed beside its baseline and the ratio `ours / baseline`. Ingest also prints
the CPU time each side spent per sample (metering and nats-server over the drain; the baseline's
own process over its inserts): on a box shared with other runs that figure still compares the two,
where samples/s mostly measures how much of the box each side got.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

import httpx
import psutil

from bench.harness import bearer, percentile
from bench.metering.fleet import Fleet
from tingyu.agent.sampling import SamplerSettings
from tingyu.cli.launcher import Platform, PlatformConfig, free_port, http_ok, wait_until
from tingyu.common import subjects, timefmt
from tingyu.common.bus import Bus
from tingyu.common.models.metering import MeteringQuery, MeteringScope, MeteringSeries, SampleBatch
from tingyu.common.settings import PlatformSettings
from tingyu.metering.config import DEFAULT_SCHEMA, MeteringSettings
from tingyu.metering.queries import series_params, series_sql
from tingyu.metering.rollups import backfill_bandwidth, backfill_resources
from tingyu.metering.samples import Good, lines_sql
from tingyu.metering.store import ChdbEngine, ClickHouse

BENCH_IMAGE = "benchimg"
DAY_BUCKETS = 288

# One day of history: a row per machine (its one container) and 5-minute bucket.
FILL = """
INSERT INTO tingyu.samples_5m
SELECT
    toDateTime({first:UInt32} + intDiv(number, {machines:UInt32}) * 300, 'UTC') AS bucket,
    '{image}' AS image, 'v1' AS version,
    concat('m', toString(number % {machines:UInt32})) AS node_uuid,
    concat('c', toString(number % {machines:UInt32})) AS deploymentname,
    cityHash64(number) % 100000000 AS tx_bytes, cityHash64(number, 1) % 10000000 AS rx_bytes,
    (cityHash64(number, 2) % 400) * 3 AS cpu_core_s, (cityHash64(number, 3) % 4096) * 300 AS memory_mib_s,
    300 AS seconds, 10 AS samples
FROM numbers({offset:UInt64}, {rows:UInt64})
""".replace("{image}", BENCH_IMAGE)


async def fill(path: Path, machines: int, days: int, first: int) -> tuple[float, float]:
    """Seconds to fill `samples_5m` day by day, then to backfill both machine-less rollups."""
    store = ClickHouse.open("", path)
    await store.apply_schema(DEFAULT_SCHEMA)
    started = time.perf_counter()
    rows = machines * DAY_BUCKETS
    for day in range(days):
        params = {"first": first, "machines": machines, "offset": day * rows, "rows": rows}
        await store.command(FILL, params)
        if (day + 1) % 5 == 0 or day + 1 == days:
            print(f"  {day + 1}/{days} days filled ({time.perf_counter() - started:.0f}s)", flush=True)
    filled = time.perf_counter()
    await backfill_bandwidth(store)
    await backfill_resources(store)
    done = time.perf_counter()
    await store.close()
    return filled - started, done - filled


def ingest_fleet(machines: int, ticks: int, containers: int, start: int, readings: int) -> Fleet:
    """Agents as they publish: a reading every 10 s, `readings` of them to a batch."""
    images = [(f"ingest{i // 2}", f"v{i % 2 + 1}") for i in range(containers)]
    return Fleet("bench", machines, images, start, ticks, step_s=10, ticks_per_batch=readings)


def chunks(batches: list[SampleBatch], size: int) -> list[list[SampleBatch]]:
    """Consecutive batches grouped into inserts of about `size` samples, as metering groups them."""
    out: list[list[SampleBatch]] = [[]]
    count = 0
    for batch in batches:
        if count >= size:
            out.append([])
            count = 0
        out[-1].append(batch)
        count += len(batch.samples)
    return out


def raw_ingest(path: Path, batches: list[SampleBatch], size: int) -> tuple[float, float]:
    """Baseline: the same batches as plain chDB INSERTs of metering's size, same schema and same
    statement (each batch's published JSON as one line), no NATS, no checks, no resource
    recomputation; the statements are built before the clock starts, so only chDB is timed; seconds
    of wall and of CPU (chDB runs in this process)."""
    engine = ChdbEngine(path)
    store = ClickHouse(engine)
    asyncio.run(store.apply_schema(DEFAULT_SCHEMA))
    statements = [
        lines_sql(
            [
                Good(b.node_uuid, [s.sample_id for s in b.samples], [s.ts for s in b.samples], b.to_bytes())
                for b in group
            ]
        )
        for group in chunks(batches, size)
    ]
    started, cpu = time.perf_counter(), time.process_time()
    for sql in statements:
        engine.command(sql)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    asyncio.run(store.close())
    return elapsed, cpu


async def publish(settings: PlatformSettings, batches: list[SampleBatch]) -> float:
    """Every batch into `TY_SAMPLES` (metering not running yet), 256 in flight; seconds."""
    bus = await Bus.connect(settings, "bench")
    started = time.perf_counter()
    for i in range(0, len(batches), 256):
        await asyncio.gather(
            *(bus.publish(subjects.samples(b.node_uuid), b, msg_id=b.batch_id) for b in batches[i : i + 256])
        )
    elapsed = time.perf_counter() - started
    await bus.close()
    return elapsed


def cpu_seconds(pids: list[int]) -> list[float]:
    """User and system CPU seconds each of these processes has used so far."""
    return [sum(psutil.Process(pid).cpu_times()[:2]) for pid in pids]


async def drain(settings: PlatformSettings, pids: list[int]) -> tuple[float, list[float], int]:
    """Seconds from metering's first delivery to the moment every message is acked, i.e. stored
    with its resource recomputation (from the consumer's counts, which metering does not serve),
    the CPU seconds `pids` used meanwhile, and how many messages JetStream delivered again."""
    bus = await Bus.connect(settings, "bench")
    started, cpu = 0.0, [0.0 for _ in pids]
    try:
        while True:
            try:
                info = await bus.js.consumer_info(subjects.SAMPLES.name, subjects.METERING_SAMPLES.durable)
            except Exception:  # metering has not made its consumer yet
                await asyncio.sleep(0.02)
                continue
            if not started and (info.delivered.stream_seq or 0):
                started, cpu = time.perf_counter(), cpu_seconds(pids)
            if started and not info.num_pending and not info.num_ack_pending:
                now = cpu_seconds(pids)
                spent = [b - a for a, b in zip(cpu, now, strict=True)]
                return time.perf_counter() - started, spent, info.num_redelivered
            await asyncio.sleep(0.02)
    finally:
        await bus.close()


ROUTES = {
    MeteringSeries.BANDWIDTH: "/info/bandWith/getByImage",
    MeteringSeries.RESOURCES: "/info/resourceUse/getByImage",
}


async def api_queries(
    api_url: str, series: MeteringSeries, start: float, end: float, count: int, *, auth: dict[str, str]
) -> list[float]:
    params = {"startDate": timefmt.to_wire(start), "endDate": timefmt.to_wire(end), "image": BENCH_IMAGE}
    times = []
    async with httpx.AsyncClient(base_url=api_url, timeout=300, headers=auth) as client:
        for _ in range(count):
            started = time.perf_counter()
            body = (await client.get(ROUTES[series], params=params)).json()
            times.append(time.perf_counter() - started)
            assert body["code"] == 200, body
            assert len(body["info"]) > 0, body
    return times


def sql_queries(path: Path, series: MeteringSeries, start: float, end: float, count: int) -> list[float]:
    engine = ChdbEngine(path)
    query = MeteringQuery(
        scope=MeteringScope.CONTAINERS, series=series, start=start, end=end, image=BENCH_IMAGE
    )
    sql, params = series_sql(query), series_params(query)
    times = []
    for _ in range(count):
        started = time.perf_counter()
        engine.rows(sql, params)
        times.append(time.perf_counter() - started)
    engine.close()
    return times


def line(title: str, ours: float, base: float, unit: str) -> None:
    print(
        f"{title}: ours {ours:,.0f} {unit}, baseline {base:,.0f} {unit} -> ratio {ours / base:.2f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--machines", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--ingest-machines", type=int, default=1000)
    parser.add_argument("--ingest-ticks", type=int, default=60)
    parser.add_argument("--containers", type=int, default=10)
    parser.add_argument("--queries", type=int, default=50)
    # What the agent publishes by default (`TINGYU_AGENT_SAMPLE_READINGS`); 1 is its former format.
    parser.add_argument("--readings-per-batch", type=int, default=SamplerSettings().sample_readings)
    args = parser.parse_args()
    end = int(time.time()) // 300 * 300
    first = end - args.days * 86400
    insert_size = MeteringSettings().batch_samples
    with tempfile.TemporaryDirectory(prefix="tingyu-bench-") as folder:
        root = Path(folder)
        chdb_dir = root / "chdb"
        rows = args.machines * args.days * DAY_BUCKETS
        print(
            f"filling {rows:,} samples_5m rows ({args.machines} machines x {args.days} days) ...", flush=True
        )
        filled_s, backfilled_s = asyncio.run(fill(chdb_dir, args.machines, args.days, first))
        print(
            f"  fill {filled_s:.0f}s; backfilling bandwidth_5m and resources_5m {backfilled_s:.0f}s",
            flush=True,
        )

        fleet = ingest_fleet(
            args.ingest_machines, args.ingest_ticks, args.containers, end - 3600, args.readings_per_batch
        )
        batches = fleet.batches()
        samples = sum(len(b.samples) for b in batches)
        config = PlatformConfig(
            state_dir=root,
            nats_port=free_port(),
            api_port=free_port(),
            services=("metering", "api"),
            extra_env={"TINGYU_METERING_CHDB_DIR": str(chdb_dir), "TINGYU_LOG_LEVEL": "WARNING"},
            colour=False,
            log_file=root / "platform.log",
        )
        platform = Platform(config)
        counts = {MeteringSeries.BANDWIDTH: args.queries, MeteringSeries.RESOURCES: args.queries}
        try:
            platform.start_nats()
            platform.start_service("api")
            wait_until(lambda: http_ok(f"{config.api_url}/healthz"), 60, "api")
            published_s = asyncio.run(publish(config.admin_settings(), batches))
            print(
                f"published {samples:,} samples in {len(batches):,} batches ({published_s:.1f}s)", flush=True
            )
            platform.start_service("metering")
            pids = [platform.procs[name].popen.pid for name in ("metering", "nats")]
            ours_s, ours_cpu, again = asyncio.run(drain(config.admin_settings(), pids))
            load = os.getloadavg()[0]
            api_times = {
                series: asyncio.run(
                    api_queries(config.api_url, series, first, end, count, auth=bearer(config))
                )
                for series, count in counts.items()
            }
        finally:
            platform.stop()
        raw_s, raw_cpu = raw_ingest(root / "raw", batches, insert_size)
        sql_times = {
            series: sql_queries(chdb_dir, series, first, end, count) for series, count in counts.items()
        }

    print(
        f"ingest of {samples:,} samples ({len(batches):,} agent batches, {again:,} delivered again,"
        f" load average {load:.1f} after it):"
    )
    line(
        "  samples/s, NATS -> metering -> chDB vs raw chDB INSERTs of the same samples",
        samples / ours_s,
        samples / raw_s,
        "samples/s",
    )
    (metering_us, nats_us), raw_us = (c / samples * 1e6 for c in ours_cpu), raw_cpu / samples * 1e6
    ours_us = metering_us + nats_us
    print(
        f"  CPU per sample: metering {metering_us:.1f} us + nats-server {nats_us:.1f} us,"
        f" raw chDB INSERTs {raw_us:.1f} us"
        f" -> ratio {raw_us / ours_us:.2f} (baseline / ours: the samples/s ratio if both were CPU-bound)",
        flush=True,
    )
    for series in counts:
        for name, q in (("p50", 50), ("p99", 99)):
            ours, base = percentile(api_times[series], q), percentile(sql_times[series], q)
            line(
                f"{series} query, {args.days} days over {rows:,} samples_5m rows, {name}, API vs SQL",
                ours * 1000,
                base * 1000,
                "ms",
            )


if __name__ == "__main__":
    main()
