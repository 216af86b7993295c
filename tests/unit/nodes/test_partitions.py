"""The partition rule: shares, takeover of lapsed leases, release to a newcomer."""

from __future__ import annotations

from tests.support.factories import facts, heartbeat
from tingyu.common import subjects
from tingyu.common.models.leases import LeaseRecord
from tingyu.nodes.partitions import partition_key, plan, replica_key
from tingyu.nodes.registry import NodeRegistry

NOW = 1000.0


def leases(held: dict[int, str], replicas: list[str], expires_at: float = NOW + 10) -> dict[str, LeaseRecord]:
    out = {partition_key(p): LeaseRecord(holder=h, expires_at=expires_at) for p, h in held.items()}
    out |= {replica_key(r): LeaseRecord(holder=r, expires_at=NOW + 10) for r in replicas}
    return out


def test_a_lone_replica_takes_every_partition() -> None:
    assert plan({}, "a", NOW, 16) == (list(range(16)), [])


def test_a_newcomer_gets_half_once_the_holder_releases_it() -> None:
    seen = leases(dict.fromkeys(range(16), "a"), ["a", "b"])
    assert plan(seen, "b", NOW, 16) == ([], [])  # nothing free yet
    keep, release = plan(seen, "a", NOW, 16)
    assert keep == list(range(8))
    assert release == list(range(8, 16))
    after = leases(dict.fromkeys(range(8), "a"), ["a", "b"])
    assert plan(after, "b", NOW, 16) == (list(range(8, 16)), [])


def test_lapsed_partitions_of_a_dead_replica_are_taken_over() -> None:
    seen = leases(dict.fromkeys(range(8), "a") | dict.fromkeys(range(8, 16), "b"), ["a"])
    for p in range(8, 16):
        seen[partition_key(p)] = LeaseRecord(holder="b", expires_at=NOW - 1)
    assert plan(seen, "a", NOW, 16) == (list(range(16)), [])


def test_registry_touch_takes_only_an_unchanged_beat_of_a_ready_machine() -> None:
    registry = NodeRegistry(40.0, 60.0, lambda uuid: subjects.partition_of(uuid, 16))
    node = facts()
    assert not registry.touch(node.uuid, node.digest(), NOW)  # unknown
    record = registry.beat(heartbeat(node), NOW)
    assert record is not None
    registry.stored(record)
    assert registry.touch(node.uuid, node.digest(), NOW + 5)
    assert registry.nodes[node.uuid].last_seen == NOW + 5
    assert not registry.touch(node.uuid, "other-digest", NOW + 6)
    assert not registry.touch(node.uuid, node.digest(), NOW + 61)  # the lease needs a write
    assert registry.partition(node.uuid) == subjects.partition_of(node.uuid, 16)


def test_registry_grace_and_expiry_are_per_partition() -> None:
    registry = NodeRegistry(40.0, 60.0, lambda uuid: subjects.partition_of(uuid, 16))
    node = facts()
    record = registry.beat(heartbeat(node), NOW)
    assert record is not None
    registry.stored(record)
    mine = registry.partition(node.uuid)
    assert registry.expired(NOW + 41, {(mine + 1) % 16}) == []
    assert len(registry.expired(NOW + 41, {mine})) == 1
    registry.grace({mine}, NOW + 41)
    assert registry.expired(NOW + 41, {mine}) == []
