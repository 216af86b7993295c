"""When heartbeats reach storage, and when a machine turns NotReady."""

from __future__ import annotations

from tests.support.factories import facts, heartbeat
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
