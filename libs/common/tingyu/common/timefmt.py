"""Times on the wire are `yyyy-MM-dd HH:mm:ss` in the platform's time zone (default Asia/Shanghai)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from functools import cache
from zoneinfo import ZoneInfo

WIRE_FORMAT = "%Y-%m-%d %H:%M:%S"


@cache
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def now() -> float:
    """Seconds since the epoch; the one clock every service uses."""
    return time.time()


def to_wire(ts: float, tz: str = "Asia/Shanghai") -> str:
    """Epoch seconds -> `2021-07-13 15:44:01` in `tz`."""
    return datetime.fromtimestamp(ts, _zone(tz)).strftime(WIRE_FORMAT)


def from_wire(text: str, tz: str = "Asia/Shanghai") -> float:
    """`2021-07-13 15:44:01` in `tz` -> epoch seconds; ValueError if it does not parse."""
    parsed = datetime.strptime(text.strip(), WIRE_FORMAT).replace(tzinfo=_zone(tz))
    return parsed.astimezone(UTC).timestamp()
