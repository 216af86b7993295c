"""Heartbeats on core NATS: cheap, fire-and-forget, full facts only when they matter.

Facts ride on the first six beats, on change and every `facts_every` beats. Each beat names a reply
subject of this agent's own: when the node registry hears a beat from a machine it does not know
(it started after the agent, or lost the record), it answers there, and the agent sends its facts
at once instead of waiting for the next periodic full beat. So a machine is Ready within one
heartbeat whatever the start order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from nats.aio.msg import Msg

from tingyu.common import subjects
from tingyu.common.bus import Bus
from tingyu.common.models.nodes import Heartbeat, NodeFacts
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
    """Beat every `every_s` until `stop`; facts ride on the first beats, on change, every `facts_every`,
    and whenever the registry asks for them."""
    subject = subjects.heartbeat(uuid)
    asked = asyncio.Event()
    inbox = bus.nc.new_inbox()

    async def on_ask(_: Msg) -> None:
        asked.set()

    asks = await bus.nc.subscribe(inbox, cb=on_ask)
    sent_digest = ""
    since_facts = 0
    early = STARTUP_FACT_BEATS  # the registry may start after us: a beat it missed must not cost minutes
    try:
        while not stop.is_set():
            try:
                facts = await asyncio.to_thread(read_facts)  # disk usage can stall on a sick mount
            except Exception:
                log.exception("cannot read this machine's facts; the next beat tries again")
                if await _wait(stop, asked, every_s):
                    return
                continue
            digest = facts.digest()
            wanted = asked.is_set()
            asked.clear()
            with_facts = (
                wanted or early > 0 or digest != sent_digest or since_facts >= max(facts_every, 1) - 1
            )
            if wanted:
                log.info("the node registry asked for this machine's facts")
            beat = Heartbeat(
                uuid=uuid,
                facts_digest=digest,
                facts=facts if with_facts else None,
                sent_at=now(),
                simulated=simulated,
            )
            if await _emit(bus, subject, beat, inbox):
                sent_digest = digest if with_facts else sent_digest
                since_facts = 0 if with_facts else since_facts + 1
                early = max(early - 1, 0)
            # After answering an ask, a whole period passes before the next: a registry that
            # cannot take these facts gets one beat per period, never a tight loop.
            if await _wait(stop, None if wanted else asked, every_s):
                return
    finally:
        with contextlib.suppress(Exception):
            await asks.unsubscribe()


async def _wait(stop: asyncio.Event, asked: asyncio.Event | None, seconds: float) -> bool:
    """Sleep until the next beat is due or the registry asks; True once `stop` is set."""
    waits = [asyncio.ensure_future(stop.wait())]
    if asked is not None:
        waits.append(asyncio.ensure_future(asked.wait()))
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waits:
            waiter.cancel()
    return stop.is_set()


async def _emit(bus: Bus, subject: str, beat: Heartbeat, reply: str) -> bool:
    """Send unless NATS is away (a beat buffered during an outage would arrive stale)."""
    if not bus.nc.is_connected:
        return False
    try:
        data = beat.to_bytes()
        bus.check(subject, len(data))  # never a message the server would close the connection for
        await asyncio.wait_for(bus.nc.publish(subject, data, reply=reply), timeout=1.0)
    except Exception as exc:
        log.debug("heartbeat not sent: %s", exc)
        return False
    return True
