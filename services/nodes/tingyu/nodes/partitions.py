"""Which heartbeat partitions a nodes replica holds: a pure rule over the leases it sees.

Each partition has a lease in `ty_leases` (`nodes.partition.<n>`) and each live replica a
presence record (`nodes.replica.<id>`). A replica keeps at most its share (partitions divided by
live replicas, rounded up) and takes free or lapsed partitions up to that share; what it holds
beyond it is released so that a replica that just started gets its part. A replica that dies
stops renewing: its leases lapse and the others take its partitions within one lease time.
"""

from __future__ import annotations

from collections.abc import Mapping

from tingyu.common.models.leases import LeaseRecord

PARTITION_PREFIX = "nodes.partition."
REPLICA_PREFIX = "nodes.replica."
WATCHED = "nodes.>"  # the keys of `ty_leases` this rule reads


def partition_key(partition: int) -> str:
    """The lease of one heartbeat partition."""
    return f"{PARTITION_PREFIX}{partition}"


def replica_key(replica: str) -> str:
    """The presence record of one replica (`replica` is a short random id)."""
    return f"{REPLICA_PREFIX}{replica}"


def live_replicas(leases: Mapping[str, LeaseRecord], now: float) -> set[str]:
    """The holders of unexpired presence records."""
    return {
        record.holder
        for key, record in leases.items()
        if key.startswith(REPLICA_PREFIX) and record.expires_at >= now
    }


def plan(leases: Mapping[str, LeaseRecord], me: str, now: float, count: int) -> tuple[list[int], list[int]]:
    """(partitions to hold, partitions to release) for replica `me`: its own up to its share,
    then free or lapsed ones up to it; the rest of its own are released."""
    replicas = live_replicas(leases, now) | {me}
    share = -(-count // len(replicas))
    mine: list[int] = []
    free: list[int] = []
    for partition in range(count):
        record = leases.get(partition_key(partition))
        if record is None or record.expires_at < now:
            free.append(partition)
        elif record.holder == me:
            mine.append(partition)
    keep, release = mine[:share], mine[share:]
    return keep + free[: max(share - len(keep), 0)], release
