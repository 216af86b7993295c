"""Leader leases in the `ty_leases` bucket, for loops only one replica should run at a time."""

from __future__ import annotations

import os
import secrets
import socket

from tingyu.common import subjects, timefmt
from tingyu.common.bus import Bus
from tingyu.common.models.leases import LeaseRecord


def take(current: LeaseRecord | None, holder: str, now: float, ttl_s: float) -> LeaseRecord | None:
    """The rule: a free, expired or own lease is taken (renewed) for `ttl_s`; another's is left."""
    if current is None or current.holder == holder or current.expires_at < now:
        return LeaseRecord(holder=holder, expires_at=now + ttl_s)
    return None


def holder_name(lease: str) -> str:
    """`lease@host:pid.nonce`: an operator reading `ty_leases` sees which process leads."""
    return f"{lease}@{socket.gethostname()}:{os.getpid()}.{secrets.token_hex(2)}"


def holder_pid(holder: str) -> int | None:
    """The process id in a holder name made by `holder_name`, None for any other form."""
    _, _, tail = holder.rpartition(":")
    pid, _, _ = tail.partition(".")
    return int(pid) if pid.isdigit() else None


class Lease:
    """One named lease as seen by one replica."""

    def __init__(self, bus: Bus, name: str, ttl_s: float, holder: str = "") -> None:
        self.store = bus.store(subjects.LEASES)
        self.name = name
        self.ttl_s = ttl_s
        self.holder = holder or holder_name(name)

    async def hold(self) -> bool:
        """Take or renew the lease; True when this replica has it for the next `ttl_s` seconds."""
        now = timefmt.now()
        stored = await self.store.mutate(
            self.name, lambda current: take(current, self.holder, now, self.ttl_s)
        )
        return stored is not None and stored.holder == self.holder and stored.expires_at > now
