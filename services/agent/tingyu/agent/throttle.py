"""Bytes per second: the pull cap's setting (`TINGYU_AGENT_PULL_RATE`) and the token bucket that
holds every capped pull of the machine to it (docs/remote.md#bandwidth-cap)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable

from tingyu.common.models.remote import MAX_PULL_RATE

_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_RATE = re.compile(r"(\d{1,15}(?:\.\d{1,6})?)\s*([kmg]?)(?:i?b)?(?:/s)?", re.IGNORECASE)


def parse_rate(text: str | int) -> int:
    """`5M`, `800k`, `1.5MiB`, `1000000` (binary units: k = 1024 bytes) as bytes per second; `0` or
    empty is no cap."""
    if isinstance(text, int):
        rate = text
    elif not text.strip():
        return 0
    else:
        match = _RATE.fullmatch(text.strip())
        if match is None:
            raise ValueError(f"a pull rate is bytes per second like 5M or 800k, not {text!r}")
        rate = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if not 0 <= rate <= MAX_PULL_RATE:
        raise ValueError(
            f"a pull rate is between 0 (no cap) and {MAX_PULL_RATE} bytes per second, not {rate}"
        )
    return rate


class TokenBucket:
    """`rate` bytes per second with bursts up to `burst` bytes, shared by every caller.

    A taker may overdraw: it waits until the debt is paid back, and so does everyone after it, so a
    large chunk never starves and the long-run rate holds however the bytes are cut up.
    """

    def __init__(self, rate: int, burst: int = 0, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError("a token bucket needs a rate above 0")
        self.rate = rate
        self.capacity = burst or max(rate // 8, 16 * 1024)
        self.clock = clock
        self.tokens = float(self.capacity)
        self.stamp = clock()

    def reserve(self, size: int) -> float:
        """Take `size` bytes now; the seconds to wait before they may be sent."""
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= size
        return max(0.0, -self.tokens / self.rate)

    async def take(self, size: int) -> None:
        """Wait until `size` bytes may be sent."""
        delay = self.reserve(size)
        if delay > 0:
            await asyncio.sleep(delay)
