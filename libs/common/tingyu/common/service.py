"""Process plumbing shared by every service: logging, signals, a clean stop."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable


def setup_logging(name: str, level: str = "INFO") -> None:
    """One line per record, prefixed with the service name (the launcher adds colour per service)."""
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format=f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("nats").setLevel(logging.WARNING)


def run(name: str, main: Callable[[asyncio.Event], Awaitable[None]], level: str = "INFO") -> None:
    """Run `main(stop)` until SIGINT/SIGTERM sets `stop`; `main` then stops consuming, drains and returns."""
    setup_logging(name, level)

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    asyncio.run(runner())


async def wait_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep `seconds` unless `stop` is set first; True when stopping."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return False
    return True
