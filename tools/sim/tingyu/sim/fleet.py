"""Many SIMULATED machines in one process, each through the real agent's pass (`Agent.sync_once`).

`Fleet.declare(service)` opens the fleet on a `Service` (its nudge subscription, closed at stop)
and declares its loops: the pass workers, heartbeat and resync slots, reconnect checks, samples
and the counters' report.

A full `Agent` per machine would run four loops and one subscription each; at 100k machines per
process that is too many tasks and subscriptions. The fleet keeps one `Agent` object per machine
for its state and its pass (desired read, `Reconciler` over the simulated runtime, observed report)
but shares the timers: one wildcard nudge subscription, heartbeats sent in time slots spread over
the period, resyncs spread the same way, and a bounded pool of workers for passes. A heartbeat
without facts is encoded once per machine (`encoded_beat`): each beat only joins the slot's time
stamp in, so the simulator's cost per beat is far below the platform's (it decodes every one).
All the machines of a process share its one NATS connection, as the `sim` service user (a
service credential that may speak for any machine; a real machine's credential is unchanged).

Nudges name the key that changed and its revision, and the machine's pass reads that key alone,
as the agent's does. Each resync period goes through the agent's own count (`resync_period`:
every `full_read_s` it lists every key, and a failed read waits out its back-off). A
resync that owes no read (no listing, no keys of a failed key read) and whose simulated engine
did not change since the last pass is skipped: a simulated container never changes behind the
agent's back, so the pass would find nothing to do, and at 100k machines the skipped Python work
would be the simulator's own load rather than the platform's.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from tingyu.agent.agent import DEBOUNCE_S, FULL_READ_S, Agent, read_counts
from tingyu.agent.identity import Identity
from tingyu.agent.reconciler import Reconciler
from tingyu.common import subjects
from tingyu.common.bus import Bus
from tingyu.common.models.nodes import Heartbeat, NodeFacts
from tingyu.common.service import LoopFn, Service, wait_or_stop
from tingyu.common.timefmt import now
from tingyu.sim import machines
from tingyu.sim.runtime import SimRuntime
from tingyu.sim.traffic import SamplePublisher

log = logging.getLogger(__name__)

TICK_S = 0.25  # heartbeat and resync slots
LAG_KEPT = 120  # reports of the simulator's own lag kept in the stats file (10 minutes)
RETRY_S = 1.0


@dataclass
class FleetConfig:
    """Size and behaviour of the simulated machines of one process."""

    nodes: int
    offset: int = 0  # index of this process's first machine in the fleet
    seed: str = "sim"
    heartbeat_s: float = 10.0
    resync_s: float = 30.0
    full_read_s: float = FULL_READ_S
    facts_every: int = 30
    start_latency_s: float = 0.0
    failure_rate: float = 0.0
    parallel: int = 4  # deployments reconciled at once per machine, as on a real agent
    workers: int = 128  # machine passes at once in this process
    sample_s: float = 0.0  # 0: no metering samples
    stats_file: Path | None = None
    # After each report (every 5 s), what lives is frozen out of the garbage collector's sight (the
    # process's own choice: it changes the collector of the whole process).
    freeze_heap: bool = False


@dataclass
class FleetStats:
    """Counters of one simulator process (written to the stats file)."""

    machines: int = 0
    beats_sent: int = 0
    beats_dropped: int = 0
    beat_delay_max_s: float = 0.0  # how late the latest slot ran (the simulator's own lag)
    passes: int = 0
    light_resyncs: int = 0  # resyncs skipped: the simulated engine had not changed
    pass_errors: int = 0
    containers: int = 0
    samples_sent: int = 0
    started_at: float = field(default_factory=now)
    # The simulator's own lag, one entry per report (every 5 s): [time, slots late by up to (s),
    # a nudged machine's pass waited up to (s), its debounce included, the longest garbage
    # collection (s)]. A benchmark reads the entries of its window, so a figure the simulator held
    # up says so.
    lag: list[list[float]] = field(default_factory=list)


class CollectionPauses:
    """The longest garbage collection of this process since the last `take` (seconds): a
    simulator holding a million containers' objects can stop for a collection long enough to make
    its own slots late."""

    def __init__(self) -> None:
        self._began = 0.0
        self._longest = 0.0

    def __enter__(self) -> CollectionPauses:
        gc.callbacks.append(self._on)
        return self

    def __exit__(self, *_: object) -> None:
        gc.callbacks.remove(self._on)

    def _on(self, phase: str, _: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self._longest = max(self._longest, time.perf_counter() - self._began)

    def take(self) -> float:
        longest, self._longest = self._longest, 0.0
        return longest


class SimAgent(Agent):
    """The real agent's pass for one simulated machine; its nudges go to the fleet's scheduler, and
    it counts its reads in the fleet's counters (`reads`, shared by all its machines: summing a
    counter per machine at every stats report was a tenth of a simulator's CPU)."""

    def __init__(
        self, fleet_nudge: Callable[..., None], reads: dict[str, int], *args: object, **kwargs: object
    ) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._fleet_nudge = fleet_nudge
        self.reads = reads

    def nudge(self, full: bool = False) -> None:
        super().nudge(full)
        self._fleet_nudge(self.uuid)


STAMP = b"0.0"  # the sent_at value an encoded beat is split at


def encoded_beat(uuid: str, digest: str) -> tuple[bytes, bytes]:
    """A facts-less heartbeat of this machine, encoded by the model itself and split around its
    `sent_at` value: head + sent_at + tail is the beat."""
    data = Heartbeat(uuid=uuid, facts_digest=digest, sent_at=0.0, simulated=True).to_bytes()
    head, stamp, tail = data.partition(b'"sent_at":' + STAMP)
    if not stamp:
        raise ValueError("the heartbeat model no longer encodes sent_at as this simulator expects")
    return head + b'"sent_at":', tail


@dataclass
class _Machine:
    agent: SimAgent
    facts: NodeFacts
    digest: str
    subject: str
    beat_head: bytes = b""
    beat_tail: bytes = b""
    changes: int = -1  # the simulated engine's change count after it


class Fleet:
    """The simulated machines of one process, opened on a `Service` by `declare`."""

    def __init__(self, bus: Bus, config: FleetConfig) -> None:
        self.bus = bus
        self.config = config
        self.runtime = SimRuntime(config.start_latency_s, config.failure_rate)
        self.stats = FleetStats(machines=config.nodes)
        self.samples = SamplePublisher(bus) if config.sample_s > 0 else None
        self.reads = read_counts()  # every machine's reads of its desired state, summed
        self.machines: dict[str, _Machine] = {}
        for index in range(config.offset, config.offset + config.nodes):
            ident = machines.identity(config.seed, index)
            self.machines[ident.uuid] = self._machine(ident, index)
        self.order = list(self.machines)
        # (priority, arrival, uuid): the platform's nudges (0) before resyncs (1), each in arrival order.
        self._queue: asyncio.PriorityQueue[tuple[int, int, str]] = asyncio.PriorityQueue()
        self._arrivals = itertools.count()
        self._pending: dict[str, int] = {}  # waiting out the debounce or in the queue, at this priority
        self._running: set[str] = set()
        self._again: dict[str, int] = {}
        self._light: set[str] = set()  # queued by a resync only: a full pass only if something changed
        self._nudged_at: dict[str, float] = {}  # the platform's nudges not yet followed by a pass
        self._late = self._waited = 0.0  # the largest lags since the last report
        self._nudges: Subscription | None = None

    def _machine(self, ident: Identity, index: int) -> _Machine:
        facts = machines.facts(ident, index)
        agent = SimAgent(
            self.nudge,
            self.reads,
            self.bus,
            ident,
            Reconciler(self.runtime, ident.uuid, parallel=self.config.parallel),
            lambda: facts,
            heartbeat_s=self.config.heartbeat_s,
            resync_s=self.config.resync_s,
            full_read_s=self.config.full_read_s,
            facts_every=self.config.facts_every,
            simulated=True,
        )
        digest = facts.digest()
        head, tail = encoded_beat(ident.uuid, digest)
        return _Machine(agent, facts, digest, subjects.heartbeat(ident.uuid), head, tail)

    # --- passes ----------------------------------------------------------------------------------

    def nudge(self, uuid: str, *, light: bool = False, background: bool = False) -> None:
        """A pass for this machine soon; nudges during the debounce or the queue wait make one pass.

        Every real agent runs its own loop, so a nudge from the platform (a job's changed key)
        starts its pass at once; here the machines share `workers`, and resyncs (`light`, or
        `background` for the periodic full pass) wait behind the platform's nudges. Without that,
        a job's pass queued behind every machine's resync once the box was busy: minutes at
        20 000 machines, which measured the simulator's queue rather than the platform."""
        priority = 1 if light or background else 0
        if not priority:
            self._nudged_at.setdefault(uuid, time.monotonic())
        if not light:
            self._light.discard(uuid)
        queued = self._pending.get(uuid)
        if queued is not None:
            if priority < queued:  # waiting behind resyncs: queue it again, ahead of them
                self._pending[uuid] = priority
                self._enqueue(priority, uuid)
            return
        if uuid in self._running:
            self._again[uuid] = min(priority, self._again.get(uuid, priority))
            return
        self._pending[uuid] = priority
        if light:
            self._light.add(uuid)
        self._enqueue(priority, uuid)

    def _enqueue(self, priority: int, uuid: str) -> None:
        item = (priority, next(self._arrivals), uuid)
        asyncio.get_running_loop().call_later(DEBOUNCE_S, self._queue.put_nowait, item)

    async def _on_nudge(self, msg: Msg) -> None:
        machine = self.machines.get(msg.subject.split(".")[2])  # ty.agent.<uuid>.nudge
        if machine is not None:
            machine.agent.told(msg.data)

    async def _passes(self, stop: asyncio.Event) -> None:
        """`workers` machine passes at once until `stop` (a pass under way is finished)."""
        workers = max(self.config.workers, 1)
        async with asyncio.TaskGroup() as group:
            for _ in range(workers):
                group.create_task(self._worker(stop))
            await stop.wait()
            for _ in range(workers):
                self._queue.put_nowait((-1, 0, ""))  # wakes a waiting worker, which then sees `stop`

    async def _worker(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            _, _, uuid = await self._queue.get()
            if stop.is_set():
                return
            if self._pending.pop(uuid, None) is None:
                continue  # queued twice (moved ahead of the resyncs): its pass already ran
            nudged = self._nudged_at.pop(uuid, None)
            if nudged is not None:
                self._waited = max(self._waited, time.monotonic() - nudged)
            self._running.add(uuid)
            try:
                await self._pass(self.machines[uuid], uuid in self._light)
            except Exception as exc:
                self.stats.pass_errors += 1
                log.warning("SIMULATED machine %s: pass failed (%r); trying again", uuid, exc)
                asyncio.get_running_loop().call_later(RETRY_S, self.nudge, uuid)
            finally:
                self._running.discard(uuid)
                self._light.discard(uuid)
            again = self._again.pop(uuid, None)
            if again is not None:
                self.nudge(uuid, background=bool(again))

    async def _pass(self, machine: _Machine, light: bool) -> None:
        """The agent's pass, or nothing when a light resync finds the engine unchanged."""
        changes = self.runtime.changes(machine.agent.uuid)
        # A machine whose last read failed (timed out on a busy box) holds a stale state: it owes
        # a listing, made at a resync once its back-off is over (the agent's own rule), or the
        # keys of a failed key read, read again at the next pass.
        if light and changes == machine.changes and not machine.agent.owes_read:
            self.stats.light_resyncs += 1
            return
        await machine.agent.sync_once()
        machine.changes = self.runtime.changes(machine.agent.uuid)
        self.stats.passes += 1

    # --- timers ----------------------------------------------------------------------------------

    async def _slots(
        self, period_s: float, stop: asyncio.Event, act: Callable[[list[str], int], Awaitable[None]]
    ) -> None:
        """Call `act(chunk, round)` every TICK_S with the next slice of machines, so that each
        machine comes up once per `period_s` at its own offset; records how late slots run."""
        ticks = max(1, round(period_s / TICK_S))
        size = -(-len(self.order) // ticks)
        start = time.monotonic()
        tick = 0
        while not stop.is_set():
            due = start + tick * TICK_S
            late = time.monotonic() - due
            if late < 0:
                if await wait_or_stop(stop, -late):
                    return
            else:
                self.stats.beat_delay_max_s = max(self.stats.beat_delay_max_s, late)
                self._late = max(self._late, late)
            slot = tick % ticks
            await act(self.order[slot * size : (slot + 1) * size], tick // ticks)
            tick += 1

    async def _beat(self, chunk: list[str], round_: int) -> None:
        if not self.bus.nc.is_connected:
            self.stats.beats_dropped += len(chunk)  # a beat buffered in an outage would arrive stale
            return
        with_facts = round_ % max(self.config.facts_every, 1) == 0
        sent_at = now()
        stamp = repr(sent_at).encode()
        for uuid in chunk:
            machine = self.machines[uuid]
            if with_facts:  # one round in `facts_every`: built from the model as an agent builds it
                beat = Heartbeat(
                    uuid=uuid,
                    facts_digest=machine.digest,
                    facts=machine.facts,
                    sent_at=sent_at,
                    simulated=True,
                )
                data = beat.to_bytes()
            else:
                data = machine.beat_head + stamp + machine.beat_tail
            try:
                await self.bus.nc.publish(machine.subject, data)
            except Exception:
                self.stats.beats_dropped += 1
            else:
                self.stats.beats_sent += 1

    async def _resync(self, chunk: list[str], round_: int) -> None:
        if round_ > 0:  # round 0 is the first pass every machine makes at start
            for uuid in chunk:
                self.machines[uuid].agent.resync_period()
                self.nudge(uuid, light=True)  # a pass only if it owes a listing or its engine changed

    async def _reconnects(self, stop: asyncio.Event) -> None:
        """A reconnect may have hidden nudges: every machine reads its desired state again."""
        seen = self.bus.nc.stats["reconnects"]
        while not await wait_or_stop(stop, 1.0):
            if self.bus.nc.stats["reconnects"] != seen:
                seen = self.bus.nc.stats["reconnects"]
                for uuid in self.order:
                    self.machines[uuid].agent.nudge(full=True)

    async def _samples(self, stop: asyncio.Event) -> None:
        publisher = self.samples
        if publisher is None or not publisher.on:
            await stop.wait()  # samples are off: nothing to do until the fleet stops
            return
        period = self.config.sample_s
        while not await wait_or_stop(stop, period):
            end = now()
            for uuid in self.order:
                machine = self.machines[uuid]
                names = [c.name for c in await self.runtime.list_node(uuid)]
                await publisher.publish(machine.facts, names, end - period, end)
            self.stats.samples_sent = publisher.sent

    async def _report(self, stop: asyncio.Event) -> None:
        with CollectionPauses() as collections:
            while not await wait_or_stop(stop, 5.0):
                self.stats.containers = self.runtime.containers
                lag = [now(), self._late, self._waited, collections.take()]
                self.stats.lag = [*self.stats.lag[-LAG_KEPT + 1 :], lag]
                self._late = self._waited = 0.0
                self.write_stats()
                if self.config.freeze_heap:
                    # What has lived through a period is the fleet's state (machines, containers,
                    # their specs): a full collection then walks only what came since. Walking
                    # 250,000 containers' objects took up to 12 s, and the simulator's slots ran
                    # that late. Cyclic garbage that lived as long is never freed: what the
                    # simulator pays for on time slots.
                    gc.freeze()
                log.info(
                    "SIMULATED fleet: %d machines, %d containers, %d beats sent (%d dropped), "
                    "%d passes (%d failed), %d light resyncs, slots late by up to %.2fs",
                    len(self.machines),
                    self.stats.containers,
                    self.stats.beats_sent,
                    self.stats.beats_dropped,
                    self.stats.passes,
                    self.stats.pass_errors,
                    self.stats.light_resyncs,
                    self.stats.beat_delay_max_s,
                )

    def write_stats(self) -> None:
        path = self.config.stats_file
        if path is None:
            return
        data = {"simulated": True, **self.stats.__dict__, "counts": self.runtime.counts, "reads": self.reads}
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(path)

    # --- the whole ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen for nudges and queue every machine's first pass."""
        log.warning("SIMULATED fleet of %d machines starting (no real host or engine)", len(self.machines))
        self._nudges = await self.bus.nc.subscribe(subjects.AGENT_NUDGE_ALL, cb=self._on_nudge)
        for uuid in self.order:
            self.nudge(uuid)

    async def close(self) -> None:
        """Stop listening and write the last counters; the machines go silent."""
        if self._nudges is not None:
            with contextlib.suppress(Exception):
                await self._nudges.unsubscribe()
            self._nudges = None
        self.stats.containers = self.runtime.containers
        self.write_stats()
        log.warning("SIMULATED fleet of %d machines stopped", len(self.machines))

    def loops(self) -> list[tuple[str, LoopFn]]:
        """Passes, heartbeats, resyncs, reconnect checks, samples and the report, each until stop."""

        async def beats(stop: asyncio.Event) -> None:
            await self._slots(self.config.heartbeat_s, stop, self._beat)

        async def resyncs(stop: asyncio.Event) -> None:
            await self._slots(self.config.resync_s, stop, self._resync)

        return [
            ("sim-passes", self._passes),
            ("sim-heartbeats", beats),
            ("sim-resyncs", resyncs),
            ("sim-reconnects", self._reconnects),
            ("sim-samples", self._samples),
            ("sim-report", self._report),
        ]

    async def declare(self, service: Service) -> None:
        """Open the fleet on `service`: closed at its stop, its loops run (and restarted) by it."""
        await self.start()
        service.stack.push_async_callback(self.close)
        for name, loop in self.loops():
            service.loop(name, loop)
