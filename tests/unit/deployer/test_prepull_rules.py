"""Pre-pull decisions: which machines, which are due, the deadline, the result and the verdict."""

from __future__ import annotations

from tests.support.factories import facts
from tingyu.common.models.nodes import NodeRecord
from tingyu.common.models.remote import PrepullCommand
from tingyu.common.names import new_job_id
from tingyu.deployer.prepull.rules import PullState, done, due, expire, plan, result, targets, verdict

REF = "127.0.0.1:5000/tytest/busybox:2"


def command(**fields: object) -> PrepullCommand:
    base: dict[str, object] = {
        "job_id": new_job_id(),
        "image": "busybox",
        "imageversion": "2",
        "image_ref": REF,
        "area": "南京",
        "operator": "移动",
        "deadline": 100.0,
        "issued_at": 0.0,
    }
    return PrepullCommand.model_validate({**base, **fields})


def node(area: str = "南京", operator: str = "移动") -> NodeRecord:
    found = facts(area, operator)
    return NodeRecord(facts=found, facts_digest=found.digest(), createtime=0.0, heartbeattime=0.0)


def test_area_and_operator_select_a_stable_share() -> None:
    nodes = [node() for _ in range(10)] + [node("北京"), node(operator="联通")]
    half = command(percent=50)
    chosen = targets(half, nodes)
    assert len(chosen) == 5
    assert chosen == targets(half, list(reversed(nodes)))  # the same machines whatever the order
    assert set(targets(command(job_id=half.job_id, percent=100), nodes)) >= set(chosen)
    assert all(u in {n.facts.uuid for n in nodes[:10]} for u in chosen)


def test_listed_uuids_are_taken_as_given_once() -> None:
    a, b = node().facts.uuid, node().facts.uuid
    assert targets(command(uuids=[a, b, a]), []) == [a, b]


def test_due_machines_are_ready_pending_and_not_asked_already() -> None:
    current = {"a": (PullState.PENDING, ""), "b": (PullState.PENDING, ""), "c": (PullState.PULLED, "")}
    assert due(current, {"a", "b", "c"}, {"a"}, 5) == ["b"]
    assert due(current, {"c"}, set(), 5) == []
    assert due(current, {"a", "b"}, set(), 1) == ["a"]


def test_the_deadline_fails_every_pending_machine_with_its_reason() -> None:
    current = {
        "a": (PullState.PENDING, ""),
        "b": (PullState.PENDING, ""),
        "c": (PullState.ALREADY_PRESENT, ""),
    }
    after = expire(current, {"a"})
    assert after["a"] == (PullState.FAILED, "machine did not answer before the job's deadline")
    assert after["b"] == (PullState.FAILED, "machine was not Ready before the job's deadline")
    assert after["c"] == (PullState.ALREADY_PRESENT, "")
    assert done(after)
    assert not done(current)


def test_result_counts_and_verdict_names_failures() -> None:
    cmd = command()
    current = {
        "a": (PullState.PULLED, ""),
        "b": (PullState.ALREADY_PRESENT, ""),
        "c": (PullState.FAILED, "cannot pull: manifest unknown"),
        "d": (PullState.PENDING, ""),
    }
    counted = result(cmd, current)
    assert {k: counted[k] for k in ("total", "pulled", "already_present", "failed", "pending")} == {
        "total": 4,
        "pulled": 1,
        "already_present": 1,
        "failed": 1,
        "pending": 1,
    }
    assert counted["failures"] == {"c": "cannot pull: manifest unknown"}
    assert verdict(current) == (False, "1 of 4 machines failed: c: cannot pull: manifest unknown")
    assert verdict({"a": (PullState.PULLED, "")}) == (True, "success")
    assert plan(command(uuids=["x"]), []) == {"x": (PullState.PENDING, "")}
