"""In-memory views of the buckets the API reads most: each API process follows `ty_nodes`,
`ty_names`, `ty_observed` and `ty_jobs` with a KV watch and answers reads from memory.

A view is ready once the latest value of every key is in; after that it applies each change as the
watch delivers it (usually within milliseconds of the write; docs/api.md "Consistency") and
remembers the last stream sequence it applied, so a reader can wait until a view has seen
everything a bucket held at some moment (`reach`), or have one key's last write read into it at
once (`caught_up`). After a reconnect it follows the bucket
afresh and swaps in the new values once they are all in, so no key deleted meanwhile stays behind.

The desired state and the image catalog are read from their buckets (their layout is changing).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import functools
import gc
import logging
import sys
import weakref
import zlib
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any, Final, Generic, TypeVar

from nats.aio.msg import Msg

from tingyu.api.schemas.nodes import node_entry
from tingyu.common import subjects
from tingyu.common.bus import Bus
from tingyu.common.bus.stores import Change, Store
from tingyu.common.models.base import Message
from tingyu.common.models.containers import NameClaim, NodeReport
from tingyu.common.models.jobs import Job
from tingyu.common.models.nodes import NodeRecord, NodesHeard
from tingyu.common.settings import PlatformSettings
from tingyu.common.timefmt import to_wire

log = logging.getLogger(__name__)

M = TypeVar("M", bound=Message)

POLL_S = 0.5  # how often a view looks for a reconnect (or a watch that ended)
RETRY_S = 1.0  # wait before following again after the watch failed to start
CATCH_UP_S = 2.0  # longest a read waits for views to reflect a final job
TIMEZONE = PlatformSettings.model_fields["timezone"].default  # of the nodes view's entries


class View(Generic[M]):
    """One bucket's current values in memory; `capacity` (0: unbounded) keeps only the most
    recently written keys, so a miss may mean 'older' as well as 'absent'.

    An `encoded` view keeps each value as its stored bytes and decodes it when it is read: a change
    then costs no decode, and the values are no Python objects for the garbage collector to walk
    (a machine's report of ten containers decodes to some thirty). For views read key by key; one
    that is iterated decodes every value. A `compressed` view (encoded too) keeps the bytes
    compressed (`pack`): a machine's report of ten containers takes 1.1 KiB instead of 3.3 KiB,
    for about 15 µs more to keep and 8 µs more to read."""

    def __init__(
        self, store: Store[M], capacity: int = 0, *, encoded: bool = False, compressed: bool = False
    ) -> None:
        encoded = encoded or compressed
        self.store = store
        self.name = store.spec.name
        self.capacity = capacity
        self.encoded = encoded
        self.compressed = compressed
        self.values: OrderedDict[str, M] = OrderedDict()
        self.stored: dict[str, Any] = self._held()  # an encoded view's values (`_keep`: in what form)
        self.seq = 0  # the last stream sequence applied
        self.ready = asyncio.Event()
        self.loads = 0  # how many times the latest values were loaded (1 + reconnects)
        self.loading = True  # (again, after a reconnect): the values held are about to be swapped
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        # Keys whose last write a reader applied before the watch delivered it (`caught_up`), with
        # that write's sequence: the watch's older writes of them are not applied over it.
        self._ahead: dict[str, int] = {}

    def get(self, key: str) -> M | None:
        if self.encoded:
            data = self.stored.get(key)
            return self._parse(key, data) if data is not None else None
        return self.values.get(key)

    def _parse(self, key: str, held: bytes) -> M | None:
        """An encoded view's value of `key`, decoded from what the view holds."""
        return self.store.parse(key, unpack(held) if self.compressed else held)

    def __len__(self) -> int:
        return len(self.stored) if self.encoded else len(self.values)

    def keys_held(self) -> set[str]:
        return set(self.stored if self.encoded else self.values)

    def __iter__(self) -> Iterator[M]:
        if self.encoded:
            decoded = (self._parse(key, held) for key, held in list(self.stored.items()))
            return iter([value for value in decoded if value is not None])
        return iter(list(self.values.values()))

    # --- following the bucket ------------------------------------------------------------------

    async def run(self, bus: Bus) -> None:
        """Follow the bucket until cancelled: afresh after every reconnect or failed watch."""
        while True:
            reconnects = bus.nc.stats["reconnects"]
            follower = asyncio.create_task(self._follow(), name=f"view-{self.name}")
            try:
                while not follower.done() and bus.nc.stats["reconnects"] == reconnects:
                    await asyncio.wait({follower}, timeout=POLL_S)
            finally:
                follower.cancel()
                await asyncio.wait({follower})  # its end, not its exception (read below)
            if follower.done() and not follower.cancelled() and follower.exception() is not None:
                log.warning("view %s: watch ended (%s); following afresh", self.name, follower.exception())
                await asyncio.sleep(RETRY_S)
            else:
                log.info("view %s: reconnected; following afresh", self.name)

    async def _follow(self) -> None:
        fresh: OrderedDict[str, M] = OrderedDict()
        fresh_stored = self._held()
        # Every write up to the stream's last message now is in the latest values the watch loads
        # (a server whose store was lost starts its sequence again: the view follows it down).
        self.loading = True  # until the latest values are all in (`_swap`)
        seq = await self.store.last_seq()
        async for change in self.store.follow(decode=not self.encoded):
            if change is None:
                if self.loading:
                    self._swap(fresh, fresh_stored, seq)
                continue
            if self.loading:
                seq = max(seq, change.seq)
                if self.encoded:
                    self._keep(fresh_stored, change)
                else:
                    self._put(fresh, change)
            else:
                self.apply(change)

    def _held(self) -> dict[str, Any]:
        """An empty store for an encoded view's values: in the order written when they are bounded."""
        return OrderedDict() if self.capacity else {}

    def _swap(self, fresh: OrderedDict[str, M], fresh_stored: dict[str, Any], seq: int) -> None:
        self.values = fresh
        self.stored = fresh_stored
        self._ahead.clear()  # the values read ahead went with the old ones
        self.loading = False
        self.loads += 1
        self.seq = seq
        self.ready.set()
        self._wake()
        log.info("view %s: %d keys, at sequence %d", self.name, len(self), self.seq)

    def apply(self, change: Change[M]) -> None:
        """One change as the watch delivered it (a value that does not parse reads as absent, as a
        direct read of it would; the store logged it). A write older than one read ahead of the
        watch (`caught_up`) only moves the sequence on."""
        ahead = self._ahead.get(change.key) if self._ahead else None
        if ahead is None or change.seq >= ahead:
            if ahead is not None:
                del self._ahead[change.key]
            self._change(change)
        self.seq = max(self.seq, change.seq)
        self._wake()

    def _change(self, change: Change[M]) -> None:
        if self.encoded:
            self._keep(self.stored, change)
        else:
            self._put(self.values, change)

    def _put(self, values: OrderedDict[str, M], change: Change[M]) -> None:
        """Apply a change to `values` (the oldest written key goes past `capacity`)."""
        if change.value is None:
            values.pop(change.key, None)
            return
        values[change.key] = change.value
        self._bound(values, change.key)

    def _keep(self, stored: dict[str, Any], change: Change[M]) -> None:
        """Apply a change to an encoded view's values (its bytes, compressed or not)."""
        if not change.data:
            stored.pop(change.key, None)
            return
        stored[change.key] = pack(change.data) if self.compressed else change.data
        if isinstance(stored, OrderedDict):  # a bounded view's (`_held`)
            self._bound(stored, change.key)

    def _bound(self, values: OrderedDict[str, Any], key: str) -> None:
        """`key` was just written: it becomes the newest, and the oldest goes past `capacity`."""
        if self.capacity:
            values.move_to_end(key)
            if len(values) > self.capacity:
                values.popitem(last=False)

    # --- waiting for a sequence ----------------------------------------------------------------

    def _wake(self) -> None:
        if not self._waiters:
            return
        waiting = []
        for seq, future in self._waiters:
            if seq <= self.seq:
                if not future.done():
                    future.set_result(None)
            else:
                waiting.append((seq, future))
        self._waiters = waiting

    async def reach(self, seq: int, timeout: float) -> bool:
        """Wait until this view has applied the stream sequence `seq`; False after `timeout`."""
        if self.seq >= seq:
            return True
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((seq, future))
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return False
        return True

    async def caught_up(self, key: str, timeout: float = CATCH_UP_S) -> bool:
        """Make this view reflect the last write of `key`, a delete included: not every write the
        bucket has taken since, which under a fleet's steady writes is always a little ahead of
        any view. One direct read of the key: when the view has not applied that write yet, the
        write read is applied now, ahead of the watch (`apply` then skips the key's older writes
        as they arrive), so the reader waits for one read, not for the watch to get through every
        write before it. A view still loading is waited for instead (at most `timeout`; False
        when it did not get there, and the reader answers from what the view holds)."""
        data, target = await self.store.latest_held(key)
        if self.seq >= target or self._ahead.get(key, 0) >= target:
            return True
        if not self.loading:
            self._ahead[key] = target
            value = self.store.parse(key, data) if data and not self.encoded else None
            self._change(Change(key, value, target, data or b""))
            return True
        reached = await self.reach(target, timeout)
        if not reached:
            log.warning("view %s: at %d, not at %d after %.1f s", self.name, self.seq, target, timeout)
        return reached


# zlib's fastest level: a report shrinks about as much as at the default level (what is left is
# mostly container and job ids, random hex), in half the time.
PACK_LEVEL = 1


def pack(data: bytes) -> bytes:
    """A stored value as a compressed view holds it."""
    return zlib.compress(data, PACK_LEVEL)


def unpack(held: bytes) -> bytes:
    return zlib.decompress(held)


def node_order(record: NodeRecord) -> tuple[float, str]:
    """Machines are listed oldest first (by creation time, then uuid)."""
    return record.createtime, record.facts.uuid


# A machine as the nodes view holds it: a plain tuple of its sort key (creation time, uuid), the
# fields `/node/list` filters on and a request checks (area, operator, status), its `/node/list`
# entry, encoded, which `/node/get` answers too, and the stored heartbeat time with where its text
# starts in the entry (a later time heard is put in its place: `NodesView.entry`). Tuples of
# strings, numbers and bytes are no work for the garbage collector (it stops tracking them), where
# a decoded record was a dozen objects it walked. The record itself is not kept: nothing the API
# answers from the view needs more.
Machine = tuple[float, str, str, str, str, bytes, float, int]
UUID: Final = 1
AREA: Final = 2
OPERATOR: Final = 3
STATUS: Final = 4
ENTRY: Final = 5
HEARTBEAT: Final = 6
HEARTBEAT_AT: Final = 7
_HEARTBEAT_FIELD = b'"heartbeattime":"'


EVERY = slice(None)


def machine(record: NodeRecord, timezone: str, key: str = "") -> Machine:
    """What the nodes view keeps of a machine (`key`: its key, the same text as its uuid, held
    once). A fleet has a few areas and three operators: each is held once (interned), not once per
    machine."""
    facts = record.facts
    entry = node_entry(record, timezone)
    return (
        record.createtime,
        key or facts.uuid,
        sys.intern(facts.area),
        sys.intern(facts.operator),
        record.status.value,
        entry,
        record.heartbeattime,
        # The first such text is the field's: a quote inside a string value is escaped.
        entry.index(_HEARTBEAT_FIELD) + len(_HEARTBEAT_FIELD),
    )


def heard_entry(held: Machine, heard: float, timezone: str) -> bytes:
    """The machine's entry with `heard` as its heartbeat time when that is a later second than the
    stored one (the view's entries are encoded in `timezone`)."""
    if int(heard) <= int(held[HEARTBEAT]):
        return held[ENTRY]
    entry, at = held[ENTRY], held[HEARTBEAT_AT]
    return entry[:at] + _wire_second(int(heard), timezone) + entry[entry.index(b'"', at) :]


@functools.lru_cache(maxsize=4096)
def _wire_second(second: int, timezone: str) -> bytes:
    """A time as an entry writes it (a fleet's beats of a few seconds share a few texts)."""
    return to_wire(second, timezone).encode()


class NodesView(View[NodeRecord]):
    """`ty_nodes` in memory as one `Machine` tuple per machine (about 0.8 KiB each; a decoded record
    took 3 KiB). A change is decoded once, to check it and to encode its `/node/list` entry in
    `timezone`, so a listing joins bytes already made and `/node/get` answers them as they are.
    When the nodes service last heard each machine arrives apart (`NodesHeard`, every few seconds:
    a stored heartbeat time is refreshed only once per lease) and is kept beside (`heard`); `entry`
    answers the later of the two.

    It holds no records: `machine` is how it is read (`get` and iterating refuse, so that no caller
    takes an absent record for an absent machine). The listing order is kept as the machines' sort
    keys, sorted: a machine that comes, goes or changes its creation time moves one key (a
    bisection), so no read ever sorts the fleet (about 100 ms at 100,000 machines, on the event
    loop)."""

    def __init__(self, store: Store[NodeRecord], timezone: str) -> None:
        super().__init__(store, encoded=True)
        self.timezone = timezone
        self._order: list[tuple[float, str]] = []  # (creation time, uuid) of every machine, sorted
        self.heard: dict[str, float] = {}  # uuid -> its last heartbeat the nodes service heard

    def get(self, key: str) -> NodeRecord | None:
        raise TypeError("the nodes view holds machines' entries, not their records: use machine()")

    def __iter__(self) -> Iterator[NodeRecord]:
        raise TypeError("the nodes view holds machines' entries, not their records: use machines()")

    def machine(self, key: str) -> Machine | None:
        found: Machine | None = self.stored.get(key)
        return found

    def machines(self, window: slice = EVERY) -> list[Machine]:
        """The machines in `window` of all of them oldest first."""
        stored: dict[str, Machine] = self.stored
        return [stored[key] for _, key in self._order[window]]

    def entry(self, held: Machine) -> bytes:
        """The machine's `/node/list` entry, with the later of its stored heartbeat time and the
        one last heard."""
        return heard_entry(held, self.heard.get(held[UUID], 0.0), self.timezone)

    def hear(self, heard: dict[str, float]) -> None:
        """Times the nodes service heard machines (of those the view holds: the map stays the
        fleet's size)."""
        stored, known = self.stored, self.heard
        for uuid, at in heard.items():
            if uuid in stored and at > known.get(uuid, 0.0):
                known[uuid] = at

    async def follow_heard(self, bus: Bus) -> None:
        """Hear what the nodes service tells of heartbeats until cancelled (a core subscription:
        the client subscribes again after a reconnect)."""
        while True:
            try:
                sub = await bus.nc.subscribe(subjects.NODES_HEARD_ALL, cb=self._on_heard)
                break
            except Exception as exc:
                log.warning("nodes view: cannot hear heartbeat times yet (%r)", exc)
                await asyncio.sleep(RETRY_S)
        try:
            await asyncio.Event().wait()
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _on_heard(self, msg: Msg) -> None:
        try:
            told = NodesHeard.from_bytes(msg.data)
        except ValueError:
            log.warning("nodes view: undecodable heartbeat times on %s", msg.subject)
            return
        self.hear(told.heard)

    def _swap(self, fresh: OrderedDict[str, NodeRecord], fresh_stored: dict[str, Any], seq: int) -> None:
        self._order = sorted(held[:2] for held in fresh_stored.values())
        self.heard = {uuid: at for uuid, at in self.heard.items() if uuid in fresh_stored}
        super()._swap(fresh, fresh_stored, seq)

    def apply(self, change: Change[NodeRecord]) -> None:
        before: Machine | None = self.stored.get(change.key)
        super().apply(change)
        after: Machine | None = self.stored.get(change.key)
        was, now = (before[:2] if before else None), (after[:2] if after else None)
        if was == now:
            return
        if now is None:
            self.heard.pop(change.key, None)
        if was is not None:
            del self._order[bisect.bisect_left(self._order, was)]
        if now is not None:
            bisect.insort(self._order, now)

    def _keep(self, stored: dict[str, Any], change: Change[NodeRecord]) -> None:
        """A value that does not parse reads as absent (as a direct read of it would; the store
        logged it)."""
        record = self.store.parse(change.key, change.data) if change.data else None
        if record is None:
            stored.pop(change.key, None)
        else:
            stored[change.key] = machine(record, self.timezone, change.key)


class Views:
    """The views of one API process, started in its lifespan."""

    def __init__(
        self,
        bus: Bus,
        jobs_capacity: int = 20_000,
        timezone: str = TIMEZONE,
        names_capacity: int = 100_000,
        reports_capacity: int = 20_000,
    ) -> None:
        self.bus = bus
        self.nodes = NodesView(bus.store(subjects.NODES), timezone)
        # Names, reports and jobs are read one key at a time: kept encoded (at 100,000 machines the
        # decoded reports alone were millions of objects, and every report written was decoded).
        # Each keeps its most recently written keys, and an older one is read from its bucket (one
        # direct get): a fleet has ten or more deployment names per machine, and a report is read
        # for a deployment's pod state, mostly of one deployed or changed a moment ago.
        self.names: View[NameClaim] = View(bus.store(subjects.NAMES), names_capacity, encoded=True)
        self.observed: View[NodeReport] = View(
            bus.store(subjects.REPORTED), reports_capacity, compressed=True
        )
        self.jobs: View[Job] = View(bus.store(subjects.JOBS), jobs_capacity, encoded=True)
        # Read key by key through `view`: the nodes view holds entries, not records (`reads.node`).
        self._by_name: dict[str, View[Any]] = {
            view.name: view for view in (self.names, self.observed, self.jobs)
        }
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def all(self) -> tuple[NodesView, View[NameClaim], View[NodeReport], View[Job]]:
        return self.nodes, self.names, self.observed, self.jobs

    def view(self, spec: subjects.BucketSpec[M]) -> View[M] | None:
        """The view of the bucket `spec` that holds its records, if one follows it."""
        found: View[Any] | None = self._by_name.get(spec.name)
        return found

    def start(self) -> None:
        self._tasks = [asyncio.create_task(view.run(self.bus), name=f"view-{view.name}") for view in self.all]
        self._tasks.append(asyncio.create_task(self.nodes.follow_heard(self.bus), name="view-nodes-heard"))
        self._tasks.append(asyncio.create_task(self._settle(), name="views-settle"))
        _ATTACHED[self.bus] = self

    async def _settle(self) -> None:
        """Once the views are loaded, what the process holds by then is moved out of the garbage
        collector's sight (`gc.freeze`): a collection no longer walks the loaded views."""
        await asyncio.gather(*(view.ready.wait() for view in self.all))
        gc.collect()
        gc.freeze()

    async def stop(self) -> None:
        _ATTACHED.pop(self.bus, None)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task

    def loading(self) -> list[str]:
        """The buckets whose views are not ready yet."""
        return [view.name for view in self.all if not view.ready.is_set()]


_ATTACHED: weakref.WeakKeyDictionary[Bus, Views] = weakref.WeakKeyDictionary()


def of(bus: Bus) -> Views | None:
    """The ready views that follow `bus`'s server, or None (not started, or still loading: reads
    then go to the buckets)."""
    views = _ATTACHED.get(bus)
    return views if views is not None and not views.loading() else None
