"""Nodes service: heartbeats on core NATS in, the `ty_nodes` bucket out."""

from __future__ import annotations

import asyncio
import contextlib
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


class NodesService:
    """Tracks every heartbeat; the leader replica stores changes and reaps silent machines."""

    def __init__(self, bus: Bus, settings: NodesSettings) -> None:
        self.bus = bus
        self.settings = settings
        self.registry = Registry(settings.not_ready_after_s, settings.lease_s)
        self.holder = f"nodes-{secrets.token_hex(4)}"
        self.leader = False
        self.writes: asyncio.Queue[NodeRecord] = asyncio.Queue()

    async def start(self) -> None:
        records = await kv_values(await self.bus.kv(subjects.NODES), NodeRecord)
        self.registry.load(records, timefmt.now())
        log.info("loaded %d machines", len(records))
        await self.bus.nc.subscribe(subjects.HEARTBEATS_ALL, cb=self.on_heartbeat)
        # Writes by other replicas keep this replica's view of storage current.
        self.watcher = await (await self.bus.kv(subjects.NODES)).watch(">", ignore_deletes=True)

    async def on_heartbeat(self, msg: Msg) -> None:
        try:
            hb = Heartbeat.from_bytes(msg.data)
        except ValueError:
            log.warning("undecodable heartbeat on %s", msg.subject)
            return
        record = self.registry.beat(hb, timefmt.now())
        if record is not None and self.leader:
            self.registry.stored(record)  # optimistic: avoids queueing the same change per beat
            self.writes.put_nowait(record)

    async def follow_storage(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                entry = await self.watcher.updates(timeout=1.0)
            except TimeoutError:
                continue
            if entry is not None and entry.value:
                self.registry.stored(NodeRecord.from_bytes(entry.value))

    async def writer(self, stop: asyncio.Event) -> None:
        kv = await self.bus.kv(subjects.NODES)
        while not stop.is_set():
            try:
                record = await asyncio.wait_for(self.writes.get(), timeout=1.0)
            except TimeoutError:
                continue
            try:
                await kv.put(record.facts.uuid, record.to_bytes())
            except Exception:
                log.exception("could not store machine %s; will retry", record.facts.uuid)
                await asyncio.sleep(0.5)
                self.writes.put_nowait(record)

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
                self.writes.put_nowait(record)


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
