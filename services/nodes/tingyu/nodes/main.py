"""Nodes service: heartbeats on core NATS in, the `ty_nodes` bucket out."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
from collections import Counter
from collections.abc import Coroutine
from typing import Any

from nats.aio.msg import Msg

from tingyu.common import metrics, subjects, timefmt
from tingyu.common.bus import Bus
from tingyu.common.leases import Lease
from tingyu.common.models.nodes import Heartbeat, NodeRecord, NodeStatus
from tingyu.common.service import Service, run_service
from tingyu.nodes.config import NodesSettings, get_settings
from tingyu.nodes.registry import NodeRegistry

log = logging.getLogger(__name__)
LEASE_NAME = "nodes-leader"
WRITE_BATCH = 256  # registry writes in flight at once


def decode_heartbeat(data: bytes) -> Heartbeat | None:
    """Most beats carry no facts: those skip model validation (the hot path at 10,000 beats/s)."""
    try:
        fields = json.loads(data)
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
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


class NodesService:
    """Tracks every heartbeat; the leader replica stores changes and reaps silent machines."""

    def __init__(self, bus: Bus, settings: NodesSettings) -> None:
        self.bus = bus
        self.settings = settings
        self.store = bus.store(subjects.NODES)
        self.registry = NodeRegistry(settings.not_ready_after_s, settings.lease_s)
        self.lease = Lease(bus, LEASE_NAME, settings.leader_ttl_s)
        self.leading_until = 0.0  # monotonic time up to which this replica surely holds the lease
        # Records waiting to be stored, one per machine: a newer change replaces an unwritten one.
        self.pending: dict[str, NodeRecord] = {}
        self.wake = asyncio.Event()

    @property
    def leader(self) -> bool:
        return time.monotonic() < self.leading_until

    async def start(self) -> None:
        """Load the fleet from storage, then follow every heartbeat (unsubscribed by the drain)."""
        records = await self.store.values()
        self.registry.load(records, timefmt.now())
        log.info("loaded %d machines", len(records))
        await self.bus.nc.subscribe(subjects.HEARTBEATS_ALL, cb=self.on_heartbeat)

    async def on_heartbeat(self, msg: Msg) -> None:
        metrics.HEARTBEATS.inc()
        hb = decode_heartbeat(msg.data)
        if hb is None or msg.subject != subjects.heartbeat(hb.uuid):
            log.warning("undecodable heartbeat on %s", msg.subject)
            return
        if self.registry.wants_facts(hb):
            if msg.reply:  # the agent listens there and sends its facts at once
                await self.bus.nc.publish(msg.reply, b"facts")
            return
        record = self.registry.beat(hb, timefmt.now())
        if record is not None and self.leader:
            self.registry.stored(record)  # optimistic: avoids queueing the same change per beat
            self.queue(record)

    def queue(self, record: NodeRecord) -> None:
        self.pending[record.facts.uuid] = record
        self.wake.set()

    async def follow_storage(self, stop: asyncio.Event) -> None:
        """Writes by other replicas keep this replica's view of storage current."""

        async def follow() -> None:
            async for _, record in self.store.watch():
                # The leader wrote it itself (and knows it); followers learn it here.
                if record is not None and not self.leader:
                    self.registry.stored(record)

        await until_stopped(follow(), stop)

    async def writer(self, stop: asyncio.Event) -> None:
        """Store pending records, many in flight at once (a fleet joining is 100,000 writes)."""

        async def put(record: NodeRecord) -> bool:
            try:
                await self.store.put(record.facts.uuid, record)
            except Exception as exc:
                log.warning("could not store machine %s (%s); will retry", record.facts.uuid, exc)
                self.pending.setdefault(record.facts.uuid, record)
                return False
            return True

        while not stop.is_set():
            if not self.pending:
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), timeout=1.0)
                continue
            batch = [self.pending.pop(uuid) for uuid in list(itertools.islice(self.pending, WRITE_BATCH))]
            stored = await asyncio.gather(*(put(record) for record in batch))
            await asyncio.sleep(0 if all(stored) else 0.5)  # let heartbeats in; back off on failures

    async def reap(self) -> None:
        """The leader's tick (run while this replica holds the lease): silent machines go NotReady."""
        if not self.leader:
            log.info("%s leads the node registry", self.lease.holder)
            # Grace for machines whose beats we may have missed while nobody led.
            now = timefmt.now()
            for seen in self.registry.nodes.values():
                seen.last_seen = max(seen.last_seen, now - self.settings.not_ready_after_s / 2)
        # The lease was just renewed for `leader_ttl_s`; counting a tick less keeps a slow renewal
        # from overlapping with another replica's lead.
        ttl = self.settings.leader_ttl_s
        self.leading_until = time.monotonic() + ttl - min(self.settings.tick_s, ttl / 2)
        for record in self.registry.expired(timefmt.now()):
            log.info("machine %s is NotReady", record.facts.uuid, extra={"uuid": record.facts.uuid})
            self.registry.stored(record)
            self.queue(record)
        statuses = Counter(seen.stored.status.value for seen in self.registry.nodes.values() if seen.stored)
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
    """The bus, the fleet loaded and heartbeats followed; the writer, the storage follower and the
    leader's reaper as the service's loops."""
    settings = get_settings()
    service.metrics(settings.metrics_port)
    bus = await service.connect(settings.platform)
    nodes = NodesService(bus, settings)
    await nodes.start()
    service.loop("writer", nodes.writer)
    service.loop("follow-storage", nodes.follow_storage)
    service.leader(nodes.lease, settings.tick_s, nodes.reap)


def run() -> None:
    run_service("nodes", setup, get_settings().platform.log_level)


if __name__ == "__main__":
    run()
