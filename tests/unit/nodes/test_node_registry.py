"""When heartbeats reach storage, and when a machine turns NotReady."""

from __future__ import annotations

from tests.support.factories import facts, heartbeat, node_record
from tingyu.common.models.nodes import NodeStatus
from tingyu.nodes.registry import NodeRegistry


def test_first_beat_with_facts_creates_then_quiet_beats_write_nothing() -> None:
    registry = NodeRegistry(not_ready_after_s=40, lease_s=60)
    node = facts()
    record = registry.beat(heartbeat(node), 100.0)
    assert record is not None
    assert (record.createtime, record.status) == (100.0, NodeStatus.READY)
    registry.stored(record)
    assert registry.beat(heartbeat(node, with_facts=False), 110.0) is None
    assert registry.beat(heartbeat(node), 120.0) is None  # same facts, lease still fresh


def test_lease_refresh_and_fact_change_are_written() -> None:
    registry = NodeRegistry(not_ready_after_s=40, lease_s=60)
    node = facts()
    first = registry.beat(heartbeat(node), 100.0)
    assert first is not None
    registry.stored(first)
    refreshed = registry.beat(heartbeat(node, with_facts=False), 161.0)
    assert refreshed is not None
    assert refreshed.heartbeattime == 161.0
    registry.stored(refreshed)
    changed = node.model_copy(update={"memory": 16384})
    update = registry.beat(heartbeat(changed), 162.0)
    assert update is not None
    assert update.facts.memory == 16384
    assert update.createtime == 100.0


def test_unknown_machine_without_facts_is_asked_and_not_remembered() -> None:
    registry = NodeRegistry(not_ready_after_s=40, lease_s=60)
    node = facts()
    quiet = heartbeat(node, with_facts=False)
    assert registry.wants_facts(quiet)
    assert registry.beat(quiet, 1.0) is None
    assert registry.nodes == {}
    full = heartbeat(node)
    assert registry.beat(full, 2.0) is not None
    assert not registry.wants_facts(quiet)


def test_silent_machine_turns_not_ready_and_back() -> None:
    registry = NodeRegistry(not_ready_after_s=40, lease_s=60)
    node = facts()
    record = registry.beat(heartbeat(node), 100.0)
    assert record is not None
    registry.stored(record)
    assert registry.expired(139.0) == []
    [gone] = registry.expired(141.0)
    assert gone.status == NodeStatus.NOT_READY
    registry.stored(gone)
    assert registry.expired(200.0) == []
    back = registry.beat(heartbeat(node, with_facts=False), 201.0)
    assert back is not None
    assert back.status == NodeStatus.READY


def test_loaded_machines_get_a_grace_period() -> None:
    registry = NodeRegistry(not_ready_after_s=40, lease_s=60)
    node = facts()
    record = registry.beat(heartbeat(node), 100.0)
    assert record is not None
    fresh = NodeRegistry(not_ready_after_s=40, lease_s=60)
    fresh.load([record], now=1000.0)
    assert fresh.expired(1039.0) == []
    assert len(fresh.expired(1041.0)) == 1


def test_fast_heartbeat_decoding_equals_validation() -> None:
    from tingyu.common.models.nodes import Heartbeat
    from tingyu.nodes.main import decode_heartbeat

    node = facts()
    for beat in (heartbeat(node, with_facts=False, at=5.0), heartbeat(node, at=6.0)):
        decoded = decode_heartbeat(beat.to_bytes())
        assert decoded is not None
        assert decoded.model_dump() == Heartbeat.from_bytes(beat.to_bytes()).model_dump()
    assert decode_heartbeat(b"not json") is None
    assert decode_heartbeat(b'{"uuid": "x"}') is None
    assert decode_heartbeat(b'{"uuid": "x", "facts_digest": "d", "facts": {"cpu": "many"}}') is None


def test_beats_heard_are_told_by_partition_and_only_once() -> None:
    """A beat that writes nothing (`touch`) and one that does (`beat`) are both heard; a machine
    loaded from storage or given a grace period is not (nothing was heard of it)."""
    registry = NodeRegistry(not_ready_after_s=40, lease_s=600, partition_of=lambda uuid: len(uuid) % 2)
    a, b = facts(), facts()
    for node in (a, b):
        record = registry.beat(heartbeat(node), 100.0)
        assert record is not None
        registry.stored(record)
    loaded = node_record(facts(), created=50.0)
    registry.loaded(loaded, b"", 105.0)
    assert registry.touch(a.uuid, a.digest(), 110.0)
    held = {0, 1}
    heard = registry.heard_since(0.0, held)
    assert {uuid: at for machines in heard.values() for uuid, at in machines.items()} == {
        a.uuid: 110.0,
        b.uuid: 100.0,
    }
    assert all(registry.partition(uuid) == p for p, machines in heard.items() for uuid in machines)
    assert registry.heard_since(110.0, held) == {}  # told already
    assert registry.heard_since(0.0, set()) == {}  # partitions not held: another replica tells them


def test_machines_that_joined_together_fall_due_over_the_last_quarter_of_the_lease() -> None:
    """Each machine's record is rewritten at a point of its own between three quarters of the
    lease and the whole of it, the same point every time: a fleet that joined in one minute does
    not write its records again in one minute."""
    registry = NodeRegistry(not_ready_after_s=10_000, lease_s=400, partition_of=lambda _: 0)
    machines = [facts() for _ in range(400)]
    for node in machines:
        record = registry.beat(heartbeat(node), 0.0)
        assert record is not None
        registry.stored(record)

    def due(at: float) -> int:
        return sum(not registry.touch(node.uuid, node.digest(), at) for node in machines)

    assert due(299.0) == 0
    assert 100 < due(350.0) < 300
    assert due(400.0) == len(machines)
    twice = NodeRegistry(not_ready_after_s=10_000, lease_s=400)
    for node in machines:
        twice.loaded(node_record(node, created=0.0), b"", 0.0)
    assert [twice.nodes[n.uuid].refresh_s for n in machines] == [
        registry.nodes[n.uuid].refresh_s for n in machines
    ]
