"""The API's refusal texts, each built by one constructor (the contract's wording where it has one).

A refusal of the whole request is an error. On every interface `msg` is a text in the contract's
language (its kind's own message, or a sentence of its own) and `detail` says in English what
exactly is wrong; the file interfaces answer that `detail` as their contract's `error`.
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
    InvalidRequest,
    InvalidTimeRange,
    JobNotFound,
    MissingParameter,
    PayloadTooLarge,
    RolloutNotFound,
    TingyuError,
    Unavailable,
)

E = TypeVar("E", bound=TingyuError)


def cut(value: str, limit: int = 200) -> str:
    """At most `limit` characters of a value a client sent, so an answer never echoes a huge one."""
    return value[:limit]


def shown(value: str) -> str:
    """A value a client sent, quoted, its control characters visible, cut after 80 characters."""
    return repr(value if len(value) <= 80 else value[:80] + "…")


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


def job_unknown(job_id: str) -> JobNotFound:
    """A job id the platform never made (or whose record expired), asked for by itself."""
    return reason(JobNotFound, job_not_found(job_id))


# --- refusals of one kind of request -----------------------------------------------------------------


def version_exists(name: str, tag: str) -> ImageVersionExists:
    return reason(ImageVersionExists, f"version {name}:{tag} is already in the catalog")


def version_not_found(name: str, tag: str) -> ImageVersionNotFound:
    return reason(ImageVersionNotFound, f"image {name} has no version {shown(tag)} in the catalog")


def image_not_found(name: str) -> ImageNotFound:
    return reason(ImageNotFound, f"no image {shown(name)} in the catalog")


def too_long(param: str, limit: int, setting: str) -> InvalidParameter:
    """A free-text value over its byte limit (`setting` names the variable that sets it)."""
    return not_allowed(f"{param} is longer than {limit} bytes ({setting})")


def not_a_name(param: str, value: str, what: str) -> InvalidParameter:
    """A value that is not of the form `what` (a repository name, a tag, a DNS-1123 label)."""
    return not_allowed(f"{param} {shown(cut(value))} is not {what}")


def upload_shape(text: str) -> InvalidRequest:
    """An upload body that is not sent the way uploadImage reads one."""
    return reason(InvalidRequest, text)


def upload_empty() -> MissingParameter:
    return required("file", "the upload is empty")


def upload_too_large(limit: int) -> PayloadTooLarge:
    return reason(PayloadTooLarge, f"the upload is over {limit} bytes (TINGYU_API_MAX_UPLOAD_BYTES)")


def metering_unavailable() -> Unavailable:
    return Unavailable("计量服务暂不可用,请稍后重试")


def deployment_gone(name: str) -> DeploymentNotFound:
    """The file interfaces' refusal of an unknown deployment."""
    return DeploymentNotFound(f"容器不存在: {name}", detail=not_found(name))


def file_node_not_ready(name: str, node_uuid: str) -> FileFetchError:
    text = f"文件获取失败: 容器 {name} 所在机器未就绪"
    return FileFetchError(text, detail=f"Node is not ready: {node_uuid}")


def file_failed(kind: type[E], text: str) -> E:
    """A file job that failed: its kind's message, and the job's own (English) reason."""
    return reason(kind, text)


def file_job_unknown(job_id: str) -> JobNotFound:
    return JobNotFound(f"任务不存在: {job_id}", detail=f"no file job {job_id} (unknown or expired)")


def file_not_finished(job_id: str, state: int) -> FileNotReady:
    return FileNotReady(f"文件尚未就绪: {job_id}", detail=f"job {job_id} has not finished (state {state})")


def file_expired(job_id: str, hours: float) -> FileNotReady:
    return FileNotReady(
        "文件已过期,请重新下载", detail=f"the file of job {job_id} has expired (files are kept {hours:g}h)"
    )


def area_forbidden(what: str, area: str, areas: frozenset[str]) -> Forbidden:
    """The whole request acts on an area the token may not."""
    return Forbidden(
        detail=f"{what} is in area {area or '(none)'}; this token may act only on {', '.join(sorted(areas))}"
    )
