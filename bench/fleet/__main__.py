"""Ramp a SIMULATED fleet and measure the platform under it, each figure beside a raw NATS baseline.

    .venv/bin/python -m bench.fleet --nodes 10000,50000,100000 --containers 10 [--per-proc 25000]

One platform (nats-server, nodes, deployer, api; default periods: heartbeat 10 s, resync 30 s)
on free ports. Each ramp step starts simulator processes for the new machines, waits until they
are all registered, preloads their containers into desired state and waits until the simulated
engines run them all, the deployer has judged the reports of that convergence and the simulator
is on time again (printed as its own figure, `--settle-timeout`), then soaks: heartbeat fan-in
(lag, drops), API latency of creates (mutating) and of reads (made by a process of their own:
`bench.fleet.client`), job completion of those creates, CPU/RSS per process, stream and bucket
sizes.
Baselines come from the same nats-server in the same step: raw KV put/get latency at the same
concurrency and the raw core-publish rate of one client.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import multiprocessing
import secrets
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, TypeVar

import nats

from bench.core import reports as core_reports
from bench.fleet import baselines, preload, probes
from bench.fleet import client as client_calls
from bench.harness import bearer, platform, report
from tingyu.common import subjects
from tingyu.common.bus import Bus
from tingyu.sim import machines

PROGRESS_S = 30.0  # how often the long waits say how far they got
# Bytes one machine or one container takes in the stores that grow with the fleet, measured with
# 10 containers a machine: a report 2.7 KB (100 000 machines, ty_observed full) to 3.3 KB (20 000);
# ty_desired 524 MB for 1 000 300 deployments; ty_nodes 65 MB for 100 000 records.
REPORT_BYTES_BASE, REPORT_BYTES_PER_CONTAINER = 300, 300
DESIRED_BYTES_PER_CONTAINER = 600
NODE_BYTES = 700


def store_limits(machines: int, containers: int) -> dict[str, int]:
    """`TINGYU_STORE_MAX_BYTES` for a fleet of this size: twice what it needs in the stores that
    grow with it (the defaults in `subjects` are a development box's, docs/operations.md), never
    below a default. With the defaults, 100 000 machines x 10 containers fill `ty_observed`
    (256 MiB): every report the deployer stores is refused, the reports stream backs up to its own
    limit and no job of the soak can complete."""
    report = machines * (REPORT_BYTES_BASE + REPORT_BYTES_PER_CONTAINER * containers)
    desired = machines * containers * DESIRED_BYTES_PER_CONTAINER
    wanted = [
        (subjects.REPORTED.name, subjects.REPORTED.max_bytes, 2 * report),
        (subjects.REPORTS.name, subjects.REPORTS.max_bytes, 2 * report),  # every machine's report waiting
        (subjects.DESIRED.name, subjects.DESIRED.max_bytes, 2 * desired),
        (subjects.NODES.name, subjects.NODES.max_bytes, 2 * machines * NODE_BYTES),
    ]
    return {name: max(default, size) for name, default, size in wanted}


JOB_ROUND_TRIPS = 20  # KV/stream round trips on a create's path (API 6, deployer 9+6, agent 2)


T = TypeVar("T")


async def own_process(work: Callable[[client_calls.Calls], T], calls: client_calls.Calls) -> T:
    """`work(calls)` in a fresh process (`bench.fleet.client`): the calls are timed by a process that
    does nothing else, not by this one, which follows every heartbeat and job write."""
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return await asyncio.get_running_loop().run_in_executor(pool, work, calls)


async def api_probe(calls: client_calls.Calls, jobs: probes.JobProbe) -> dict[str, list[float]]:
    """Creates (mutating) and reads at `concurrency`; latencies in ms by call. The accepted jobs
    join `jobs`."""
    timed = await own_process(client_calls.run, calls)
    jobs.accepted.update(timed.accepted)
    if timed.refused:
        print(f"a create was refused (the first one shown): {timed.refused}", flush=True)
    return timed.latencies


def sim_cost(r: dict[str, Any]) -> str:
    """The simulator's own cost over the soak window: CPU seconds and RSS of its processes, and its
    lag (how late its slots ran; how long a nudged machine waited for its pass, a job's wait that
    a real agent, with a loop of its own, would not have; its longest garbage collection)."""
    sims = [figures for name, figures in r["procs"].items() if name.startswith("sim-")]
    cpu_s = sum(f.get("cpu_s", 0.0) for f in sims)
    rss = sum(f["rss_mib"] for f in sims)
    return (
        f"simulator: {cpu_s:,.1f} CPU s in the window, {rss:,.0f} MiB RSS ({len(sims)} procs), "
        f"slots late <= {r['sim_window_lag_s'][0]:.2f} s, nudged passes waited <= "
        f"{r['sim_window_lag_s'][1]:.2f} s, its collections <= {r['sim_window_lag_s'][2]:.2f} s"
    )


async def nodes_stored(bus: Bus) -> int:
    """Machines registered; 0 when the server did not answer in time (the registration burst
    starves JetStream's API on a busy box: the next look asks again)."""
    try:
        info = await bus.js.stream_info(subjects.NODES.stream)
    except nats.errors.TimeoutError:
        return 0
    return int(info.state.messages)


async def converge(stats_dir: Path, wanted: int, timeout: float, t0: float) -> bool:
    """Wait until the simulators run `wanted` containers (False after `timeout`), saying how many
    run every PROGRESS_S."""
    said = time.perf_counter()

    async def converged() -> bool:
        nonlocal said
        totals = probes.sim_totals(stats_dir)
        running_now = int(totals.get("containers", 0))
        if time.perf_counter() - said >= PROGRESS_S:
            said = time.perf_counter()
            failed = ", ".join(
                f"{kind.removeprefix('reads: failed ')} {int(count):,}"
                for kind, count in totals.items()
                if kind.startswith("reads: failed")
            )
            print(
                f"  {running_now:,} simulated containers running after {said - t0:.0f}s; the machines' "
                f"failed reads so far: {failed}",
                flush=True,
            )
        return running_now >= wanted

    return await probes.wait_for(converged, timeout)


async def settle(bus: Bus, stats_dir: Path, size: int, timeout: float) -> tuple[float, bool]:
    """Wait until the deployer has judged the convergence's reports (fewer left than the fleet
    sends in a second once converged: each machine repeats its report every 5 minutes) and the
    simulator is on time again (its latest slots late by at most `SIM_ON_TIME_S`). The soak then
    measures jobs on a settled fleet, not behind the convergence's queue or a simulator still
    catching up. Returns how long that took and whether it happened within `timeout`."""
    steady = max(100, size // 300)
    left: int | None = None
    began, since = time.perf_counter(), time.time()

    async def settled() -> bool:
        nonlocal left
        left = await core_reports.reports_pending(bus)
        return left is not None and left < steady and probes.sim_on_time(stats_dir, since, SIM_ON_TIME_S)

    ok = await probes.wait_for(settled, timeout)
    took = time.perf_counter() - began
    said = "settled" if ok else "NOT settled"
    late = probes.sim_lag(stats_dir, time.time() - 6.0)[0]
    print(
        f"[{size}] the deployer's queue of reports and the simulator {said} ({left} reports left, "
        f"slots late <= {late:.2f} s) {took:.1f}s after",
        flush=True,
    )
    return took, ok


SIM_ON_TIME_S = 1.0  # how late the simulator's slots may run when the soak starts


WAITED: Final = (subjects.DEPLOYER_COMMANDS, subjects.DEPLOYER_REPORTS)  # the job's two queues


async def stream_waits(running: Any) -> dict[str, dict[str, float]]:
    """The deployer's histograms so far of what waited in its streams, from when it was sent to its
    first start: the commands (from their acceptance) and the machines' reports (from their making)."""
    url = running.config.metrics_url("deployer")
    return {
        spec.durable: await probes.histogram(url, "tingyu_command_wait_seconds", consumer=spec.durable)
        for spec in WAITED
    }


async def store_times(running: Any) -> dict[tuple[str, ...], dict[str, float]]:
    """The deployer's histograms so far of its requests to each bucket, by bucket and operation."""
    url = running.config.metrics_url("deployer")
    return await probes.histograms(url, "tingyu_store_seconds", ("bucket", "op"))


class DeployerWatch:
    """The deployer over the soak: its histograms of the waits in its two queues and of its
    requests to the buckets (scraped before and after), and its consumers as JetStream tells of
    them (`probes.QueueProbe`)."""

    def __init__(
        self,
        running: Any,
        before: dict[str, dict[str, float]],
        stores: dict[tuple[str, ...], dict[str, float]],
        queues: probes.QueueProbe,
    ) -> None:
        self.running = running
        self.before = before
        self.stores = stores
        self.queues = queues

    @classmethod
    async def started(cls, running: Any, bus: Bus) -> DeployerWatch:
        waits, stores = await stream_waits(running), await store_times(running)
        return cls(running, waits, stores, probes.QueueProbe(bus, WAITED))

    async def finish(self) -> dict[str, Any]:
        after = await stream_waits(self.running)
        stores = await store_times(self.running)
        commands, reports = (spec.durable for spec in WAITED)
        windows = {
            "/".join(key): probes.histogram_window(self.stores.get(key, {}), series)
            for key, series in sorted(stores.items())
        }
        return {
            "command_wait_s": probes.histogram_window(self.before[commands], after[commands]),
            "report_wait_s": probes.histogram_window(self.before[reports], after[reports]),
            "deployer_queues": await self.queues.stop(),
            "deployer_store_s": {key: w for key, w in windows.items() if w["count"] > 0},
        }


async def step(args: argparse.Namespace, running: Any, bus: Bus, *, start: int, size: int) -> dict[str, Any]:
    stats_dir = running.config.state_dir / "sim"
    first_proc = len([n for n in running.procs if n.startswith("sim-")])
    count = size - start
    procs = max(1, -(-count // args.per_proc))
    offset = start
    for k in range(procs):
        n = count // procs + (1 if k < count % procs else 0)
        argv = [
            sys.executable,
            "-m",
            "tingyu.sim.main",
            *("--nodes", str(n), "--offset", str(offset), "--seed", args.seed),
            *("--start-latency-ms", str(args.start_latency_ms), "--workers", str(args.workers)),
            *("--stats-file", str(stats_dir / f"sim-{first_proc + k}.json")),
        ]
        running.spawn(f"sim-{first_proc + k}", argv, {"TINGYU_LOG_LEVEL": "WARNING"})
        offset += n
    t0 = time.perf_counter()

    async def joined() -> bool:
        return await nodes_stored(bus) >= size

    ok = await probes.wait_for(joined, args.timeout)
    join_s = time.perf_counter() - t0
    print(f"[{size}] {'all' if ok else 'NOT all'} machines registered after {join_s:.1f}s", flush=True)

    t0 = time.perf_counter()
    new = [(i, machines.identity(args.seed, i).uuid) for i in range(start, size)]
    await preload.preload(bus, new, args.containers, args.image)
    written_s = time.perf_counter() - t0

    ok_run = await converge(stats_dir, size * args.containers, args.timeout, t0)
    load_s = time.perf_counter() - t0
    totals = probes.sim_totals(stats_dir)
    print(
        f"[{size}] desired state written in {written_s:.1f}s; {int(totals.get('containers', 0)):,} "
        f"simulated containers running after {load_s:.1f}s{'' if ok_run else ' (NOT all)'}",
        flush=True,
    )
    settle_s, ok_settled = await settle(bus, stats_dir, size, args.settle_timeout)

    # Soak: fan-in, API and jobs under the loaded fleet, then the raw baselines in the same conditions.
    pids = {name: proc.popen.pid for name, proc in running.procs.items() if name != "registry"}
    sampler = probes.ProcSampler(pids)
    beats = await probes.HeartbeatProbe.started(bus)
    sent_before = probes.sim_totals(stats_dir).get("beats_sent", 0)
    soak_start, soak_wall = time.perf_counter(), time.time()
    jobs = await probes.JobProbe.started(bus)
    deployer = await DeployerWatch.started(running, bus)
    calls = client_calls.Calls(
        running.config.api_url,
        bearer(running.config),
        [uuid for _, uuid in new],
        args.image,
        args.requests,
        args.concurrency,
    )
    latencies = await api_probe(calls, jobs)
    await jobs.wait_all(args.job_wait_s)
    await jobs.stop()
    queued = await deployer.finish()
    remaining = args.soak_s - (time.perf_counter() - soak_start)
    if remaining > 0:
        await asyncio.sleep(remaining)
    window = time.perf_counter() - soak_start
    received, lag = await beats.finish()
    sent = probes.sim_totals(stats_dir).get("beats_sent", 0) - sent_before
    cpu = sampler.finish()
    listed = await own_process(client_calls.lists, calls)
    puts, gets = await baselines.raw_kv(bus, args.requests, args.concurrency, b"x" * 400)
    sizes = await probes.stream_sizes(bus)
    dead = await probes.dead_letters(bus)

    done = list(jobs.done_ms.values())
    result = {
        "machines": size,
        "containers_running": int(probes.sim_totals(stats_dir).get("containers", 0)),
        "join_s": round(join_s, 1),
        "load_s": round(load_s, 1),
        "settle_s": round(settle_s, 1),
        "settled": ok_settled,
        "window_s": round(window, 1),
        "beats_expected_per_s": round(size / 10.0, 1),
        "beats_received_per_s": round(received / window, 1),
        "beats_sent_per_s_approx": round(sent / window, 1),
        "beat_lag_ms_p50_p99": baselines.p50_p99(lag),
        "beats_sim_dropped": int(probes.sim_totals(stats_dir).get("beats_dropped", 0)),
        "sim_slot_late_max_s": probes.sim_totals(stats_dir).get("beat_delay_max_s", 0.0),
        # (slots late, nudged passes waited, longest collection), and each process's reports
        "sim_window_lag_s": probes.sim_lag(stats_dir, soak_wall),
        "sim_lag_reports": probes.sim_lags(stats_dir, soak_wall - 30.0),
        "api_ms": {k: baselines.p50_p99(v) for k, v in latencies.items()},
        "node_list_ms": round(listed.full_ms, 1),
        "node_list_parse_ms": round(listed.parse_ms, 1),
        "node_list_count": listed.machines,
        "node_page_ms": listed.page_ms,
        "jobs": {"accepted": len(jobs.accepted), "final": len(done), "failed": len(jobs.failures())},
        "job_ms_p50_p99": baselines.p50_p99(done),
        "job_dispatched_ms_p50_p99": baselines.p50_p99(list(jobs.dispatched_ms.values())),
        "job_reported_ms_p50_p99": baselines.p50_p99(list(jobs.reported_ms.values())),
        # the deployer's own histograms over the soak: from when a command or a report was sent to
        # its first start on it
        **queued,
        "raw_kv_put_ms_p50_p99": baselines.p50_p99(puts),
        "raw_kv_get_ms_p50_p99": baselines.p50_p99(gets),
        "procs": cpu,
        "streams": sizes,
        "dead_letters": dead,
        "job_failures": dict(Counter(m[:80] for m in jobs.failures()).most_common(10)),
        "jobs_not_final": len(jobs.accepted) - len(done),
    }
    lines(result, args)
    return result


def lines(r: dict[str, Any], args: argparse.Namespace) -> None:
    n = r["machines"]
    print(f"--- {n:,} SIMULATED machines, {r['containers_running']:,} simulated containers ---", flush=True)
    report(
        f"[{n}] heartbeat fan-in",
        r["beats_received_per_s"],
        args.raw_publish_rate,
        "msg/s",
        "raw core publish",
    )
    lag50, lag99 = r["beat_lag_ms_p50_p99"]
    print(
        f"[{n}] heartbeats expected {r['beats_expected_per_s']:,.0f}/s, "
        f"received {r['beats_received_per_s']:,.0f}/s; lag p50/p99 {lag50:.1f}/{lag99:.1f} ms; "
        f"sent ~{r['beats_sent_per_s_approx']:,.0f}/s (counters every 5 s), "
        f"not sent {r['beats_sim_dropped']}",
        flush=True,
    )
    put50, put99 = r["raw_kv_put_ms_p50_p99"]
    get50, get99 = r["raw_kv_get_ms_p50_p99"]
    c50, c99 = r["api_ms"]["create"]
    report(f"[{n}] API create p50", c50, put50, "ms", "raw KV put p50")
    report(f"[{n}] API create p99", c99, put99, "ms", "raw KV put p99")
    for kind in ("node/get", "task/status"):
        r50, r99 = r["api_ms"][kind]
        report(f"[{n}] API {kind} p50", r50, get50, "ms", "raw KV get p50")
        report(f"[{n}] API {kind} p99", r99, get99, "ms", "raw KV get p99")
    j50, j99 = r["job_ms_p50_p99"]
    report(
        f"[{n}] job completion p50",
        j50,
        put50 * JOB_ROUND_TRIPS,
        "ms",
        f"{JOB_ROUND_TRIPS} raw KV puts (p50)",
    )
    report(
        f"[{n}] job completion p99",
        j99,
        put99 * JOB_ROUND_TRIPS,
        "ms",
        f"{JOB_ROUND_TRIPS} raw KV puts (p99)",
    )
    d50, d99 = r["job_dispatched_ms_p50_p99"]
    print(
        f"[{n}] jobs dispatched by the deployer p50 / p99: {d50:,.1f} / {d99:,.1f} ms after the create",
        flush=True,
    )
    for what, key in (("commands", "command_wait_s"), ("machines' reports", "report_wait_s")):
        waits = r[key]
        print(
            f"[{n}] the deployer's {what} waited before it started on them (its histogram): "
            f"{waits['count']:.0f}, mean {waits['mean']:.2f} s, p50 <= {waits['p50_under']} s, "
            f"p99 <= {waits['p99_under']} s",
            flush=True,
        )
    for durable, queue in r["deployer_queues"].items():
        print(
            f"[{n}] {durable} while the soak's jobs were open: at most {queue['pending_max']:,} "
            f"waiting in the stream and {queue['ack_pending_max']:,} in the deployer's hands, "
            f"at least {queue['waiting_min']} pulls waiting; JetStream answered within "
            f"{queue['answer_ms_max']:,} ms",
            flush=True,
        )
    for key, times in r.get("deployer_store_s", {}).items():
        print(
            f"[{n}] the deployer's requests to {key}: {times['count']:.0f}, mean "
            f"{times['mean'] * 1000:,.1f} ms, p50 <= {times['p50_under']} s, p99 <= {times['p99_under']} s",
            flush=True,
        )
    s50, s99 = r["job_reported_ms_p50_p99"]
    print(
        f"[{n}] jobs reported by their machine p50 / p99: {s50:,.1f} / {s99:,.1f} ms after the create",
        flush=True,
    )
    print(
        f"[{n}] jobs {r['jobs']}; /node/list of {r['node_list_count']:,} took {r['node_list_ms']:.0f} ms"
        f" to its last byte, then {r['node_list_parse_ms']:.0f} ms to parse",
        flush=True,
    )
    for name, figures in r["procs"].items():
        print(f"[{n}] {name}: {figures['cpu_pct']:.0f}% CPU, RSS {rss(figures)}", flush=True)
    targets(r)


def rss(figures: dict[str, float] | None) -> str:
    """A service's resident memory: of all its processes (the API's parent and its workers)."""
    if not figures:
        return "n/a"
    family = int(figures["processes"])
    each = (
        f" ({family} processes, the largest {figures['rss_largest_mib']:,.0f} MiB;"
        f" PSS {figures.get('pss_mib', 0.0):,.0f} MiB in all)"
        if family > 1
        else ""
    )
    return f"{figures['rss_mib']:,.0f} MiB{each}"


def targets(r: dict[str, Any]) -> None:
    """The issue's fleet figures, each with the simulator's own cost in the same window."""
    n, cost, procs = r["machines"], sim_cost(r), r["procs"]
    page = r["node_page_ms"]
    rows = [
        ("create p99", f"{r['api_ms']['create'][1]:,.1f} ms", "<= 1000 ms"),
        ("node/get p99", f"{r['api_ms']['node/get'][1]:,.1f} ms", "<= 200 ms"),
        ("task/status p99", f"{r['api_ms']['task/status'][1]:,.1f} ms", "<= 200 ms"),
        ("job completion p99", f"{r['job_ms_p50_p99'][1]:,.1f} ms", "<= 5000 ms"),
        ("/node/list full", f"{r['node_list_ms']:,.1f} ms", "<= 2000 ms"),
        ("/node/list one 500-machine page", "n/a" if page is None else f"{page:,.1f} ms", "<= 100 ms"),
        ("nodes service RSS", rss(procs.get("nodes")), "<= 400 MiB"),
        ("API RSS (all its processes)", rss(procs.get("api")), "<= 300 MiB"),
    ]
    print(f"--- [{n}] fleet figures (target at 100k); {cost} ---", flush=True)
    for title, value, target in rows:
        print(f"[{n}] {title}: {value} (target {target}); {cost}", flush=True)
    for name, figures in r["streams"].items():
        print(
            f"[{n}] stream {name}: {figures['messages']:,} msgs, {figures['bytes'] / 2**20:.1f} MiB",
            flush=True,
        )
    for reason, count in r["dead_letters"].items():
        print(f"[{n}] dead letters: {count} x {reason}", flush=True)
    for reason, count in r["job_failures"].items():
        print(f"[{n}] failed jobs: {count} x {reason}", flush=True)


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    sizes = [int(s) for s in args.nodes.split(",")]
    results = []
    limits = store_limits(max(sizes), args.containers) | json.loads(args.store_max_bytes or "{}")
    print(f"store limits (TINGYU_STORE_MAX_BYTES): {json.dumps(limits)}", flush=True)
    with platform(("nodes", "deployer", "api"), TINGYU_STORE_MAX_BYTES=json.dumps(limits)) as running:
        (running.config.state_dir / "sim").mkdir()
        # The bench's own connection declares the topology too: with the same limits.
        settings = running.config.admin_settings().model_copy(update={"store_max_bytes": limits})
        bus = await Bus.connect(settings, "bench-fleet")
        args.image = preload.image(running.config.registry)
        args.raw_publish_rate = await baselines.core_publish_rate(bus, b"x" * 250)
        print(f"raw core publish (one client, 250 B): {args.raw_publish_rate:,.0f} msg/s", flush=True)
        start = 0
        for size in sizes:
            results.append(await step(args, running, bus, start=start, size=size))
            start = size
            if args.out:
                args.out.write_text(json.dumps(results, ensure_ascii=False, indent=1))
        await bus.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", default="10000", help="ramp steps, comma-separated")
    parser.add_argument("--containers", type=int, default=10, help="simulated containers per machine")
    parser.add_argument(
        "--per-proc", type=int, default=25000, help="simulated machines per simulator process"
    )
    parser.add_argument("--workers", type=int, default=128, help="passes at once per simulator process")
    parser.add_argument("--start-latency-ms", type=float, default=0.0)
    parser.add_argument("--requests", type=int, default=300, help="API calls of each kind per step")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--soak-s", type=float, default=40.0, help="shortest measuring window per step")
    parser.add_argument("--job-wait-s", type=float, default=60.0)
    parser.add_argument("--timeout", type=float, default=900.0, help="longest wait for join / convergence")
    parser.add_argument(
        "--settle-timeout",
        type=float,
        default=600.0,
        help="longest wait, after convergence, for the deployer to judge the convergence's reports "
        "and the simulator to be on time",
    )
    parser.add_argument("--seed", default=f"bench{secrets.token_hex(3)}")
    parser.add_argument(
        "--store-max-bytes",
        default="",
        help="JSON over the limits sized for the fleet, e.g. '{\"ty_observed\": 268435456}' (the default)",
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON here")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
