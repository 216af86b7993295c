"""The pre-pull slice's decisions: which machines, where each stands, and what the job says. Pure."""

from __future__ import annotations

import hashlib
from collections import Counter
from enum import StrEnum
from typing import Any

from tingyu.common.models.nodes import NodeRecord
from tingyu.common.models.remote import PrepullCommand
from tingyu.deployer.rollouts.plan import target_count

FAILURES_NAMED = 20  # machines named with their reason in a job's result and message


class PullState(StrEnum):
    """One machine of a pre-pull."""

    PENDING = "pending"  # not asked yet, being asked, or NotReady and waited for
    PULLED = "pulled"
    ALREADY_PRESENT = "already_present"
    FAILED = "failed"


Plan = dict[str, tuple[PullState, str]]  # machine uuid -> (state, reason when failed)


def targets(command: PrepullCommand, nodes: list[NodeRecord]) -> list[str]:
    """The listed uuids; or a `percent` share of the area's and operator's machines, in a stable
    order per job (the same machines whenever the command is handled again)."""
    if command.uuids:
        return list(dict.fromkeys(command.uuids))
    found = sorted(
        (
            n.facts.uuid
            for n in nodes
            if n.facts.area == command.area and n.facts.operator == command.operator
        ),
        key=lambda uuid: hashlib.sha256(f"{command.job_id}/{uuid}".encode()).hexdigest(),
    )
    return found[: target_count(len(found), command.percent)]


def plan(command: PrepullCommand, nodes: list[NodeRecord]) -> Plan:
    return dict.fromkeys(targets(command, nodes), (PullState.PENDING, ""))


def due(current: Plan, ready: set[str], busy: set[str], room: int) -> list[str]:
    """Pending Ready machines not being asked already, at most `room` of them."""
    waiting = [u for u, (state, _) in current.items() if state == PullState.PENDING and u in ready]
    return [u for u in waiting if u not in busy][: max(room, 0)]


def expire(current: Plan, ready: set[str]) -> Plan:
    """At the deadline every machine still pending fails, with the reason it did not pull."""
    after = dict(current)
    for uuid, (state, _) in current.items():
        if state == PullState.PENDING:
            why = "did not answer" if uuid in ready else "was not Ready"
            after[uuid] = (PullState.FAILED, f"machine {why} before the job's deadline")
    return after


def done(current: Plan) -> bool:
    return all(state != PullState.PENDING for state, _ in current.values())


def result(command: PrepullCommand, current: Plan) -> dict[str, Any]:
    """The job's `result`: counts, and the failed machines with their reasons."""
    counts = Counter(state for state, _ in current.values())
    failures = {u: why for u, (state, why) in current.items() if state == PullState.FAILED}
    return {
        "image": command.image_ref,
        "total": len(current),
        "pulled": counts[PullState.PULLED],
        "already_present": counts[PullState.ALREADY_PRESENT],
        "failed": counts[PullState.FAILED],
        "pending": counts[PullState.PENDING],
        "failures": dict(list(failures.items())[:FAILURES_NAMED]),
    }


def verdict(current: Plan) -> tuple[bool, str]:
    """(succeeded, message) of a finished pre-pull."""
    failed = [(u, why) for u, (state, why) in current.items() if state == PullState.FAILED]
    if not failed:
        return True, "success"
    named = "; ".join(f"{u}: {why}" for u, why in failed[:FAILURES_NAMED])
    more = len(failed) - FAILURES_NAMED
    return False, f"{len(failed)} of {len(current)} machines failed: {named}" + (
        f" and {more} more" if more > 0 else ""
    )
