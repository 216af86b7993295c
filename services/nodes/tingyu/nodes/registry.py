"""The node registry's logic, independent of NATS: what a heartbeat or the clock changes.

Every replica knows every registered machine's stored record (loaded, then followed), and each
machine belongs to one heartbeat partition. A replica hears the beats of the partitions it holds
and writes for those only, and only when something changed: new facts, a status flip, or a
heartbeat time older than the machine's part of the lease. A beat that changes nothing (`touch`)
costs a dict lookup and two float stores; when each machine was last heard reaches the API apart
(`heard_since`). A beat
without facts from a machine the registry does not know leaves no trace here: the service asks
that machine for its facts instead (`wants_facts`), so memory holds registered machines only.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Collection
from dataclasses import dataclass

from tingyu.common.models.nodes import Heartbeat, NodeRecord, NodeStatus

# A machine's record is rewritten when its heartbeat time is older than a part of the lease of its
# own, between (1 - REFRESH_SPREAD) and 1 lease: machines that joined together (a fleet joins in
# minutes) do not all fall due again in the same minutes of every lease.
REFRESH_SPREAD = 0.25


@dataclass(slots=True)
class Seen:
    """What this replica knows of one machine. The stored record is kept encoded (a decoded one
    takes about six times the memory; 100,000 of them were most of the service's RSS) beside the
    three fields every beat is compared with; it is decoded only when it changes."""

    last_seen: float
    partition: int = 0
    refresh_s: float = 0.0  # its record is rewritten once its heartbeat time is this old
    heard: float = 0.0  # when this replica last heard a beat of it (0: not since it started)
    record: bytes = b""
    digest: str = ""
    status: NodeStatus | None = None  # None: nothing stored yet
    heartbeattime: float = 0.0
    pending: Heartbeat | None = None  # facts not yet stored (the record did not exist)

    @property
    def stored(self) -> NodeRecord | None:
        return NodeRecord.from_bytes(self.record) if self.record else None

    def keep(self, record: NodeRecord, data: bytes = b"") -> None:
        """Remember the stored record (`data`: its bytes, when the caller has them); the facts
        waiting for it are no longer needed."""
        self.record = data or record.to_bytes()
        self.digest = record.facts_digest
        self.status = record.status
        self.heartbeattime = record.heartbeattime
        self.pending = None


class NodeRegistry:
    """In-memory view of the fleet and the rules that decide writes."""

    def __init__(
        self, not_ready_after_s: float, lease_s: float, partition_of: Callable[[str], int] = lambda _: 0
    ) -> None:
        self.not_ready_after_s = not_ready_after_s
        self.lease_s = lease_s
        self.partition_of = partition_of
        self.nodes: dict[str, Seen] = {}

    def _seen(self, uuid: str, last_seen: float) -> Seen:
        share = zlib.crc32(uuid.encode()) / 2**32  # the machine's own point, from 0 to 1
        refresh_s = self.lease_s * (1 - REFRESH_SPREAD * share)
        seen = Seen(last_seen=last_seen, partition=self.partition_of(uuid), refresh_s=refresh_s)
        self.nodes[uuid] = seen
        return seen

    def load(self, records: list[NodeRecord], now: float) -> None:
        """Start from storage; machines get one full grace period from `now` before they can be reaped."""
        for record in records:
            self.loaded(record, b"", now)

    def loaded(self, record: NodeRecord, data: bytes, now: float) -> None:
        """One machine as storage held it at start (`data`: its stored bytes, b"" to encode it)."""
        self._seen(record.facts.uuid, max(record.heartbeattime, now)).keep(record, data)

    def touch(self, uuid: str, facts_digest: str, now: float) -> bool:
        """The hot path: a beat of a stored, Ready machine with the same facts and a fresh
        heartbeat time only moves `last_seen` (True); anything else needs `beat` (False)."""
        seen = self.nodes.get(uuid)
        if seen is None or (
            seen.digest != facts_digest
            or seen.status != NodeStatus.READY
            or now - seen.heartbeattime >= seen.refresh_s
        ):
            return False
        seen.last_seen = seen.heard = now
        return True

    def grace(self, partitions: Collection[int], now: float) -> None:
        """Machines of partitions just taken over: their beats went to another replica until now,
        so each counts as seen at least half the NotReady limit ago."""
        floor = now - self.not_ready_after_s / 2
        for seen in self.nodes.values():
            if seen.partition in partitions and seen.last_seen < floor:
                seen.last_seen = floor

    def wants_facts(self, hb: Heartbeat) -> bool:
        """A beat without facts from a machine not registered: only its facts can register it."""
        return hb.facts is None and hb.uuid not in self.nodes

    def beat(self, hb: Heartbeat, now: float) -> NodeRecord | None:
        """Record a heartbeat; return the record to store when storage must change, else None."""
        seen = self.nodes.get(hb.uuid)
        if seen is None:
            if hb.facts is None:
                return None  # unknown machine: nothing is kept until its facts arrive
            seen = self._seen(hb.uuid, now)
        seen.last_seen = seen.heard = now
        stored = seen.stored
        if stored is None:
            carrier = hb if hb.facts is not None else seen.pending
            if carrier is None or carrier.facts is None:
                return None  # unknown machine: wait for a beat that carries its facts
            seen.pending = carrier
            return NodeRecord(
                facts=carrier.facts,
                facts_digest=carrier.facts_digest,
                createtime=now,
                heartbeattime=now,
                simulated=hb.simulated,
            )
        changes: dict[str, object] = {}
        if hb.facts is not None and hb.facts_digest != stored.facts_digest:
            changes.update(facts=hb.facts, facts_digest=hb.facts_digest)
        if stored.status != NodeStatus.READY:
            changes["status"] = NodeStatus.READY
        if changes or now - stored.heartbeattime >= seen.refresh_s:
            changes["heartbeattime"] = now
            return stored.model_copy(update=changes)
        return None

    def heard_since(self, since: float, partitions: Collection[int]) -> dict[int, dict[str, float]]:
        """The machines of `partitions` heard after `since`, with when, by partition."""
        found: dict[int, dict[str, float]] = {}
        for uuid, seen in self.nodes.items():
            if seen.heard > since and seen.partition in partitions:
                found.setdefault(seen.partition, {})[uuid] = seen.heard
        return found

    def expired(self, now: float, partitions: Collection[int] | None = None) -> list[NodeRecord]:
        """Ready machines (of `partitions`, None: all) whose last heartbeat is older than the
        limit, as NotReady records to store."""
        out = []
        for seen in self.nodes.values():
            if (
                seen.status == NodeStatus.READY
                and now - seen.last_seen > self.not_ready_after_s
                and (partitions is None or seen.partition in partitions)
                and (stored := seen.stored) is not None
            ):
                out.append(
                    stored.model_copy(
                        update={
                            "status": NodeStatus.NOT_READY,
                            "heartbeattime": max(stored.heartbeattime, seen.last_seen),
                        }
                    )
                )
        return out

    def stored(self, record: NodeRecord, data: bytes = b"") -> bytes:
        """Remember what is in storage now (after this replica or another wrote it; `data`: its
        bytes when the caller has them); returns the bytes kept."""
        uuid = record.facts.uuid
        seen = self.nodes.get(uuid) or self._seen(uuid, record.heartbeattime)
        seen.keep(record, data)
        return seen.record

    def encoded(self, uuid: str) -> bytes:
        """The machine's record as this replica last stored or saw it (b"": none)."""
        seen = self.nodes.get(uuid)
        return seen.record if seen is not None else b""

    def partition(self, uuid: str) -> int:
        """The machine's heartbeat partition."""
        seen = self.nodes.get(uuid)
        return seen.partition if seen is not None else self.partition_of(uuid)
