"""The API's refusal texts, each built by one constructor (the contract's wording where it has one).

A refusal of the whole request is an error: its kind's own message, a colon, what exactly is wrong.
A refusal of one item of a request is the `message` of that item's result.
"""

from __future__ import annotations

from typing import TypeVar

from tingyu.common.errors import InvalidParameter, InvalidTimeRange, MissingParameter, TingyuError

E = TypeVar("E", bound=TingyuError)


def refusal(kind: type[E], text: str, detail: str | None = None) -> E:
    """`kind`'s own message followed by what exactly is wrong."""
    return kind(f"{kind.default_msg}: {text}", detail=detail)


def missing(what: str, detail: str | None = None) -> MissingParameter:
    return refusal(MissingParameter, what, detail)


def invalid(what: str, detail: str | None = None) -> InvalidParameter:
    return refusal(InvalidParameter, what, detail)


def too_many(limit: int, what: str) -> InvalidParameter:
    """More items in one request than the configured limit."""
    return invalid(f"at most {limit} {what} per request")


def bad_time(text: str) -> InvalidTimeRange:
    return refusal(InvalidTimeRange, text)


# --- per-item messages ------------------------------------------------------------------------------


def not_found(name: str) -> str:
    """The contract's message for an unknown deployment name."""
    return f'deployments.apps "{name}" not found'


def not_ready() -> str:
    """The contract's message for a machine that is not Ready."""
    return "Node is not ready"


def name_unknown() -> str:
    """The contract's message of /container/inheritUpdate for an unknown deployment."""
    return "Get Deploymentname Fail"


def appears_twice(name: str) -> str:
    return f"deployment {name} appears twice in this request"


def cannot_move(name: str, node_uuid: str) -> str:
    return f"deployment {name} runs on {node_uuid}; it cannot move machines"


def job_not_found(job_id: str) -> str:
    return f"job {job_id} not found"
