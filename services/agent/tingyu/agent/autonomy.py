"""Autonomy: a machine cut off from the platform keeps serving (docs/remote.md).

The agent keeps the last desired state it read on disk (`desired.json` in its state folder). When
it starts while NATS is unreachable (a reboot during an outage) it holds the machine on that state
(`hold`): containers that should run are kept running, nothing is removed, and it keeps trying to
connect. Once connected it converges on the platform's state; a container whose spec did not change
is never recreated (the reconciler compares spec hashes).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import nats.errors

from tingyu.agent.reconciler import Reconciler
from tingyu.agent.statefile import read_json, write_json
from tingyu.common.bus import Bus
from tingyu.common.models.containers import NodeDesired
from tingyu.common.service import Service, wait_or_stop
from tingyu.common.settings import PlatformSettings

log = logging.getLogger(__name__)

CONNECT_ATTEMPTS = 5  # per round of connecting
HOLD_AFTER_S = 3.0  # not connected by then: hold the machine on its disk state meanwhile


class DesiredMemory:
    """The last desired state read from the platform, on disk (None without a path: in memory only)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.desired: NodeDesired | None = None
        if path is not None:
            stored = read_json(path)
            if stored is not None:
                try:
                    self.desired = NodeDesired.model_validate(stored)
                except ValueError as exc:
                    log.warning("%s is unreadable (%s); starting without a remembered state", path, exc)

    def remember(self, desired: NodeDesired | None) -> None:
        """Keep `desired` (written only when it changed; atomically, so a crash keeps the old one)."""
        if desired is None or desired == self.desired:
            return
        if self.path is not None:
            write_json(self.path, desired.model_dump(mode="json"))
        self.desired = desired  # after the write: a failed one is tried again with the next state


async def hold(reconciler: Reconciler, memory: DesiredMemory, until: asyncio.Event, every_s: float) -> None:
    """Keep the machine on its remembered state, removing nothing, until `until` is set."""
    if memory.desired is None:
        log.warning("NATS unreachable and no desired state on disk: containers are left as they are")
        await until.wait()
        return
    log.warning(
        "NATS unreachable: holding %d containers on the state on disk", len(memory.desired.containers)
    )
    while not until.is_set():
        try:
            await reconciler.reconcile(memory.desired, removals=False)
        except Exception:
            log.exception("holding pass failed; trying again")
        if await wait_or_stop(until, every_s):
            return


async def connect_holding(
    service: Service,
    settings: PlatformSettings,
    reconciler: Reconciler,
    memory: DesiredMemory,
    every_s: float,
) -> Bus | None:
    """The agent's connection; while NATS cannot be reached (nats-py keeps trying) the machine is
    held on its disk state. None when the service is stopped before a connection was made."""
    connected = asyncio.Event()
    holding: asyncio.Task[None] | None = None
    stopping = asyncio.create_task(service.stop.wait())
    connecting = asyncio.create_task(_connect(service, settings))
    try:
        while True:
            done, _ = await asyncio.wait(
                {connecting, stopping}, timeout=HOLD_AFTER_S, return_when=asyncio.FIRST_COMPLETED
            )
            if stopping in done:
                return None
            if connecting in done:
                bus = connecting.result()
                if bus is not None:
                    return bus
                connecting = asyncio.create_task(_connect(service, settings))
            if holding is None:
                holding = asyncio.create_task(hold(reconciler, memory, connected, every_s))
    finally:
        stopping.cancel()
        connecting.cancel()
        connected.set()
        if holding is not None:
            await holding


async def _connect(service: Service, settings: PlatformSettings) -> Bus | None:
    try:
        return await service.connect(settings, ensure=False, attempts=CONNECT_ATTEMPTS)
    except (OSError, nats.errors.NoServersError, nats.errors.TimeoutError, TimeoutError) as exc:
        log.warning("NATS still unreachable (%s)", exc)
        return None
