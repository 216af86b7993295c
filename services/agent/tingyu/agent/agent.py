"""One machine's loops: heartbeats, desired-state sync, reconcile passes and observed reports.

The agent's `main` opens it (`start`: its nudge subscription and file responder), declares its
`loops()` on the service and closes it at stop. The fleet simulator (`tingyu.sim`) reuses one
`Agent` per simulated machine for its pass (`sync_once`) and runs its own timers instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import nats.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from tingyu.agent.autonomy import DesiredMemory
from tingyu.agent.files import FileFetcher
from tingyu.agent.heartbeat import heartbeat_loop
from tingyu.agent.held import Held
from tingyu.agent.identity import Identity
from tingyu.agent.reconciler import Reconciler
from tingyu.common import subjects
from tingyu.common.bus import Bus
from tingyu.common.desired import LISTING_WAIT_S, DesiredStore
from tingyu.common.errors import TingyuError, Unavailable
from tingyu.common.models.containers import ContainerReport, DesiredNudge, NodeDesired, NodeReport
from tingyu.common.models.nodes import NodeFacts
from tingyu.common.service import LoopFn, wait_or_stop
from tingyu.common.timefmt import now

log = logging.getLogger(__name__)

# A nudge after a quiet spell starts its pass at once, and nudges that come during a pass make one
# pass after it; passes are at least this far apart (a storm of Docker events, a burst of nudges).
PASS_GAP_S = 0.005
DEBOUNCE_S = 0.02  # the fleet simulator's wait before a nudged machine's pass is queued
RETRY_PUBLISH_S = 2.0
BUS_TIMEOUT_S = 5.0  # a slow or absent NATS must not hold up the next pass for long
# How often the machine makes sure it missed no nudge (the safety net: a job's write is nudged
# again until its machine reports it, so this catches what no job follows); the resync periods in
# between reconcile Docker against the state held. The periodic read first asks for the sequence
# of the machine's newest write (two direct gets, served by the stream itself) and lists only when
# it moved since the last listing. After a change to most of the fleet every machine lists once
# within this period: at 100 000 machines and 600 s that was 170 listings a second, more than a
# deployer and nats-server served on a loaded box (each reads blocks of `ty_desired` the stream
# no longer holds in memory), and the listings that timed out held the machines' passes back.
FULL_READ_S = 1800.0
KEY_READ_TRIES = 3  # failed reads of the keys named in a row before the machine lists them all
READ_BACKOFF_S = 1.0  # the first wait before listing again after a failed read; doubles, capped
# A listing is first asked of the deployer (one cut of the bucket, nothing on JetStream's API).
# When no deployer serves listings (none subscribed, an older platform, more keys than one answer
# holds), or SERVED_TRIES asked in a row went unanswered within SERVED_TIMEOUT_S (a credential
# from before served listings: NATS drops the request), the machine lists with its own consumer
# and asks the deployer again only after SERVED_RETRY_S. Fewer late answers, and any "unavailable"
# answer (a deployer busy with other machines' listings says so at once, or its store did not
# answer), make a failed read (the back-off, then the deployer again), not a listing by the
# machine's own consumer: a deployer is busy when the platform is, and a fleet's consumers would
# add to what made it busy.
SERVED_TIMEOUT_S = LISTING_WAIT_S
SERVED_TRIES = 3
SERVED_RETRY_S = 300.0


def read_counts() -> dict[str, int]:
    """An agent's counts of its reads of the desired state, each at 0. listings: every one; served:
    of those, the ones a deployer answered; failed: by kind."""
    kinds = ["keys", "listings", "served", "checks", "stale_nudges"]
    return dict.fromkeys([*kinds, "failed listings", "failed checks", "failed key reads"], 0)


class Agent:
    """The loops of one machine (`loops()`), opened by `start` and closed by `close`."""

    def __init__(
        self,
        bus: Bus,
        identity: Identity,
        reconciler: Reconciler,
        read_facts: Callable[[], NodeFacts],
        *,
        heartbeat_s: float = 10.0,
        resync_s: float = 30.0,
        full_read_s: float = FULL_READ_S,
        facts_every: int = 30,
        simulated: bool = False,
        files: FileFetcher | None = None,
        memory: DesiredMemory | None = None,
        serving: list[Any] | None = None,
    ) -> None:
        self.bus = bus
        self.files = files
        self.memory = memory or DesiredMemory()
        self.serving = serving or []  # more responders with start()/close() (logs, exec, pulls)
        self.identity = identity
        self.reconciler = reconciler
        self.read_facts = read_facts
        self.heartbeat_s = heartbeat_s
        self.resync_s = resync_s
        self.full_read_every = max(1, round(full_read_s / resync_s))  # in resync periods
        self.facts_every = facts_every
        self.simulated = simulated
        self.wake = asyncio.Event()
        self.passes = 0
        self.last_observed: NodeReport | None = None  # what the last pass saw
        self._held = Held.remembered(identity.uuid, self.memory.desired)
        self._desired_read = self.memory.desired is not None  # a state on disk counts as read
        self._fresh = False  # the state held was read from the platform (not only from disk)
        self._full = True  # the next pass lists every key (at start, after a reconnect, on request)
        self._check = False  # the next pass lists every key if any changed since the last listing
        self._listed = -1  # the machine's newest write as of the last listing (-1: none yet)
        self._resyncs = random.randrange(self.full_read_every)  # machines spread their listings out
        self._failed_reads = 0
        self._failed_key_reads = 0  # in a row
        self._read_after = 0.0  # monotonic: no listing before this, after a failed read
        self._served_after = 0.0  # monotonic: listings are not asked of the deployer before this
        self._served_late = 0  # listings asked of the deployer in a row that went unanswered
        self._whole = True  # the next pass looks at every container (not only the nudged keys')
        self._last_pass = float("-inf")  # when the last pass ended (the event loop's clock)
        self._pending: dict[str, int] = {}  # keys nudged since the last pass -> newest revision named
        self.reads = read_counts()
        self._published: dict[str, Any] | None = None
        self._published_at = 0.0
        self._nudges: Subscription | None = None
        # Report numbers grow across restarts too: they start from the clock in milliseconds.
        self._seq = int(now() * 1000)

    @property
    def uuid(self) -> str:
        return self.identity.uuid

    def nudge(self, full: bool = False) -> None:
        """Ask for a pass soon (several asks before it starts make one pass); `full` makes it read
        every key of the machine, not only the nudged ones."""
        self._full = self._full or full
        self.wake.set()

    def look_again(self) -> None:
        """Something happened to a container behind the agent's back (Docker's events): the next
        pass looks at every container, not only those of the keys nudged."""
        self._whole = True
        self.nudge()

    def changed(self, name: str, revision: int) -> None:
        """Key `name` now has `revision`: read it in the next pass, unless that revision is held."""
        if self._held.stale(name, revision):
            self.reads["stale_nudges"] += 1
            return
        self._pend({name: revision})
        self.nudge()

    @property
    def owes_full_read(self) -> bool:
        """The next pass reads the platform for every key: lists them (asked to, or its last read
        failed), or checks whether any changed (the period); not while a back-off is under way."""
        return (self._full or self._check) and time.monotonic() >= self._read_after

    @property
    def owes_read(self) -> bool:
        """The next pass reads the platform: every key (`owes_full_read`), or keys named by nudges
        and not read yet (a failed key read's keys wait for the next pass)."""
        return self.owes_full_read or bool(self._pending)

    def resync_period(self) -> None:
        """A resync period passed: the next pass reconciles against the state held, and every
        `full_read_every`th period (each machine at its own offset) checks first whether any key
        changed since its last listing, and lists them if so."""
        self._resyncs += 1
        self._whole = True
        if self._resyncs % self.full_read_every == 0:
            self._check = True

    def read_backoff_left(self) -> float:
        """Seconds until a listing may be tried again after a failed read (0 when it may now)."""
        return max(0.0, self._read_after - time.monotonic())

    def _backoff(self) -> float:
        """How long to wait before listing again after `_failed_reads` failures in a row: doubling
        from READ_BACKOFF_S up to two resync periods, with jitter, so that a fleet whose reads
        timed out together (NATS away or overloaded) does not come back together."""
        cap = max(self.resync_s * 2, READ_BACKOFF_S)
        doubled = READ_BACKOFF_S * 2.0 ** min(self._failed_reads - 1, 30)
        return min(cap, doubled) * random.uniform(0.5, 1.0)

    @property
    def desired(self) -> NodeDesired:
        """The desired state held now."""
        return self._held.doc()

    async def start(self) -> None:
        """Listen for nudges (and file requests, when this machine serves them)."""
        self._nudges = await self.bus.nc.subscribe(subjects.agent_nudge(self.uuid), cb=self._on_nudge)
        if self.files is not None:
            await self.files.start()
        for server in self.serving:
            await server.start()

    async def close(self) -> None:
        """Stop listening; copies in flight are cancelled."""
        if self._nudges is not None:
            with contextlib.suppress(Exception):
                await self._nudges.unsubscribe()
            self._nudges = None
        if self.files is not None:
            await self.files.close()
        for server in self.serving:
            await server.close()

    def loops(self) -> list[tuple[str, LoopFn]]:
        """Heartbeats, reconcile passes, reconnect checks and Docker events, each until its stop."""

        async def heartbeats(stop: asyncio.Event) -> None:
            await heartbeat_loop(
                self.bus,
                self.uuid,
                self.read_facts,
                stop,
                every_s=self.heartbeat_s,
                facts_every=self.facts_every,
                simulated=self.simulated,
            )

        async def events(stop: asyncio.Event) -> None:
            await self.reconciler.runtime.watch(self.uuid, self.look_again, stop)

        return [
            ("heartbeat", heartbeats),
            ("sync", self._sync_loop),
            ("reconnects", self._reconnect_loop),
            ("events", events),
        ]

    async def _on_nudge(self, msg: Msg) -> None:
        self.told(msg.data)

    def told(self, data: bytes) -> None:
        """A nudge's payload: one changed key (`DesiredNudge`), or empty for a full read."""
        if not data:
            self._read_after = 0.0  # the platform asks for a listing: no back-off (it paces its nudges)
            self.nudge(full=True)
            return
        try:
            nudge = DesiredNudge.from_bytes(data)
        except ValueError:
            self.nudge(full=True)  # a nudge of another form: read everything
            return
        self.changed(nudge.name, nudge.revision)

    async def _sync_loop(self, stop: asyncio.Event) -> None:
        self.wake.set()  # the first pass right at start
        while not stop.is_set():
            await self._woken(stop)
            if stop.is_set():
                return
            if not self.wake.is_set():
                self.resync_period()
            await self._debounce()
            self.wake.clear()
            try:
                await self.sync_once()
            except Exception:
                log.exception("%s: reconcile pass failed; trying again later", self.uuid)
                if await wait_or_stop(stop, max(1.0, self.read_backoff_left())):
                    return
                self.wake.set()
            finally:
                self._last_pass = asyncio.get_running_loop().time()

    async def _debounce(self) -> None:
        """Leading edge: no wait after a quiet spell; within PASS_GAP_S of the last pass, wait out
        the rest of it."""
        since = asyncio.get_running_loop().time() - self._last_pass
        if since < PASS_GAP_S:
            await asyncio.sleep(PASS_GAP_S - since)

    async def _woken(self, stop: asyncio.Event) -> None:
        """Wait for a nudge, the resync period or `stop`, whichever comes first."""
        waits = [asyncio.ensure_future(self.wake.wait()), asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait(waits, timeout=self.resync_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()

    async def _reconnect_loop(self, stop: asyncio.Event) -> None:
        """A reconnect may have hidden nudges: read the desired state again after each one."""
        seen = self.bus.nc.stats["reconnects"]
        while not await wait_or_stop(stop, 1.0):
            if self.bus.nc.stats["reconnects"] != seen:
                seen = self.bus.nc.stats["reconnects"]
                self.nudge(full=True)

    async def sync_once(self) -> NodeReport:
        """Read the desired state, reconcile, and publish the report when it says something new.

        A pass asked for only by nudges naming keys acts on those deployments alone and reports the
        others as the last pass saw them (Docker's events, the resync period, a reconnect or a failed
        pass make the next one look at every container)."""
        nudged = None if self._whole or self._full or self.last_observed is None else list(self._pending)
        self._whole = False
        desired, read = await self.read_desired()
        # Only a state read from the platform removes anything, and only while it answers (autonomy:
        # docs/remote.md).
        removals = self._fresh and self.bus.nc.is_connected
        only = nudged or None  # nothing named: a whole pass
        # The state read is kept on disk while the pass acts: a crash before it is written leaves
        # the previous one, which removes nothing while NATS is away (autonomy).
        remembering = self._remember(desired) if read else asyncio.sleep(0)
        try:
            containers, _ = await asyncio.gather(
                self.reconciler.reconcile(desired, removals=removals, only=only), remembering
            )
        except Exception:
            self._whole = True
            raise
        if only is not None:
            containers = self._with_others(desired, containers)
        self.passes += 1
        report = NodeReport(node_uuid=self.uuid, containers=containers, reported_at=now(), seq=self._seq + 1)
        self.last_observed = report
        await self._publish(report)
        return report

    async def _remember(self, desired: NodeDesired | None) -> None:
        """Keep the state read on disk; a failed write is logged, and the pass still reports (the
        next state read is written again)."""
        try:
            await asyncio.to_thread(self.memory.remember, desired)
        except OSError as exc:
            log.warning("%s: desired state not kept on disk: %s", self.uuid, exc)

    def _with_others(
        self, desired: NodeDesired | None, acted: dict[str, ContainerReport]
    ) -> dict[str, ContainerReport]:
        """The last report's deployments that are still desired, with those this pass acted on."""
        kept = desired.containers if desired else {}
        before = self.last_observed.containers if self.last_observed else {}
        return {**{name: seen for name, seen in before.items() if name in kept}, **acted}

    async def read_desired(self) -> tuple[NodeDesired | None, bool]:
        """The desired state: every key at start, after a reconnect, on an empty nudge and every
        `full_read_s`, else only the keys nudged since the last pass. While NATS is away, the last
        one read (the machine keeps its containers as they were meant to be, e.g. brings back one
        stopped behind its back); after a failed listing or check the next one waits out a back-off
        (keys a nudge names are still read); keys whose read failed are read again at the next
        pass (a nudge sent again, the resync period), by themselves: a slow direct get does not
        turn into a listing. The flag says whether anything was read from the platform in this
        pass."""
        due, pending = self.owes_full_read, self._pending
        full, check = due and self._full, due and not self._full
        self._pending = {}
        if due:
            self._full = self._check = False
        try:
            if check:  # a listing only if something changed; else the keys nudged, if any
                full = await asyncio.wait_for(self._read_if_changed(), BUS_TIMEOUT_S)
                check = False  # done
            if full:
                await asyncio.wait_for(self._read_all(), BUS_TIMEOUT_S)
            elif pending:
                await asyncio.wait_for(self._read_keys(pending), BUS_TIMEOUT_S)
        except Exception as exc:
            kind = "listing" if full else "check" if check else "key read"
            self.reads[f"failed {kind}s"] += 1
            self._read_failed(full=full, check=check, pending=pending)
            if not self._desired_read:
                raise
            log.warning("%s: desired state unreadable: %s failed (%r); kept the last", self.uuid, kind, exc)
        else:
            if full:
                self._failed_reads, self._read_after = 0, 0.0
            if full or pending:
                self._failed_key_reads = 0
            self._fresh = self._fresh or full
            self._desired_read = True
            return self._held.doc(), bool(full or pending)
        return (self._held.doc() if self._desired_read else None), False

    def _read_failed(self, *, full: bool, check: bool, pending: dict[str, int]) -> None:
        """What the next passes read after a failed one: a listing or a check again after a
        back-off; keys named alone again at the next pass (with any named since), up to
        KEY_READ_TRIES failures in a row, then a listing after the back-off."""
        if not (full or check):  # only the keys named
            self._failed_key_reads += 1
            if self._failed_key_reads < KEY_READ_TRIES:
                self._pend(pending)
                return
            full = True  # they would not read: list every key, after the back-off
        if full:  # read everything once NATS answers again (the keys named too)
            self._full, self._fresh = True, False
        else:
            self._check = True
            self._pend(pending)
        self._failed_reads += 1
        self._read_after = time.monotonic() + self._backoff()

    def _pend(self, pending: dict[str, int]) -> None:
        """Keys to read at the next pass, with those named since."""
        for name, revision in pending.items():
            self._pending[name] = max(revision, self._pending.get(name, 0))

    async def _read_all(self) -> None:
        self.reads["listings"] += 1
        store = DesiredStore(self.bus)
        if time.monotonic() >= self._served_after:
            try:
                await self._read_served(store)
                self._served_late = 0
                return
            except Unavailable:  # a deployer answered: it serves listings, and is busy
                self._served_late = 0
                raise
            except TimeoutError as exc:  # a deployer late, or a credential that may not ask
                self._served_late += 1
                if self._served_late < SERVED_TRIES:
                    raise
                self._not_served(exc)
            except (nats.errors.Error, TingyuError) as exc:  # no deployer serves it, or too large
                self._not_served(exc)
        # Asked before the listing: a write after it shows at the next check, never goes unseen.
        newest = await store.newest(self.uuid)
        self._held.replace(await store.listing_with_legacy(self.uuid), newest)
        self._listed = newest

    def _not_served(self, exc: Exception) -> None:
        """Listings are made with the machine's own consumer for SERVED_RETRY_S."""
        self._served_late = 0
        self._served_after = time.monotonic() + SERVED_RETRY_S
        log.info("%s: listing not served (%r); listing by itself", self.uuid, exc)

    async def _read_served(self, store: DesiredStore) -> None:
        """The listing as a deployer reads it in one cut, with the newest write under the keys in
        that cut; a legacy record the deployer has not split yet is read beside it."""
        found, newest = await store.served_listing_with_legacy(self.uuid, SERVED_TIMEOUT_S)
        self._held.replace(found, newest)
        self._listed = newest
        self.reads["served"] += 1

    async def _read_if_changed(self) -> bool:
        """Whether a listing is due: the machine's newest write is not the one of its last listing
        (a key written, or removed, since: nudged or not)."""
        self.reads["checks"] += 1
        return await DesiredStore(self.bus).newest(self.uuid) != self._listed

    async def _read_keys(self, pending: dict[str, int]) -> None:
        """The nudged keys, each by one direct get (all at once); a removal with its revision."""
        store = DesiredStore(self.bus)
        names = list(pending)
        self.reads["keys"] += len(names)
        read = await asyncio.gather(*(store.latest(self.uuid, name) for name in names))
        for name, (value, revision) in zip(names, read, strict=True):
            self._held.take(name, value, revision)
            if value is not None and revision < pending[name]:
                self._full = True  # a replica behind the write: the next pass reads everything
                self.wake.set()

    async def _publish(self, report: NodeReport) -> None:
        """Each report is the full state, so a failed publish is simply made again by a later pass."""
        content = {name: c.model_dump() for name, c in report.containers.items()}
        if content == self._published and now() - self._published_at < self.resync_s * 10:
            return
        try:
            await asyncio.wait_for(self.bus.publish(subjects.report(self.uuid), report), BUS_TIMEOUT_S)
        except Exception as exc:
            log.warning("%s: observed report not published (%r); a pass soon sends it", self.uuid, exc)
            asyncio.get_running_loop().call_later(RETRY_PUBLISH_S, self.nudge)
            return
        self._seq += 1
        self._published = content
        self._published_at = now()
