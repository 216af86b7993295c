"""`python -m bench.metering [--machines N --days D --ingest-machines M --ingest-ticks T --queries Q
--resource-queries R]`.

1. Ingest: the same agent-format batches published to NATS and stored by the metering service
   (dedup lookup + insert + rollups), against a raw chDB INSERT of the same batches into a fresh path.
2. Query: `days` x `machines` 5-minute rows in `samples_5m`, `bandwidth_5m` backfilled from them
   (the upgrade path). The 95th-percentile bandwidth query (reads `bandwidth_5m`) and the resource
   query (reads `samples_5m`, one row per machine and bucket), each through the HTTP API
   (API -> NATS -> metering -> chDB) against the same SQL on chDB directly.
Every figure is printed with its ratio `ours / baseline`, measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from bench.harness import bearer
from bench.metering.fleet import Fleet
from tingyu.cli.launcher import Platform, PlatformConfig, free_port, http_ok, wait_until
from tingyu.common import subjects, timefmt
from tingyu.common.bus import Bus, responders
from tingyu.common.models.metering import MeteringQuery, MeteringReply, MeteringScope, MeteringSeries
from tingyu.common.settings import PlatformSettings
from tingyu.metering.config import DEFAULT_SCHEMA
from tingyu.metering.queries import series_params, series_sql
from tingyu.metering.rollups import BACKFILL
from tingyu.metering.samples import insert_sql
from tingyu.metering.store import ChdbEngine, split_statements

BENCH_IMAGE = "benchimg"

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
FROM numbers({rows:UInt64})
""".replace("{image}", BENCH_IMAGE)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(len(ordered) * q), len(ordered) - 1)]


def fill(path: Path, machines: int, days: int, first: int) -> tuple[float, float]:
    """Seconds to fill `samples_5m`, then to backfill `bandwidth_5m` from it."""
    engine = ChdbEngine(path)
    for statement in split_statements(DEFAULT_SCHEMA.read_text()):
        engine.command(statement)
    started = time.perf_counter()
    engine.command(FILL, {"first": first, "machines": machines, "rows": machines * days * 288})
    filled = time.perf_counter()
    engine.command(BACKFILL)
    done = time.perf_counter()
    engine.close()
    return filled - started, done - filled


def raw_ingest(path: Path, fleet: Fleet) -> float:
    """Baseline: the same batches as plain INSERTs into the same schema, no NATS, no dedup."""
    engine = ChdbEngine(path)
    for statement in split_statements(DEFAULT_SCHEMA.read_text()):
        engine.command(statement)
    batches = fleet.batches()
    started = time.perf_counter()
    for batch in batches:
        engine.command(insert_sql(batch.samples))
    elapsed = time.perf_counter() - started
    engine.close()
    return elapsed


async def ours_ingest(settings: PlatformSettings, fleet: Fleet) -> float:
    bus = await Bus.connect(settings, "bench")
    batches = fleet.batches()
    total = sum(s.tx_bytes for b in batches for s in b.samples if s.deploymentname)
    query = MeteringQuery(
        scope=MeteringScope.CONTAINERS,
        start=fleet.start,
        end=fleet.start + fleet.ticks * fleet.step_s,
        image=fleet.images[0][0],
    )
    started = time.perf_counter()
    for batch in batches:
        await bus.publish(subjects.samples(batch.node_uuid), batch, msg_id=batch.batch_id)
    while True:
        reply = await responders.call(bus, subjects.METERING_QUERY, query, MeteringReply, timeout=30)
        if reply.summary.up_bytes >= total:
            break
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - started
    await bus.close()
    return elapsed


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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--machines", type=int, default=1000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--ingest-machines", type=int, default=100)
    parser.add_argument("--ingest-ticks", type=int, default=300)
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--resource-queries", type=int, default=5)
    args = parser.parse_args()
    end = int(time.time()) // 300 * 300
    first = end - args.days * 86400
    with tempfile.TemporaryDirectory(prefix="tingyu-bench-") as folder:
        root = Path(folder)
        chdb_dir = root / "chdb"
        rows = args.machines * args.days * 288
        print(f"filling {rows:,} rollup rows ({args.machines} machines x {args.days} days) ...", flush=True)
        filled_s, backfilled_s = fill(chdb_dir, args.machines, args.days, first)
        print(f"  fill took {filled_s:.1f}s, backfilling bandwidth_5m {backfilled_s:.1f}s", flush=True)

        config = PlatformConfig(
            state_dir=root,
            nats_port=free_port(),
            api_port=free_port(),
            services=("metering", "api"),
            extra_env={"TINGYU_METERING_CHDB_DIR": str(chdb_dir), "TINGYU_METERING_BATCH_WAIT_S": "0.5"},
            colour=False,
            log_file=root / "platform.log",
        )
        platform = Platform(config)
        try:
            platform.start_nats()
            platform.start_service("metering")
            platform.start_service("api")
            wait_until(lambda: http_ok(f"{config.api_url}/healthz"), 60, "api")
            fleet = Fleet(
                "bench", args.ingest_machines, [("ingestimg", "v1")], end - 86400, args.ingest_ticks
            )
            samples = sum(len(b.samples) for b in fleet.batches())
            ours_s = asyncio.run(ours_ingest(config.admin_settings(), fleet))
            counts = {MeteringSeries.BANDWIDTH: args.queries, MeteringSeries.RESOURCES: args.resource_queries}
            api_times = {
                series: asyncio.run(
                    api_queries(config.api_url, series, first, end, count, auth=bearer(config))
                )
                for series, count in counts.items()
            }
        finally:
            platform.stop()
        raw_s = raw_ingest(root / "raw", fleet)
        sql_times = {
            series: sql_queries(chdb_dir, series, first, end, count) for series, count in counts.items()
        }

    ours_rate, raw_rate = samples / ours_s, samples / raw_s
    print(f"ingest: {samples:,} samples in {len(fleet.batches())} batches")
    print(f"  ours (NATS -> metering -> chDB): {ours_rate:,.0f} samples/s")
    print(f"  raw chDB INSERT of the same batches: {raw_rate:,.0f} samples/s")
    print(f"  ratio ours/baseline: {ours_rate / raw_rate:.2f}")
    for series, count in counts.items():
        for name, q in (("p50", 0.5), ("p99", 0.99)):
            ours, base = percentile(api_times[series], q), percentile(sql_times[series], q)
            print(
                f"{series} query over {rows:,} samples_5m rows, {name}: API {ours * 1000:.0f} ms,"
                f" SQL {base * 1000:.0f} ms, ratio ours/baseline {ours / base:.2f}"
            )
        print(f"  (mean API {statistics.mean(api_times[series]) * 1000:.0f} ms over {count} queries)")


if __name__ == "__main__":
    main()
