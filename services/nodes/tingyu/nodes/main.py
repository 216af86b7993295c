"""Nodes service: heartbeats on core NATS in, the `ty_nodes` bucket out.

Heartbeats arrive on partition subjects (nats-server maps `ty.hb.<uuid>` onto
`ty.hb.<partition>.<uuid>`); each replica holds a share of the partitions (`partitions.plan`),
hears only their beats, writes only their machines' records and reaps only their silent machines.
Every replica follows the whole bucket, so a replica that takes a partition over knows its machines.
A machine's stored heartbeat time is refreshed once per lease; when each was heard meanwhile is
told to the API every few seconds on core NATS (`tell_heard`), not written.
The `nodes-leader` lease remains for fleet-wide figures only (the machine gauges).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import logging
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import msgspec
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from tingyu.common import metrics, subjects, timefmt
from tingyu.common.bus import Bus
from tingyu.common.bus.stores import Change
from tingyu.common.leases import Lease, holder_name
from tingyu.common.models.leases import LeaseRecord
from tingyu.common.models.nodes import Heartbeat, NodeRecord, NodesHeard, NodeStatus
from tingyu.common.service import Service, run_service, settings_checked, wait_or_stop
from tingyu.nodes import partitions
from tingyu.nodes.config import NodesSettings, get_settings
from tingyu.nodes.registry import NodeRegistry

log = logging.getLogger(__name__)
LEASE_NAME = "nodes-leader"
WRITE_BATCH = 256  # registry writes in flight at once
HEARD_CHUNK = 1000  # machines per `NodesHeard` message (about 60 KB)


class BeatKey(msgspec.Struct):
    """The two fields of a beat that `NodeRegistry.touch` compares (the others are skipped
    unread): a compiled decode, about a tenth of `json.loads`'s time on a beat."""

    uuid: str
    facts_digest: str


_BEAT_KEY = msgspec.json.Decoder(BeatKey)


def decode_heartbeat(data: bytes) -> Heartbeat | None:
    """Most beats carry no facts: those skip model validation (the hot path at 10,000 beats/s)."""
    try:
        return heartbeat_of(json.loads(data))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def heartbeat_of(fields: dict[str, Any]) -> Heartbeat | None:
    """The heartbeat of decoded JSON; one without facts is built without validation."""
    if fields.get("facts") is None:
        return Heartbeat.model_construct(
            uuid=str(fields["uuid"]),
            facts_digest=str(fields["facts_digest"]),
            facts=None,
            sent_at=float(fields.get("sent_at", 0.0)),
            simulated=bool(fields.get("simulated", False)),
        )
    hb = Heartbeat.model_validate(fields)
    return hb if hb.facts is None or hb.facts.uuid == hb.uuid else None


class NodesService:
    """Tracks the heartbeats of the partitions this replica holds and stores their changes."""

    def __init__(self, bus: Bus, settings: NodesSettings) -> None:
        self.bus = bus
        self.settings = settings
        self.store = bus.store(subjects.NODES)
        self.leases = bus.store(subjects.LEASES)
        self.count = settings.platform.heartbeat_partitions
        self.registry = NodeRegistry(
            settings.not_ready_after_s,
            settings.lease_s,
            functools.partial(subjects.partition_of, partitions=self.count),
        )
        self.lease = Lease(bus, LEASE_NAME, settings.leader_ttl_s)
        self.me = holder_name("nodes")
        self.replica = partitions.replica_key(secrets.token_hex(6))
        self.seen_leases: dict[str, LeaseRecord] = {}  # `ty_leases` under nodes.>, followed
        # Partition -> monotonic time up to which this replica surely holds it.
        self.owned: dict[int, float] = {}
        self.subs: dict[int, Subscription] = {}
        # Machines whose record waits to be stored, in order (the registry holds the record's bytes:
        # a newer change replaces an unwritten one, and no decoded record waits in memory).
        self.pending: dict[str, None] = {}
        self.wake = asyncio.Event()
        # `ty_nodes` followed: its latest values load the registry, then other replicas' writes.
        self.follower: AsyncIterator[Change[NodeRecord] | None] | None = None

    def owns(self, partition: int) -> bool:
        """Held and not given up: renewed within the lease, or (a renewal late under load) still
        naming this replica in `ty_leases`, so no other replica has taken it over."""
        until = self.owned.get(partition)
        if until is None:
            return False
        if time.monotonic() < until:
            return True
        record = self.seen_leases.get(partitions.partition_key(partition))
        return record is not None and record.holder == self.me

    @property
    def held(self) -> list[int]:
        return sorted(p for p in self.owned if self.owns(p))

    async def start(self) -> None:
        """Load the fleet from storage one record at a time, so the decoded fleet is never in memory
        at once; the same watch then follows other replicas' writes (`follow_storage`). The
        partitions' heartbeats are followed once held."""
        self.follower = self.store.follow(decode=False)
        now = timefmt.now()
        async for change in self.follower:
            if change is None:
                break
            if change.data and (record := self.store.parse(change.key, change.data)) is not None:
                self.registry.loaded(record, change.data, now)
        log.info("loaded %d machines", len(self.registry.nodes))

    async def on_heartbeat(self, msg: Msg) -> None:
        metrics.HEARTBEATS.inc()
        _, _, partition, uuid = msg.subject.split(".", 3)  # ty.hb.<partition>.<uuid>
        try:
            key = _BEAT_KEY.decode(msg.data)
            if key.uuid != uuid or int(partition) != self.registry.partition(uuid):
                raise ValueError("not the subject's uuid, or not its partition")
            if self.registry.touch(uuid, key.facts_digest, timefmt.now()):
                return  # nothing changed: no model, no write
            hb = decode_heartbeat(msg.data)
        except ValueError:  # msgspec's errors are ValueErrors too
            hb = None
        if hb is None:
            log.warning("undecodable heartbeat on %s", msg.subject)
            return
        if self.registry.wants_facts(hb):
            if msg.reply:  # the agent listens there and sends its facts at once
                await self.bus.nc.publish(msg.reply, b"facts")
            return
        record = self.registry.beat(hb, timefmt.now())
        if record is not None and self.owns(int(partition)):
            self.registry.stored(record)  # optimistic: avoids queueing the same change per beat
            self.queue(uuid)

    def queue(self, uuid: str) -> None:
        """Store the machine's record as the registry holds it (by the time it is written)."""
        self.pending[uuid] = None
        self.wake.set()

    # --- partitions ----------------------------------------------------------------------------

    async def follow_leases(self, stop: asyncio.Event) -> None:
        """Partition leases and replica presence, as `partitions.plan` reads them."""

        async def follow() -> None:
            async for key, record in self.leases.watch(partitions.WATCHED):
                if record is None:
                    self.seen_leases.pop(key, None)
                else:
                    self.seen_leases[key] = record

        await until_stopped(follow(), stop)

    async def balance(self, stop: asyncio.Event) -> None:
        """Every tick: say this replica is alive, hold its share of partitions (taking over lapsed
        ones), reap their silent machines. At stop its partitions are released for the others."""
        try:
            while True:
                try:
                    await self.balance_once()
                    self.reap_partitions()
                except Exception:
                    log.exception("partition tick failed; trying again next tick")
                if await wait_or_stop(stop, self.settings.tick_s):
                    return
        finally:
            for partition in list(self.owned):
                with contextlib.suppress(Exception):
                    await self.release(partition)

    async def balance_once(self) -> None:
        ttl = self.settings.leader_ttl_s
        now = timefmt.now()
        presence = LeaseRecord(holder=self.me, expires_at=now + ttl)
        try:
            await self.leases.put(self.replica, presence)
            self.seen_leases[self.replica] = presence
        except Exception as exc:  # the partitions are still renewed: they matter more
            log.warning("could not record this replica's presence (%r)", exc)
        hold_these, release = partitions.plan(self.seen_leases, self.me, now, self.count)
        for partition in release:
            await self.release(partition)
        # A tick less than the lease: a slow renewal never overlaps another replica's hold.
        until = time.monotonic() + ttl - min(self.settings.tick_s, ttl / 2)

        async def hold(partition: int) -> bool | None:
            """Whether this replica holds it now; None when the renewal failed (kept as it was:
            a busy replica keeps its partitions unless another one takes them)."""
            try:
                return await Lease(self.bus, partitions.partition_key(partition), ttl, holder=self.me).hold()
            except Exception as exc:
                log.warning("could not renew heartbeat partition %d (%r)", partition, exc)
                return None

        held = await asyncio.gather(*(hold(partition) for partition in hold_these))
        taken: list[int] = []
        for partition, ok in zip(hold_these, held, strict=True):
            if ok:
                self.owned[partition] = until
                if partition not in self.subs:
                    taken.append(partition)
            elif ok is False:
                self.owned.pop(partition, None)
        for partition in [p for p in self.owned if not self.owns(p)]:
            self.owned.pop(partition, None)  # another replica has it
            await self.unsubscribe(partition)
        if taken:
            self.registry.grace(set(taken), timefmt.now())
            for partition in taken:
                self.subs[partition] = await self.bus.nc.subscribe(
                    subjects.heartbeat_partition(partition), cb=self.on_heartbeat
                )
            log.info("%s holds heartbeat partitions %s", self.me, self.held)

    async def release(self, partition: int) -> None:
        """Give a partition up now (its lease lapses at once) instead of at the lease's end."""
        self.owned.pop(partition, None)
        await self.unsubscribe(partition)

        def lapse(current: LeaseRecord | None) -> LeaseRecord | None:
            if current is None or current.holder != self.me:
                return None
            return LeaseRecord(holder=self.me, expires_at=0.0)

        await self.leases.mutate(partitions.partition_key(partition), lapse)

    async def unsubscribe(self, partition: int) -> None:
        sub = self.subs.pop(partition, None)
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    def reap_partitions(self) -> None:
        """Silent machines of the held partitions go NotReady."""
        held = set(self.held)
        if not held:
            return
        for record in self.registry.expired(timefmt.now(), held):
            log.info("machine %s is NotReady", record.facts.uuid, extra={"uuid": record.facts.uuid})
            self.registry.stored(record)
            self.queue(record.facts.uuid)

    # --- storage -------------------------------------------------------------------------------

    async def follow_storage(self, stop: asyncio.Event) -> None:
        """Writes by other replicas keep this replica's view of storage current."""

        def others(uuid: str) -> bool:  # the holder of a machine's partition wrote it (and knows it)
            return not self.owns(self.registry.partition(uuid))

        async def follow() -> None:
            # The watch `start` loaded from, once; a follow started again replays the latest values.
            follower, self.follower = self.follower or self.store.follow(decode=False), None
            async for change in follower:
                if change is None or not change.data or not others(change.key):
                    continue
                if (record := self.store.parse(change.key, change.data)) is not None:
                    self.registry.stored(record, change.data)

        await until_stopped(follow(), stop)

    async def writer(self, stop: asyncio.Event) -> None:
        """Store pending records, many in flight at once (a fleet joining is 100,000 writes)."""

        async def put(uuid: str) -> bool:
            data = self.registry.encoded(uuid)
            if not data or not self.owns(self.registry.partition(uuid)):
                return True  # the partition moved on: its new holder decides
            try:
                await self.store.put_encoded(uuid, data)
            except Exception as exc:
                log.warning("could not store machine %s (%s); will retry", uuid, exc)
                self.pending.setdefault(uuid)
                return False
            return True

        while not stop.is_set():
            if not self.pending:
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), timeout=1.0)
                continue
            batch = list(itertools.islice(self.pending, WRITE_BATCH))
            for uuid in batch:
                del self.pending[uuid]
            stored = await asyncio.gather(*(put(uuid) for uuid in batch))
            await asyncio.sleep(0 if all(stored) else 0.5)  # let heartbeats in; back off on failures

    async def tell_heard(self, stop: asyncio.Event) -> None:
        """Every `heard_every_s`, tell the API when this replica heard the machines of its
        partitions that beat since the last time (`NodesHeard`, HEARD_CHUNK machines a message).
        A message lost (NATS away) is made up for by the machine's next beat."""
        since = 0.0
        while not await wait_or_stop(stop, self.settings.heard_every_s):
            now = timefmt.now()
            heard = self.registry.heard_since(since, set(self.held))
            since = now
            for partition, machines in heard.items():
                subject = subjects.nodes_heard(str(partition))
                items = list(machines.items())
                for start in range(0, len(items), HEARD_CHUNK):
                    told = NodesHeard(heard=dict(items[start : start + HEARD_CHUNK]))
                    try:
                        await self.bus.emit(subject, told)
                    except Exception as exc:
                        log.warning("could not tell when partition %d was heard (%r)", partition, exc)
                        break

    async def gauges(self) -> None:
        """The leader's tick: the fleet's machines by status."""
        statuses = Counter(seen.status.value for seen in self.registry.nodes.values() if seen.status)
        for status in NodeStatus:
            metrics.MACHINES.labels(status.value).set(statuses[status.value])


async def until_stopped(work: Coroutine[Any, Any, None], stop: asyncio.Event) -> None:
    """Run `work` until it ends (its error raised here) or `stop` is set (then it is cancelled)."""
    task = asyncio.create_task(work)
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        task.cancel()
        stopping.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def setup(service: Service) -> None:
    """The bus and the fleet loaded; the writer, the storage and lease followers, the partition
    balancer (which follows the held partitions' heartbeats) and the leader's gauges as loops."""
    settings = get_settings()
    service.metrics(settings.metrics_port)
    bus = await service.connect(settings.platform)
    nodes = NodesService(bus, settings)
    await nodes.start()
    service.loop("writer", nodes.writer)
    service.loop("follow-storage", nodes.follow_storage)
    service.loop("follow-leases", nodes.follow_leases)
    service.loop("partitions", nodes.balance)
    service.loop("tell-heard", nodes.tell_heard)
    service.leader(nodes.lease, settings.tick_s, nodes.gauges)


def run() -> None:
    with settings_checked("nodes"):
        level = get_settings().platform.log_level
    run_service("nodes", setup, level)


if __name__ == "__main__":
    run()
