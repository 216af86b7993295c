"""In-memory views of the buckets the API reads most: each API process follows `ty_nodes`,
`ty_names`, `ty_observed` and `ty_jobs` with a KV watch and answers reads from memory.

A view is ready once the latest value of every key is in; after that it applies each change as the
watch delivers it (usually within milliseconds of the write; docs/api.md "Consistency" gives the
bound) and remembers the last stream sequence it applied, so a reader can wait until a view has
seen everything a bucket held at some moment (`caught_up`). After a reconnect it follows the bucket
afresh and swaps in the new values once they are all in, so no key deleted meanwhile stays behind.

The desired state and the image catalog are read from their buckets (their layout is changing).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from tingyu.common import subjects
from tingyu.common.bus import Bus
from tingyu.common.bus.stores import Change, Store
from tingyu.common.models.base import Message
from tingyu.common.models.containers import NameClaim, NodeReport
from tingyu.common.models.jobs import Job
from tingyu.common.models.nodes import NodeRecord

log = logging.getLogger(__name__)

M = TypeVar("M", bound=Message)

POLL_S = 0.5  # how often a view looks for a reconnect (or a watch that ended)
RETRY_S = 1.0  # wait before following again after the watch failed to start
CATCH_UP_S = 2.0  # longest a read waits for views to reflect a final job


class View(Generic[M]):
    """One bucket's current values in memory; `capacity` (0: unbounded) keeps only the most
    recently written keys, so a miss may mean 'older' as well as 'absent'.

    An `encoded` view keeps each value as its stored bytes and decodes it when it is read: a change
    then costs no decode, and the values are no Python objects for the garbage collector to walk
    (a machine's report of ten containers decodes to some thirty). For views read key by key; one
    that is iterated decodes every value."""

    def __init__(
        self,
        store: Store[M],
        capacity: int = 0,
        order: Callable[[M], Any] | None = None,
        *,
        encoded: bool = False,
    ) -> None:
        if encoded and (capacity or order is not None):
            raise ValueError("an encoded view has no capacity and no order")
        self.store = store
        self.order = order  # the sort key of `ordered()`
        self.name = store.spec.name
        self.capacity = capacity
        self.encoded = encoded
        self.values: OrderedDict[str, M] = OrderedDict()
        self.stored: dict[str, bytes] = {}  # an encoded view's values
        self.seq = 0  # the last stream sequence applied
        self.ready = asyncio.Event()
        self.loads = 0  # how many times the latest values were loaded (1 + reconnects)
        self.generation = 0  # bumped whenever the set of keys or their order changes
        self._sorted: tuple[int, list[str]] = (-1, [])
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    def get(self, key: str) -> M | None:
        if self.encoded:
            data = self.stored.get(key)
            return self.store.parse(key, data) if data is not None else None
        return self.values.get(key)

    def __len__(self) -> int:
        return len(self.stored) if self.encoded else len(self.values)

    def __iter__(self) -> Iterator[M]:
        if self.encoded:
            decoded = (self.store.parse(key, data) for key, data in list(self.stored.items()))
            return iter([value for value in decoded if value is not None])
        return iter(list(self.values.values()))

    def ordered(self) -> list[M]:
        """Every value, sorted by `order` (the sort is redone only after keys or their order changed)."""
        values = self.values
        if self.order is None:
            return list(values.values())
        if self._sorted[0] != self.generation:
            order = self.order
            self._sorted = (self.generation, sorted(values, key=lambda key: order(values[key])))
        return [values[key] for key in self._sorted[1]]

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
        fresh_stored: dict[str, bytes] = {}
        # Every write up to the stream's last message now is in the latest values the watch loads
        # (a server whose store was lost starts its sequence again: the view follows it down).
        seq = await self.store.last_seq()
        loading = True
        async for change in self.store.follow(decode=not self.encoded):
            if change is None:
                if loading:
                    self._swap(fresh, fresh_stored, seq)
                    loading = False
                continue
            if loading:
                seq = max(seq, change.seq)
                if self.encoded:
                    _keep(fresh_stored, change)
                else:
                    self._put(fresh, change)
            else:
                self.apply(change)

    def _swap(self, fresh: OrderedDict[str, M], fresh_stored: dict[str, bytes], seq: int) -> None:
        self.values = fresh
        self.stored = fresh_stored
        self.loads += 1
        self.seq = seq
        self.generation += 1
        self.ready.set()
        self._wake()
        log.info("view %s: %d keys, at sequence %d", self.name, len(self), self.seq)

    def apply(self, change: Change[M]) -> None:
        """One change as the watch delivered it (a value that does not parse reads as absent, as a
        direct read of it would; the store logged it)."""
        if self.encoded:
            if _keep(self.stored, change):
                self.generation += 1
        elif self._put(self.values, change):
            self.generation += 1
        self.seq = max(self.seq, change.seq)
        self._wake()

    def _put(self, values: OrderedDict[str, M], change: Change[M]) -> bool:
        """Apply to `values`; True when the set of keys or their order changed."""
        if change.value is None:
            return values.pop(change.key, None) is not None
        before = values.get(change.key)
        values[change.key] = change.value
        if self.capacity:
            values.move_to_end(change.key)
            if len(values) > self.capacity:
                values.popitem(last=False)
                return True
        if before is None:
            return True
        return self.order is not None and self.order(before) != self.order(change.value)

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

    async def caught_up(self, timeout: float = CATCH_UP_S) -> bool:
        """Wait until this view reflects every write its bucket held now (one stream-info request).
        A last message that has since left the stream (its age limit) can never be applied: the
        wait then ends after `timeout`, and the reader answers from what the view holds."""
        target = await self.store.last_seq()
        reached = await self.reach(target, timeout)
        if not reached:
            log.warning("view %s: at %d, not at %d after %.1f s", self.name, self.seq, target, timeout)
        return reached


def _keep(stored: dict[str, bytes], change: Change[Any]) -> bool:
    """Apply a change to an encoded view's values; True when the set of keys changed."""
    if not change.data:
        return stored.pop(change.key, None) is not None
    known = change.key in stored
    stored[change.key] = change.data
    return not known


def node_order(record: NodeRecord) -> tuple[float, str]:
    """Machines are listed oldest first (by creation time, then uuid)."""
    return record.createtime, record.facts.uuid


class Views:
    """The views of one API process, started in its lifespan."""

    def __init__(self, bus: Bus, jobs_capacity: int = 20_000) -> None:
        self.bus = bus
        self.nodes: View[NodeRecord] = View(bus.store(subjects.NODES), order=node_order)
        # Names and reports are read one key at a time: kept encoded (at 100,000 machines the
        # decoded reports alone were millions of objects, and every report written was decoded).
        self.names: View[NameClaim] = View(bus.store(subjects.NAMES), encoded=True)
        self.observed: View[NodeReport] = View(bus.store(subjects.REPORTED), encoded=True)
        self.jobs: View[Job] = View(bus.store(subjects.JOBS), capacity=jobs_capacity)
        self._by_name: dict[str, View[Any]] = {view.name: view for view in self.all}
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def all(self) -> tuple[View[NodeRecord], View[NameClaim], View[NodeReport], View[Job]]:
        return self.nodes, self.names, self.observed, self.jobs

    def view(self, spec: subjects.BucketSpec[M]) -> View[M] | None:
        """The view of the bucket `spec`, if one follows it."""
        found: View[Any] | None = self._by_name.get(spec.name)
        return found

    def start(self) -> None:
        self._tasks = [asyncio.create_task(view.run(self.bus), name=f"view-{view.name}") for view in self.all]
        _ATTACHED[self.bus] = self

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
