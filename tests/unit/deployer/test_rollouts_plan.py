"""Rollout planning: selection order, extension, rounding, the abort threshold and progress."""

from __future__ import annotations

import pytest

from tests.support.factories import name
from tingyu.common.models.containers import ImagePatch
from tingyu.common.models.rollouts import MemberState, Rollout, RolloutCommand, RolloutStatus, rollout_key
from tingyu.common.names import new_job_id
from tingyu.deployer.rollouts.plan import (
    Candidate,
    join,
    member_job_id,
    prepull_job_id,
    prepull_targets,
    progress,
    select,
    settle,
    target_count,
)

IMAGE = "127.0.0.1:5000/tytest/busybox"


def rollout(percent: float, version: str = "2") -> Rollout:
    return Rollout(
        rollout_id=rollout_key("南京", "移动", IMAGE),
        run="a" * 32,
        area="南京",
        operator="移动",
        image=IMAGE,
        patch=ImagePatch(image=IMAGE, imageversion=version, image_ref=f"{IMAGE}:{version}"),
        percent=percent,
        created_at=0.0,
        updated_at=0.0,
    )


def fleet(count: int, version: str = "1") -> list[Candidate]:
    return [Candidate(name(), f"tingyu-{i:032x}", version) for i in range(count)]


@pytest.mark.parametrize(
    ("total", "percent", "expected"),
    [(4, 50, 2), (3, 50, 2), (1, 1, 1), (10, 0, 0), (10, 100, 10), (10, 33.3, 4), (0, 50, 0), (10, 30, 3)],
)
def test_target_is_rounded_up(total: int, percent: float, expected: int) -> None:
    assert target_count(total, percent) == expected


def test_extending_keeps_the_first_members_and_appends() -> None:
    candidates = fleet(10)
    first = rollout(10)
    select(first, candidates)
    assert (first.total, first.target, len(first.members)) == (10, 1, 1)
    chosen = list(first.members)
    first.percent = 50
    select(first, list(reversed(candidates)))  # the order candidates are found in does not matter
    assert list(first.members)[:1] == chosen
    assert len(first.members) == 5
    fresh = rollout(50)
    select(fresh, candidates)
    assert list(fresh.members) == list(first.members)


def test_containers_at_the_target_version_count_as_done() -> None:
    candidates = fleet(3) + fleet(1, version="2")
    plan = rollout(50)
    select(plan, candidates)
    done = [m for m in plan.members.values() if m.state == MemberState.UPDATED]
    assert len(plan.members) == 2
    assert [m.name for m in done] == [candidates[-1].name]
    assert not done[0].job_id


def test_abort_past_the_threshold_names_the_failures() -> None:
    plan = rollout(100)
    select(plan, fleet(6))
    members = list(plan.members.values())
    members[0].state, members[0].job_id = MemberState.UPDATED, "j0"
    members[1].state, members[1].job_id, members[1].message = MemberState.FAILED, "j1", "image not found"
    settle(plan, threshold=0.2, min_executed=3)
    assert plan.status == RolloutStatus.RUNNING  # 2 executed: below the minimum
    members[2].state, members[2].job_id = MemberState.UPDATED, "j2"
    settle(plan, threshold=0.5, min_executed=3)
    assert plan.status == RolloutStatus.RUNNING  # 1 of 3 is not above 50 %
    settle(plan, threshold=0.2, min_executed=3)
    assert plan.status == RolloutStatus.ABORTED
    assert f"{members[1].name} (image not found)" in plan.message
    assert "1 of 3" in plan.message


def test_finishes_when_every_member_is_done() -> None:
    plan = rollout(50)
    select(plan, fleet(4))
    for member in plan.members.values():
        member.state, member.job_id = MemberState.UPDATED, "j"
    settle(plan, threshold=0.2, min_executed=3)
    assert plan.status == RolloutStatus.SUCCEEDED
    assert progress(plan, set())["updated"] == 2


def test_progress_counts_members_waiting_for_not_ready_machines() -> None:
    plan = rollout(100)
    candidates = fleet(3)
    select(plan, candidates)
    result = progress(plan, ready={candidates[0].node_uuid})
    assert (result["total"], result["target"], result["pending"], result["waiting_notready"]) == (3, 3, 1, 2)
    assert result["status"] == "running"


def test_member_job_ids_are_deterministic_per_run_and_version() -> None:
    assert member_job_id("r", "a", "2") == member_job_id("r", "a", "2")
    assert (
        len({member_job_id("r", "a", "2"), member_job_id("r", "a", "3"), member_job_id("s", "a", "2")}) == 3
    )
    assert len(member_job_id("r", "a", "2")) == 32


# --- how a call joins a rollout ----------------------------------------------------------------


def call(percent: float, version: str = "2") -> RolloutCommand:
    patch = ImagePatch(image=IMAGE, imageversion=version, image_ref=f"{IMAGE}:{version}")
    return RolloutCommand(
        job_id=new_job_id(),
        area="南京",
        operator="移动",
        image=IMAGE,
        patch=patch,
        percent=percent,
        issued_at=0,
    )


def test_a_first_call_starts_a_run_named_after_its_job() -> None:
    first = call(50)
    started, replaced = join(None, first, fleet(4), 5.0)
    assert started is not None
    assert replaced is None
    assert (started.rollout_id, started.run, started.jobs) == (
        rollout_key("南京", "移动", IMAGE),
        first.job_id,
        [first.job_id],
    )
    assert (started.target, len(started.members), started.created_at) == (2, 2, 5.0)


def test_a_call_handled_twice_has_one_effect() -> None:
    first = call(50)
    started, _ = join(None, first, fleet(4), 1.0)
    assert join(started, first, fleet(4), 2.0) == (None, None)


def test_a_call_for_the_same_version_extends_the_run_and_never_lowers_its_target() -> None:
    candidates = fleet(4)
    first = call(50)
    started, _ = join(None, first, candidates, 1.0)
    assert started is not None
    chosen = list(started.members)
    wider, _ = join(started.model_copy(deep=True), call(100), candidates, 2.0)
    assert wider is not None
    assert (wider.run, wider.percent, len(wider.jobs), list(wider.members)[:2]) == (
        first.job_id,
        100,
        2,
        chosen,
    )
    lower, replaced = join(wider.model_copy(deep=True), call(10), candidates, 3.0)
    assert lower is not None
    assert replaced is None
    assert (lower.percent, len(lower.members), len(lower.jobs)) == (100, 4, 3)


def test_a_paused_run_is_extended_and_stays_paused() -> None:
    candidates = fleet(4)
    started, _ = join(None, call(50), candidates, 1.0)
    assert started is not None
    started.status = RolloutStatus.PAUSED
    wider, replaced = join(started.model_copy(deep=True), call(100), candidates, 2.0)
    assert wider is not None
    assert (wider.run, wider.status, len(wider.members), replaced) == (
        started.run,
        RolloutStatus.PAUSED,
        4,
        None,
    )


def test_another_version_replaces_an_unfinished_run() -> None:
    candidates = fleet(4)
    old, _ = join(None, call(50, version="2"), candidates, 1.0)
    assert old is not None
    newer = call(50, version="3")
    fresh, replaced = join(old.model_copy(deep=True), newer, candidates, 2.0)
    assert fresh is not None
    assert (fresh.run, fresh.jobs, fresh.patch.imageversion) == (newer.job_id, [newer.job_id], "3")
    assert replaced == old


@pytest.mark.parametrize("status", [RolloutStatus.ABORTED, RolloutStatus.FAILED, RolloutStatus.SUCCEEDED])
def test_a_call_after_a_run_ended_starts_a_new_run_over_the_fleet_as_it_is_now(
    status: RolloutStatus,
) -> None:
    old, _ = join(None, call(100), fleet(4), 1.0)
    assert old is not None
    old.status = status
    again = call(100)
    now = fleet(6)
    after, replaced = join(old, again, now, 2.0)
    assert after is not None
    assert replaced is None  # a run that ended is never superseded
    assert (after.run, after.status, after.total, len(after.members)) == (
        again.job_id,
        RolloutStatus.RUNNING,
        6,
        6,
    )


@pytest.mark.parametrize(
    ("failed", "executed", "threshold", "min_executed", "status"),
    [
        (2, 10, 0.2, 3, RolloutStatus.RUNNING),  # exactly at the threshold: carries on
        (3, 10, 0.2, 3, RolloutStatus.ABORTED),  # one more failure: past it
        (1, 4, 0.25, 3, RolloutStatus.RUNNING),
        (2, 4, 0.25, 3, RolloutStatus.ABORTED),
        (2, 2, 0.2, 3, RolloutStatus.RUNNING),  # every one failed, but one short of the minimum
        (3, 3, 0.2, 3, RolloutStatus.ABORTED),  # the minimum reached
        (0, 10, 0.0, 3, RolloutStatus.RUNNING),  # threshold 0: no failure is no abort ...
        (1, 10, 0.0, 3, RolloutStatus.ABORTED),  # ... and any failure is
    ],
)
def test_abort_threshold_on_both_sides_of_its_boundary(
    failed: int, executed: int, threshold: float, min_executed: int, status: RolloutStatus
) -> None:
    plan = rollout(100)
    select(plan, fleet(executed + 1))  # one member left pending, so the rollout is not simply done
    for index, member in enumerate(list(plan.members.values())[:executed]):
        member.job_id = f"j{index}"
        member.state = MemberState.FAILED if index < failed else MemberState.UPDATED
    settle(plan, threshold=threshold, min_executed=min_executed)
    assert plan.status == status, plan.message


def test_members_whose_deployment_is_gone_drop_out_and_stale_done_ones_are_pending_again() -> None:
    plan = rollout(100)
    first = [Candidate(name(), "tingyu-a", "1") for _ in range(3)]
    select(plan, first)
    assert plan.target == 3
    for member in plan.members.values():
        member.state = MemberState.UPDATED
    gone, recreated, kept = first
    fresh = Candidate(name(), "tingyu-a", "1")
    select(plan, [Candidate(recreated.name, "tingyu-b", "1"), Candidate(kept.name, "tingyu-a", "2"), fresh])
    assert gone.name not in plan.members
    assert (plan.total, plan.target) == (3, 3)
    assert plan.members[recreated.name].state == MemberState.PENDING
    assert plan.members[recreated.name].node_uuid == "tingyu-b"
    assert plan.members[kept.name].state == MemberState.UPDATED
    assert plan.members[fresh.name].state == MemberState.PENDING


def test_a_paused_rollout_is_not_settled() -> None:
    plan = rollout(100)
    select(plan, [Candidate(name(), "tingyu-a", "2")])
    plan.status = RolloutStatus.PAUSED
    settle(plan, 0.2, 1)
    assert plan.status == RolloutStatus.PAUSED
    assert not plan.status.final


def test_a_prepull_run_names_its_job_and_the_machines_still_to_upgrade() -> None:
    command = RolloutCommand(
        job_id=new_job_id(),
        area="南京",
        operator="移动",
        image=IMAGE,
        patch=ImagePatch(image=IMAGE, imageversion="2", image_ref=f"{IMAGE}:2"),
        percent=100,
        issued_at=0.0,
        prepull=True,
    )
    found = [*fleet(3), Candidate(name(), "tingyu-" + "f" * 32, "2")]
    fresh, _ = join(None, command, found, 0.0)
    assert fresh is not None
    assert fresh.prepull
    assert prepull_targets(fresh) == sorted(c.node_uuid for c in found[:3])  # not the one already at 2
    assert prepull_job_id(fresh.run) == prepull_job_id(command.job_id) != prepull_job_id(new_job_id())
    assert progress(fresh)["prepulljob"] == prepull_job_id(command.job_id)
