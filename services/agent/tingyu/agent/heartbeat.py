"""Heartbeats on core NATS: cheap, fire-and-forget, full facts only when they matter."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from tingyu.common import subjects
from tingyu.common.bus import Bus
from tingyu.common.models.nodes import Heartbeat, NodeFacts
from tingyu.common.service import wait_or_stop
from tingyu.common.timefmt import now

log = logging.getLogger(__name__)

# The first beats all carry the facts: a machine is known as soon as the registry hears one of them.
STARTUP_FACT_BEATS = 6


async def heartbeat_loop(
    bus: Bus,
    uuid: str,
    read_facts: Callable[[], NodeFacts],
    stop: asyncio.Event,
    *,
    every_s: float,
    facts_every: int,
    simulated: bool = False,
) -> None:
    """Beat every `every_s` until `stop`; facts ride on the first beat, on change and every `facts_every`."""
    subject = subjects.heartbeat(uuid)
    sent_digest = ""
    since_facts = 0
    early = STARTUP_FACT_BEATS  # the registry may start after us: a beat it missed must not cost minutes
    while not stop.is_set():
        try:
            facts = await asyncio.to_thread(read_facts)  # disk usage can stall on a sick mount
        except Exception:
            log.exception("cannot read this machine's facts; the next beat tries again")
            if await wait_or_stop(stop, every_s):
                return
            continue
        digest = facts.digest()
        with_facts = digest != sent_digest or early > 0 or since_facts >= max(facts_every, 1) - 1
        beat = Heartbeat(
            uuid=uuid,
            facts_digest=digest,
            facts=facts if with_facts else None,
            sent_at=now(),
            simulated=simulated,
        )
        if await _emit(bus, subject, beat):
            sent_digest = digest if with_facts else sent_digest
            since_facts = 0 if with_facts else since_facts + 1
            early = max(early - 1, 0)
        if await wait_or_stop(stop, every_s):
            return


async def _emit(bus: Bus, subject: str, beat: Heartbeat) -> bool:
    """Send unless NATS is away (a beat buffered during an outage would arrive stale)."""
    if not bus.nc.is_connected:
        return False
    try:
        await asyncio.wait_for(bus.emit(subject, beat), timeout=1.0)
    except Exception as exc:
        log.debug("heartbeat not sent: %s", exc)
        return False
    return True
