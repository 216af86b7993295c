"""The API's refusal texts, each built by one constructor (the contract's wording where it has one).

A refusal of the whole request is an error. On the contract's own interfaces (containers, nodes,
tasks, metering, rollouts) `msg` is its kind's own message, in the contract's language, and `detail`
says in English what exactly is wrong (`reason`, `required`, `over_limit`, `not_allowed`,
`bad_range`); the image and file interfaces keep their kind's message, a colon, and what is wrong
(`refusal`, `missing`, `invalid`, `too_many`, `bad_time`).
A refusal of one item of a request is the `message` of that item's result.
"""

from __future__ import annotations

from typing import TypeVar

from tingyu.common.errors import (
    DeploymentNotFound,
    FileFetchError,
    FileNotReady,
    Forbidden,
    ImageNotFound,
    ImageVersionExists,
    ImageVersionNotFound,
    InvalidParameter,
    InvalidTimeRange,
    JobNotFound,
    MissingParameter,
    RolloutNotFound,
    TingyuError,
    Unavailable,
)

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


def cut(value: str, limit: int = 200) -> str:
    """At most `limit` characters of a value a client sent, so an answer never echoes a huge one."""
    return value[:limit]


def shown(value: str) -> str:
    """A value a client sent, quoted, its control characters visible, cut after 80 characters."""
    return repr(value if len(value) <= 80 else value[:80] + "…")


def too_long(param: str, limit: int, setting: str) -> InvalidParameter:
    """A free-text value over its byte limit (`setting` names the variable that sets it)."""
    return invalid(f"{param} is longer than {limit} bytes ({setting})")


def bad_time(text: str) -> InvalidTimeRange:
    return refusal(InvalidTimeRange, text)


# --- refusals with the reason in `detail` -------------------------------------------------------------


def reason(kind: type[E], text: str) -> E:
    """`kind`'s own message, and what exactly is wrong (English) in `detail`."""
    return kind(detail=text)


def required(param: str, hint: str = "") -> MissingParameter:
    """`param` is absent or empty; `hint` says what it holds."""
    return reason(MissingParameter, f"{param} is required" + (f" ({hint})" if hint else ""))


def empty_body(item: str) -> MissingParameter:
    """A body that lists nothing."""
    return reason(MissingParameter, f"the body must list at least one {item}")


def required_together(params: str) -> MissingParameter:
    return reason(MissingParameter, f"{params} are required")


def over_limit(limit: int, what: str) -> InvalidParameter:
    """More items in one request than the configured limit."""
    return reason(InvalidParameter, f"at most {limit} {what} per request")


def not_allowed(text: str) -> InvalidParameter:
    return reason(InvalidParameter, text)


def malformed(param: str, value: str, form: str) -> InvalidParameter:
    """A value of `param` that is not of its exact form (an identifier, before it is looked up)."""
    return not_allowed(f"{param} {shown(value)} is not {form}")


def bad_range(text: str) -> InvalidTimeRange:
    return reason(InvalidTimeRange, text)


def unknown_parameters(unknown: list[str], known: list[str]) -> InvalidParameter:
    """A query parameter the interface does not read: an ignored filter is an error, not silence."""
    return not_allowed(f"unknown parameter {', '.join(unknown)}; this interface reads {', '.join(known)}")


def no_rollout() -> RolloutNotFound:
    return reason(RolloutNotFound, "no rollout of that image was started in that area and operator")


def rollout_ended(status: str, action: str) -> InvalidParameter:
    return not_allowed(
        f"the rollout's last run is {status}; it cannot be {action}d "
        "(a new updateByInherit call starts a new run)"
    )


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


_OUTSIDE = "; this token may act only on "


def outside_areas(node_uuid: str, area: str, areas: frozenset[str]) -> str:
    """Per item: the token may not act on this machine's area."""
    allowed = ", ".join(sorted(areas))
    return f"machine {node_uuid} is in area {area or '(none)'}{_OUTSIDE}{allowed}"


def is_outside_areas(message: str) -> bool:
    """Whether a per-item message is `outside_areas`'."""
    return message.startswith("machine ") and _OUTSIDE in message


def job_not_found(job_id: str) -> str:
    return f"job {job_id} not found"


# --- refusals of one kind of request -----------------------------------------------------------------


def version_exists(name: str, tag: str) -> ImageVersionExists:
    return ImageVersionExists(f"{ImageVersionExists.default_msg} {name}:{tag}")


def version_not_found(name: str, tag: str) -> ImageVersionNotFound:
    return ImageVersionNotFound(f"{ImageVersionNotFound.default_msg} {name}:{tag}")


def image_not_found(name: str) -> ImageNotFound:
    return ImageNotFound(f"{ImageNotFound.default_msg} {name}")


def metering_unavailable() -> Unavailable:
    return Unavailable("计量服务暂不可用,请稍后重试")


def deployment_gone(name: str) -> DeploymentNotFound:
    """The file interfaces' refusal of an unknown deployment."""
    return DeploymentNotFound(f"容器不存在: {name}", detail=not_found(name))


def file_node_not_ready(name: str, node_uuid: str) -> FileFetchError:
    return refusal(FileFetchError, f"容器 {name} 所在机器未就绪", detail=f"Node is not ready: {node_uuid}")


def file_job_unknown(job_id: str) -> JobNotFound:
    return JobNotFound(f"任务不存在: {job_id}", detail=f"no file job {job_id} (unknown or expired)")


def file_not_finished(job_id: str, state: int) -> FileNotReady:
    return refusal(FileNotReady, job_id, detail=f"job {job_id} has not finished (state {state})")


def file_expired(job_id: str, hours: float) -> FileNotReady:
    return FileNotReady(
        "文件已过期,请重新下载", detail=f"the file of job {job_id} has expired (files are kept {hours:g}h)"
    )


def area_forbidden(what: str, area: str, areas: frozenset[str]) -> Forbidden:
    """The whole request acts on an area the token may not."""
    return Forbidden(
        detail=f"{what} is in area {area or '(none)'}; this token may act only on {', '.join(sorted(areas))}"
    )
