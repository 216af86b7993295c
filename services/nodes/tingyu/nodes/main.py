"""Nodes service: heartbeats on core NATS in, the `ty_nodes` bucket out."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import secrets

from nats.aio.msg import Msg

from tingyu.common import leases, subjects, timefmt
from tingyu.common.bus import Bus, kv_values
from tingyu.common.models.nodes import Heartbeat, NodeRecord
from tingyu.common.service import run as run_service
from tingyu.common.service import wait_or_stop
from tingyu.nodes.config import NodesSettings, get_settings
from tingyu.nodes.registry import Registry

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
        self.registry = Registry(settings.not_ready_after_s, settings.lease_s)
        self.holder = f"nodes-{secrets.token_hex(4)}"
        self.leader = False
        # Records waiting to be stored, one per machine: a newer change replaces an unwritten one.
        self.pending: dict[str, NodeRecord] = {}
        self.wake = asyncio.Event()

    async def start(self) -> None:
        records = await kv_values(await self.bus.kv(subjects.NODES), NodeRecord)
        self.registry.load(records, timefmt.now())
        log.info("loaded %d machines", len(records))
        await self.bus.nc.subscribe(subjects.HEARTBEATS_ALL, cb=self.on_heartbeat)
        # Writes by other replicas keep this replica's view of storage current.
        self.watcher = await (await self.bus.kv(subjects.NODES)).watch(">", ignore_deletes=True)

    async def on_heartbeat(self, msg: Msg) -> None:
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
            self.store(record)

    def store(self, record: NodeRecord) -> None:
        self.pending[record.facts.uuid] = record
        self.wake.set()

    async def follow_storage(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                entry = await self.watcher.updates(timeout=1.0)
            except TimeoutError:
                continue
            # The leader wrote it itself (and knows it); followers learn it here.
            if entry is not None and entry.value and not self.leader:
                try:
                    self.registry.stored(NodeRecord.from_bytes(entry.value))
                except ValueError as exc:
                    log.warning(
                        "record %s in %s does not parse; skipped: %s", entry.key, subjects.NODES.name, exc
                    )

    async def writer(self, stop: asyncio.Event) -> None:
        """Store pending records, many in flight at once (a fleet joining is 100,000 writes)."""
        kv = await self.bus.kv(subjects.NODES)

        async def put(record: NodeRecord) -> bool:
            try:
                await kv.put(record.facts.uuid, record.to_bytes())
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

    async def reaper(self, stop: asyncio.Event) -> None:
        while not await wait_or_stop(stop, self.settings.tick_s):
            try:
                was_leader = self.leader
                self.leader = await leases.hold(self.bus, LEASE_NAME, self.holder, self.settings.leader_ttl_s)
            except Exception as exc:
                log.warning("leader lease not renewed: %s", exc)
                self.leader = False
                continue
            if self.leader and not was_leader:
                log.info("%s leads the node registry", self.holder)
                # Grace for machines whose beats we may have missed while nobody led.
                now = timefmt.now()
                for seen in self.registry.nodes.values():
                    seen.last_seen = max(seen.last_seen, now - self.settings.not_ready_after_s / 2)
            if not self.leader:
                continue
            for record in self.registry.expired(timefmt.now()):
                log.info("machine %s is NotReady", record.facts.uuid)
                self.registry.stored(record)
                self.store(record)


async def main(stop: asyncio.Event) -> None:
    settings = get_settings()
    bus = await Bus.connect(settings.platform, "tingyu-nodes")
    service = NodesService(bus, settings)
    await service.start()
    tasks = [
        asyncio.create_task(service.reaper(stop)),
        asyncio.create_task(service.writer(stop)),
        asyncio.create_task(service.follow_storage(stop)),
    ]
    await stop.wait()
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    with contextlib.suppress(Exception):
        await asyncio.wait_for(service.watcher.stop(), 5.0)
    await bus.close()


def run() -> None:
    run_service("nodes", main, get_settings().platform.log_level)


if __name__ == "__main__":
    run()
