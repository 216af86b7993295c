"""One hierarchy of domain errors; each carries its `TY` code and a message a person understands.

The API registers one translator that turns any `TingyuError` into the
`{msg, code}` envelope; workers use the same classes to fail a job with a reason.
Codes are stable: old clients match on them. `docs/api.md` lists them all.
"""

from __future__ import annotations

from typing import ClassVar


class TingyuError(Exception):
    """Base of every error the platform reports to a client."""

    code: ClassVar[str] = "TY0000"
    http_status: ClassVar[int] = 200  # the contract answers errors with HTTP 200 and a TY code
    default_msg: ClassVar[str] = "未知异常,请联系管理员"

    def __init__(self, msg: str | None = None, *, detail: str | None = None) -> None:
        self.msg = msg or self.default_msg
        self.detail = detail
        super().__init__(self.msg)


class InvalidRequest(TingyuError):
    """The request body is not JSON or not of the documented shape."""

    code = "TY0001"
    default_msg = "请求格式错误"


class MissingParameter(TingyuError):
    """A required parameter is absent or empty."""

    code = "TY0002"
    default_msg = "缺少必填参数"


class InvalidParameter(TingyuError):
    """A parameter is present but its value is not allowed."""

    code = "TY0003"
    default_msg = "参数值不合法"


class RequestTooLarge(TingyuError):
    """The URL, a query value or the body is over its configured limit; nothing more was read."""

    code = "TY0006"
    http_status = 413
    default_msg = "请求过大"


class RequestTimeout(TingyuError):
    """The client stopped sending its request body for longer than the configured idle timeout."""

    code = "TY0007"
    http_status = 408
    default_msg = "请求超时"


class Unavailable(TingyuError):
    """A backing service (NATS, a worker) did not answer in time; nothing was changed."""

    code = "TY0010"
    http_status = 503
    default_msg = "服务暂不可用,请稍后重试"


class Conflict(TingyuError):
    """Another writer changed the same record first; nothing was changed, the call may be repeated."""

    code = "TY0011"
    default_msg = "数据正在被其他请求修改,请稍后重试"


class NodeNotFound(TingyuError):
    """The machine uuid is not in the node registry (contract code)."""

    code = "TY0015"
    default_msg = "uuid不存在!"


class JobNotFound(TingyuError):
    """No job has that id (or it expired)."""

    code = "TY0016"
    default_msg = "任务不存在!"


class DeploymentNotFound(TingyuError):
    """No deployment has that name."""

    code = "TY0017"
    default_msg = "容器不存在!"


class DeploymentExists(TingyuError):
    """A deployment with that name already exists."""

    code = "TY0018"
    default_msg = "容器名已存在!"


class NodeNotReady(TingyuError):
    """The machine has not sent a heartbeat lately, so nothing is sent to it."""

    code = "TY0019"
    default_msg = "节点未就绪!"


class ImageNotFound(TingyuError):
    """The image is not in the catalog."""

    code = "TY0020"
    default_msg = "镜像不存在!"


class ImageVersionNotFound(TingyuError):
    """The image exists but not in that version."""

    code = "TY0021"
    default_msg = "镜像版本不存在!"


class ImageInUse(TingyuError):
    """The image or version is used by containers; the message names them."""

    code = "TY0022"
    default_msg = "镜像正在被容器使用,不能删除!"


class BadImageArchive(TingyuError):
    """The upload is not a `docker save` archive (contract message)."""

    code = "TY0023"
    default_msg = "上传失败!请检查tar包是否是通过docker save保存!"


class ImageVersionExists(TingyuError):
    """That image version is already in the catalog."""

    code = "TY0024"
    default_msg = "镜像版本已存在!"


class RegistryError(TingyuError):
    """The image registry refused or failed an operation."""

    code = "TY0025"
    default_msg = "镜像仓库操作失败"


class InvalidOperator(TingyuError):
    """The ISP is not one of 移动/联通/电信 (contract code and message)."""

    code = "TY0032"
    default_msg = "运营商错误!正确为移动、联通和电信!"


class RolloutNotFound(TingyuError):
    """No rollout matches."""

    code = "TY0033"
    default_msg = "灰度任务不存在!"


class InvalidTimeRange(TingyuError):
    """A date does not parse, the start is after the end, or the range is too long."""

    code = "TY0040"
    default_msg = "时间范围错误"


class FileFetchError(TingyuError):
    """A file could not be fetched out of a container."""

    code = "TY0050"
    default_msg = "文件获取失败"


class FileNotReady(TingyuError):
    """The file job has not finished (or has expired)."""

    code = "TY0051"
    default_msg = "文件尚未就绪"


class PayloadTooLarge(TingyuError):
    """A body or file is over the configured size limit."""

    code = "TY0052"
    default_msg = "文件过大"


class AccessRefused(TingyuError):
    """A call refused for who made it (no credential, a bad one, a role or area that may not, too
    many failures); always answered in the general envelope with its HTTP status, on every route."""


class Unauthenticated(AccessRefused):
    """No bearer token, or one that is unknown or revoked."""

    code = "TY0070"
    http_status = 401
    default_msg = "未认证:缺少或无效的访问令牌"


class Forbidden(AccessRefused):
    """The token's role or areas do not allow this call."""

    code = "TY0071"
    http_status = 403
    default_msg = "无权执行此操作"


class TooManyFailures(AccessRefused):
    """Too many failed authentications from this client address; refused without checking until later."""

    code = "TY0072"
    http_status = 429
    default_msg = "认证失败次数过多,请稍后再试"


class TokenNotFound(TingyuError):
    """No active API token has that name or id."""

    code = "TY0073"
    default_msg = "令牌不存在!"


class TokenExists(TingyuError):
    """An active API token already has that name."""

    code = "TY0074"
    default_msg = "令牌名已存在!"


class EnrollmentRefused(TingyuError):
    """A machine's enrollment was refused: unknown, used or expired token, or a revoked or taken uuid."""

    code = "TY0060"
    http_status = 403
    default_msg = "节点注册被拒绝"


class ContainerNotRunning(TingyuError):
    """The container exists but is not running, so a command cannot run in it."""

    code = "TY0080"
    default_msg = "容器未运行"


class RemoteCommandFailed(TingyuError):
    """Reading logs or running a command in a container failed on its machine; the detail says why."""

    code = "TY0081"
    default_msg = "远程操作失败"


class TooManySessions(TingyuError):
    """The machine already runs its maximum of interactive sessions."""

    code = "TY0082"
    default_msg = "会话数已达上限,请稍后重试"


class PullFailed(TingyuError):
    """A machine could not pull an image; the detail is the engine's reason."""

    code = "TY0083"
    default_msg = "镜像拉取失败"


class FollowEnded(TingyuError):
    """A followed log stream was ended by the platform (its maximum duration, or its machine); the
    last event of the stream carries it."""

    code = "TY0084"
    default_msg = "日志跟踪已结束"


class InternalError(TingyuError):
    """An unexpected failure; the log has the details, the client only the code."""

    code = "TY0500"
    http_status = 500


def error_of(code: str, msg: str = "", detail: str | None = None) -> TingyuError:
    """The error a TY code stands for (a reply from another service, a failed job), same message."""
    kind = _BY_CODE.get(code, TingyuError)
    return kind(msg or None, detail=detail)


def _all_kinds(kind: type[TingyuError]) -> list[type[TingyuError]]:
    return [kind, *(sub for child in kind.__subclasses__() for sub in _all_kinds(child))]


_BY_CODE: dict[str, type[TingyuError]] = {kind.code: kind for kind in reversed(_all_kinds(TingyuError))}
