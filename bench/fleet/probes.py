"""What the fleet benchmark watches: heartbeat fan-in, job completions, processes, streams."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nats
import psutil
from nats.aio.msg import Msg
from prometheus_client.parser import text_string_to_metric_families

from tingyu.common import subjects, timefmt
from tingyu.common.bus import Bus
from tingyu.common.models.containers import NodeReport
from tingyu.common.models.dead import DeadLetter
from tingyu.common.models.jobs import Job, JobState
from tingyu.common.models.nodes import Heartbeat


@dataclass
class HeartbeatProbe:
    """A subscriber of every heartbeat, as each nodes replica is: counts beats and their lag. It
    listens only while started: at 100 000 machines it is 10 000 messages a second more for
    nats-server to send and for the benchmark's process to read, which would slow the preload and
    the machines it measures outside the soak."""

    received: int = 0
    lags_ms: list[float] = field(default_factory=list)

    @classmethod
    async def started(cls, bus: Bus) -> HeartbeatProbe:
        probe = cls()
        await probe.start(bus)
        return probe

    async def start(self, bus: Bus) -> None:
        self.sub = await bus.nc.subscribe(
            subjects.HEARTBEATS_DELIVERED, cb=self.on_beat, pending_msgs_limit=1_000_000
        )

    async def finish(self) -> tuple[int, list[float]]:
        """Stop listening: the beats received and the lags sampled."""
        await self.sub.unsubscribe()
        return self.received, list(self.lags_ms)

    async def on_beat(self, msg: Msg) -> None:
        self.received += 1
        if self.received % 10 == 0:  # one in ten decoded keeps the probe itself cheap
            beat = Heartbeat.from_bytes(msg.data)
            self.lags_ms.append((timefmt.now() - beat.sent_at) * 1000)


@dataclass
class JobProbe:
    """Every write to `ty_jobs` and every agent report, seen on core NATS: when each job was first
    seen dispatched, when its machine first reported the job's deployment, and when the job turned
    final (`time.monotonic()`, the clock the calls' own process times creates on). Writes are kept
    for every job, since the creates' answers arrive from another process; a report is decoded only
    when its machine has a job open."""

    accepted: dict[str, float] = field(default_factory=dict)  # job id -> time the API answered
    dispatched_at: dict[str, float] = field(default_factory=dict)
    reported_at: dict[str, float] = field(default_factory=dict)
    final_at: dict[str, float] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    open_on: dict[str, set[str]] = field(default_factory=dict)  # machine -> its jobs not yet reported

    @classmethod
    async def started(cls, bus: Bus) -> JobProbe:
        probe = cls()
        await probe.start(bus)
        return probe

    async def start(self, bus: Bus) -> None:
        self.sub = await bus.nc.subscribe(f"{subjects.JOBS.prefix}>", cb=self.on_write)
        self.reports = await bus.nc.subscribe(
            subjects.report.all, cb=self.on_report, pending_msgs_limit=1_000_000
        )

    async def stop(self) -> None:
        await self.sub.unsubscribe()
        await self.reports.unsubscribe()

    async def on_write(self, msg: Msg) -> None:
        job_id = msg.subject.rsplit(".", 1)[-1]
        if job_id in self.final_at or not msg.data:
            return
        now = time.monotonic()
        job = Job.from_bytes(msg.data)
        if job.state != JobState.QUEUED:
            self.dispatched_at.setdefault(job_id, now)
        if job.node_uuid and not job.state.final and job_id not in self.reported_at:
            self.open_on.setdefault(job.node_uuid, set()).add(job_id)
        if job.state.final:
            self.final_at[job_id] = now
            if job.state == JobState.FAILED:
                self.failed[job_id] = job.message

    async def on_report(self, msg: Msg) -> None:
        uuid = msg.subject.rsplit(".", 1)[-1]
        waiting = self.open_on.get(uuid)
        if not waiting:
            return
        now = time.monotonic()
        report = NodeReport.from_bytes(msg.data)
        for seen in report.containers.values():
            if seen.job_id in waiting:
                waiting.discard(seen.job_id)
                self.reported_at.setdefault(seen.job_id, now)

    def _after_accept(self, seen: dict[str, float]) -> dict[str, float]:
        return {job: (seen[job] - at) * 1000 for job, at in self.accepted.items() if job in seen}

    @property
    def done_ms(self) -> dict[str, float]:
        """Accepted job -> ms from its create until it was final."""
        return self._after_accept(self.final_at)

    @property
    def dispatched_ms(self) -> dict[str, float]:
        """Accepted job -> ms from its create until the deployer had dispatched it."""
        return self._after_accept(self.dispatched_at)

    @property
    def reported_ms(self) -> dict[str, float]:
        """Accepted job -> ms from its create until its machine's agent reported it applied."""
        return self._after_accept(self.reported_at)

    def failures(self) -> list[str]:
        return [message for job, message in self.failed.items() if job in self.accepted]

    async def wait_all(self, timeout: float) -> None:
        async def all_final() -> bool:
            return all(job in self.final_at for job in self.accepted)

        await wait_for(all_final, timeout, every=0.2)


class QueueProbe:
    """The deployer's consumers as JetStream tells of them, once a second over the soak: messages
    not yet delivered (`num_pending`), delivered and not yet acknowledged (`num_ack_pending`), pull
    requests waiting at the server (`num_waiting`), and how long the server took to answer. A
    queue that grows while pulls wait points at the server; one with every pull answered and the
    acknowledgements pending points at the deployer."""

    EVERY_S = 1.0

    def __init__(self, bus: Bus, specs: tuple[subjects.ConsumerSpec[Any], ...]) -> None:
        self.bus = bus
        self.specs = specs
        self.samples: dict[str, list[list[float]]] = {spec.durable: [] for spec in specs}
        self.started = time.monotonic()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            for spec in self.specs:
                asked = time.monotonic()
                try:
                    info = await self.bus.js.consumer_info(spec.stream.name, spec.durable, timeout=30)
                except Exception:  # a slow or failed answer is itself the finding: noted as -1
                    info = None
                took_ms = (time.monotonic() - asked) * 1000
                at = round(asked - self.started, 1)
                if info is None:
                    self.samples[spec.durable].append([at, -1, -1, -1, round(took_ms)])
                else:
                    queued = [info.num_pending or 0, info.num_ack_pending or 0, info.num_waiting or 0]
                    self.samples[spec.durable].append([at, *queued, round(took_ms)])
            await asyncio.sleep(self.EVERY_S)

    async def stop(self) -> dict[str, dict[str, Any]]:
        """Per consumer: the largest of each figure, and every sample ([s from start, pending,
        ack pending, waiting pulls, answer ms])."""
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        out = {}
        for durable, rows in self.samples.items():
            answered = [row for row in rows if row[1] >= 0]
            out[durable] = {
                "pending_max": max((row[1] for row in answered), default=0),
                "ack_pending_max": max((row[2] for row in answered), default=0),
                "waiting_min": min((row[3] for row in answered), default=0),
                "answer_ms_max": max((row[4] for row in rows), default=0),
                "samples": rows,
            }
        return out


class ProcSampler:
    """CPU (% of one core) and RSS of named processes over a window."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.begin = {name: self._cpu(p) for name, p in self.procs.items()}
        self.started = time.monotonic()

    @staticmethod
    def _cpu(proc: psutil.Process) -> float:
        try:
            total = 0.0
            for member in family(proc):
                times = member.cpu_times()
                total += times.user + times.system
            return total
        except psutil.NoSuchProcess:
            return 0.0

    def finish(self) -> dict[str, dict[str, float]]:
        wall = time.monotonic() - self.started
        out = {}
        for name, proc in self.procs.items():
            rss, pss = self._memory(proc)
            seconds = self._cpu(proc) - self.begin[name]
            cpu = seconds / wall * 100 if wall else 0.0
            out[name] = {
                "cpu_pct": round(cpu, 1),
                "cpu_s": round(seconds, 1),
                "rss_mib": round(sum(rss) / 2**20, 1),
                "rss_largest_mib": round(max(rss, default=0) / 2**20, 1),
                "pss_mib": round(sum(pss) / 2**20, 1),
                "processes": len(rss),
            }
        return out

    @staticmethod
    def _memory(proc: psutil.Process) -> tuple[list[int], list[int]]:
        """The resident bytes (RSS) and proportional set sizes (PSS) of a process and of each of its
        children (the API's workers are). Forked workers share the pages they inherited: the sum of
        their RSS counts those once per process, the sum of PSS once in all."""
        try:
            members = family(proc)
        except psutil.NoSuchProcess:
            return [], []
        rss, pss = [], []
        for member in members:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                full = member.memory_full_info()
                rss.append(full.rss)
                pss.append(full.pss)
        return rss, pss


def family(proc: psutil.Process) -> list[psutil.Process]:
    """A process and all its children (the API's workers are the API's)."""
    return [proc, *proc.children(recursive=True)]


async def stream_sizes(bus: Bus) -> dict[str, dict[str, int]]:
    """Messages and bytes of every stream (buckets are streams named KV_<bucket>); empty when the
    server does not answer in three tries (a figure missing, not the run's end)."""
    for _ in range(3):
        try:
            infos = await bus.js.streams_info()
        except nats.errors.TimeoutError:
            continue
        return {
            str(info.config.name): {"messages": int(info.state.messages), "bytes": int(info.state.bytes)}
            for info in infos
        }
    print("stream sizes not read: JetStream did not answer in three tries", flush=True)
    return {}


def sim_lags(stats_dir: Path, since: float) -> dict[str, list[list[float]]]:
    """Each simulator process's own lag reports made after `since` (wall time), by process:
    [time, slots late by up to, a nudged pass waited up to, the longest garbage collection] (s)."""
    found: dict[str, list[list[float]]] = {}
    for path in sorted(stats_dir.glob("sim-*.json")):
        try:
            entries = json.loads(path.read_text()).get("lag", [])
        except (OSError, ValueError):
            continue
        found[path.stem] = [entry for entry in entries if entry[0] >= since]
    return found


def sim_lag(stats_dir: Path, since: float) -> tuple[float, float, float]:
    """The simulator's largest lags after `since`, over its processes: how late its slots ran,
    how long a nudged machine's pass waited, the longest garbage collection (seconds)."""
    entries = [entry for kept in sim_lags(stats_dir, since).values() for entry in kept]
    return (
        max((entry[1] for entry in entries), default=0.0),
        max((entry[2] for entry in entries), default=0.0),
        max((entry[3] for entry in entries), default=0.0),
    )


def sim_on_time(stats_dir: Path, since: float, bound_s: float) -> bool:
    """Whether every simulator process has reported since `since` and its latest report has its
    slots late by at most `bound_s`: a simulator still behind would hold the figures up."""
    lags = sim_lags(stats_dir, since)
    return bool(lags) and all(kept and kept[-1][1] <= bound_s for kept in lags.values())


def sim_totals(stats_dir: Path) -> dict[str, float]:
    """The sum of the simulator processes' counters (each writes its own file every 5 s)."""
    totals: dict[str, float] = {}
    for path in stats_dir.glob("sim-*.json"):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        for key in (
            "machines",
            "beats_sent",
            "beats_dropped",
            "passes",
            "pass_errors",
            "light_resyncs",
            "containers",
        ):
            totals[key] = totals.get(key, 0) + data.get(key, 0)
        for kind, count in data.get("reads", {}).items():  # the machines' reads, failed ones apart
            totals[f"reads: {kind}"] = totals.get(f"reads: {kind}", 0) + count
        totals["beat_delay_max_s"] = max(
            totals.get("beat_delay_max_s", 0.0), data.get("beat_delay_max_s", 0.0)
        )
    return totals


async def wait_for(check: Callable[[], Awaitable[bool]], timeout: float, every: float = 1.0) -> bool:
    """Poll an async predicate until true or `timeout`; False on timeout."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(every)
    return True


async def dead_letters(bus: Bus, limit: int = 100_000) -> dict[str, int]:
    """What `TY_DEAD` holds, counted by consumer and reason (the reason's first 80 characters,
    without the job-specific tail), read with an ephemeral ordered consumer."""
    counts: Counter[str] = Counter()
    try:
        info = await bus.js.stream_info(subjects.DEAD.name)
    except nats.errors.TimeoutError as exc:
        return {f"TY_DEAD not read: {exc!r}": 0}
    total = int(info.state.messages)
    if not total:
        return {}
    sub = await bus.js.subscribe(subjects.DEAD_ALL, ordered_consumer=True, stream=subjects.DEAD.name)
    try:
        for _ in range(min(total, limit)):
            try:
                msg = await sub.next_msg(timeout=5)
            except TimeoutError:
                break
            letter = DeadLetter.from_bytes(msg.data)
            counts[f"{letter.durable}: {letter.reason[:80]}"] += 1
    finally:
        await sub.unsubscribe()
    return dict(counts.most_common(20))


async def histogram(url: str, name: str, **labels: str) -> dict[str, float]:
    """One histogram series scraped from a Prometheus endpoint: its cumulative bucket counts by
    upper bound (`le`), with `_count` and `_sum`; empty when the endpoint does not answer."""
    try:
        async with httpx.AsyncClient(timeout=10.0) as client:
            text = (await client.get(url)).text
    except httpx.HTTPError:
        return {}
    found: dict[str, float] = {}
    for metric in text_string_to_metric_families(text):
        if metric.name != name:
            continue
        for sample in metric.samples:
            if any(sample.labels.get(k) != v for k, v in labels.items()):
                continue
            if sample.name.endswith("_bucket"):
                found[sample.labels["le"]] = sample.value
            else:
                found[sample.name.removeprefix(name)] = sample.value
    return found


async def histograms(url: str, name: str, by: tuple[str, ...]) -> dict[tuple[str, ...], dict[str, float]]:
    """Every series of one histogram, keyed by the values of the labels `by` (as `histogram`
    returns one); empty when the endpoint does not answer."""
    try:
        async with httpx.AsyncClient(timeout=10.0) as client:
            text = (await client.get(url)).text
    except httpx.HTTPError:
        return {}
    found: dict[tuple[str, ...], dict[str, float]] = {}
    for metric in text_string_to_metric_families(text):
        if metric.name != name:
            continue
        for sample in metric.samples:
            series = found.setdefault(tuple(sample.labels.get(k, "") for k in by), {})
            if sample.name.endswith("_bucket"):
                series[sample.labels["le"]] = sample.value
            else:
                series[sample.name.removeprefix(name)] = sample.value
    return found


def histogram_window(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """What a histogram took between two scrapes: how many, their mean, and the bucket bounds the
    median and the 99th percentile fall under (`inf` past the last bound; NaN when none came)."""
    count = after.get("_count", 0.0) - before.get("_count", 0.0)
    if count <= 0:
        return {"count": 0.0, "mean": float("nan"), "p50_under": float("nan"), "p99_under": float("nan")}
    mean = (after.get("_sum", 0.0) - before.get("_sum", 0.0)) / count
    bounds = sorted((float(le), after[le] - before.get(le, 0.0)) for le in after if not le.startswith("_"))

    def under(q: float) -> float:
        return next((bound for bound, seen in bounds if seen >= q * count), float("inf"))

    return {"count": count, "mean": mean, "p50_under": under(0.5), "p99_under": under(0.99)}
