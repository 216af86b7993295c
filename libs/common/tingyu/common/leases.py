"""Leader leases in the `ty_leases` bucket, for loops only one replica should run (e.g. the node reaper)."""

from __future__ import annotations

from tingyu.common import subjects, timefmt
from tingyu.common.bus import Bus, kv_mutate
from tingyu.common.models.base import Message


class LeaseRecord(Message):
    """Who holds a lease and until when."""

    holder: str
    expires_at: float


async def hold(bus: Bus, name: str, holder: str, ttl_s: float) -> bool:
    """Take or renew the lease; True when `holder` has it for the next `ttl_s` seconds."""
    kv = await bus.kv(subjects.LEASES)
    now = timefmt.now()

    def take(current: LeaseRecord | None) -> LeaseRecord | None:
        if current is None or current.holder == holder or current.expires_at < now:
            return LeaseRecord(holder=holder, expires_at=now + ttl_s)
        return None

    stored = await kv_mutate(kv, name, LeaseRecord, take)
    return stored is not None and stored.holder == holder and stored.expires_at > now
