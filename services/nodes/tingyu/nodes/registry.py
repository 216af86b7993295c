"""The node registry's logic, independent of NATS: what a heartbeat or the clock changes.

Every replica tracks every registered machine's heartbeat in memory (core NATS fan-out), so a
new leader knows the fleet at once; only the leader writes, and only when something changed:
new facts, a status flip, or a heartbeat time older than the lease. A beat without facts from a
machine the registry does not know leaves no trace here: the service asks that machine for its
facts instead (`wants_facts`), so memory holds registered machines only.
"""

from __future__ import annotations

from dataclasses import dataclass

from tingyu.common.models.nodes import Heartbeat, NodeRecord, NodeStatus


@dataclass
class Seen:
    """What this replica knows of one machine."""

    last_seen: float
    stored: NodeRecord | None = None
    pending: Heartbeat | None = None  # facts not yet stored (the record did not exist)


class NodeRegistry:
    """In-memory view of the fleet and the rules that decide writes."""

    def __init__(self, not_ready_after_s: float, lease_s: float) -> None:
        self.not_ready_after_s = not_ready_after_s
        self.lease_s = lease_s
        self.nodes: dict[str, Seen] = {}

    def load(self, records: list[NodeRecord], now: float) -> None:
        """Start from storage; machines get one full grace period from `now` before they can be reaped."""
        for record in records:
            self.nodes[record.facts.uuid] = Seen(last_seen=max(record.heartbeattime, now), stored=record)

    def wants_facts(self, hb: Heartbeat) -> bool:
        """A beat without facts from a machine not registered: only its facts can register it."""
        return hb.facts is None and hb.uuid not in self.nodes

    def beat(self, hb: Heartbeat, now: float) -> NodeRecord | None:
        """Record a heartbeat; return the record to store when storage must change, else None."""
        seen = self.nodes.get(hb.uuid)
        if seen is None:
            if hb.facts is None:
                return None  # unknown machine: nothing is kept until its facts arrive
            seen = self.nodes[hb.uuid] = Seen(last_seen=now)
        seen.last_seen = now
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
        if changes or now - stored.heartbeattime >= self.lease_s:
            changes["heartbeattime"] = now
            return stored.model_copy(update=changes)
        return None

    def expired(self, now: float) -> list[NodeRecord]:
        """Ready machines whose last heartbeat is older than the limit, as NotReady records to store."""
        out = []
        for seen in self.nodes.values():
            stored = seen.stored
            if stored and stored.status == NodeStatus.READY and now - seen.last_seen > self.not_ready_after_s:
                out.append(
                    stored.model_copy(
                        update={
                            "status": NodeStatus.NOT_READY,
                            "heartbeattime": max(stored.heartbeattime, seen.last_seen),
                        }
                    )
                )
        return out

    def stored(self, record: NodeRecord) -> None:
        """Remember what is in storage now (after this replica or another wrote it)."""
        seen = self.nodes.setdefault(record.facts.uuid, Seen(last_seen=record.heartbeattime))
        seen.stored = record
