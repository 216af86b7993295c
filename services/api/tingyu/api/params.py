"""Query parsing shared by the routes, as public dependencies (and the pure checks behind them).

Each dependency answers the parsed value or raises the contract's error; the routes declare them
as `Annotated` aliases, so a route's signature says what it reads. An identifier becomes a NATS
subject token or a key, so one that is not of its exact form is refused (TY0003) before anything
is looked up; a well-formed one that does not exist is the service's own answer (per item, or TY0015).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Query, Request

from tingyu.api import texts
from tingyu.api.config import ApiSettings
from tingyu.api.deps import SettingsDep
from tingyu.api.services.audit import AuditQuery
from tingyu.common import timefmt
from tingyu.common.errors import InvalidOperator
from tingyu.common.models.nodes import OPERATORS, NodeStatus
from tingyu.common.names import (
    is_deployment_name,
    is_image_name,
    is_image_tag,
    is_node_uuid,
    is_nodename,
    split_csv,
)

MAX_PATH = 4096

# --- comma-separated lists ------------------------------------------------------------------------


def comma_list(text: str, param: str, limit: int, items: str, hint: str) -> list[str]:
    """`a, b,,c` -> [a, b, c], each once, in the order given; missing when empty (`hint` says what
    `param` holds), refused above `limit` (`items` names them)."""
    values = split_csv(text)
    if not values:
        raise texts.required(param, hint)
    if len(values) > limit:
        raise texts.over_limit(limit, items)
    return list(dict.fromkeys(values))


@dataclass(frozen=True)
class Form:
    """What one value of a comma-separated identifier parameter must be."""

    valid: Callable[[str], bool]
    one: str  # the form of one value, for a refusal
    hint: str  # what the parameter holds, for a missing one


def identifiers(text: str, param: str, limit: int, items: str, form: Form) -> list[str]:
    """The distinct values of a comma-separated parameter, in order; refused if one is not of its form."""
    values = comma_list(text, param, limit, items, form.hint)
    for value in values:
        if not form.valid(value):
            raise texts.malformed(param, value, form.one)
    return values


def is_machine(value: str) -> bool:
    """A machine uuid (`tingyu-<32 hex>`) or a nodename."""
    return is_node_uuid(value) or is_nodename(value)


# The contract's own example asks `/task/status?jobid=jobid` and shows a per-item answer: a value
# that may be a key is answered (`job <id> not found` when the platform never made it); one with
# other characters, or longer, can never be a job and is refused.
_JOB_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")


def is_job_token(value: str) -> bool:
    """Letters, digits, `-` and `_`, at most 64: a value that may be asked for as a job id."""
    return bool(_JOB_TOKEN.fullmatch(value))


DEPLOYMENT = Form(
    is_deployment_name,
    "a deployment name (DNS-1123 label, 1-63 characters)",
    "comma-separated deployment names",
)
JOB = Form(is_job_token, "a job id (letters, digits, - or _, at most 64)", "comma-separated job ids")
MACHINE = Form(
    is_machine, "a machine uuid (tingyu-<32 hex>) or nodename", "machine nodenames or uuids, comma-separated"
)


def deployment_list(text: str, limit: int, param: str = "name") -> list[str]:
    """The named deployments, each once, in the order given."""
    return identifiers(text, param, limit, "names", DEPLOYMENT)


def job_id_list(text: str, limit: int) -> list[str]:
    """The job ids asked for, each once, in the order given."""
    return identifiers(text, "jobid", limit, "job ids", JOB)


def node_list(text: str, limit: int) -> list[str]:
    """Machine uuids or nodenames, each once, in the order given."""
    return identifiers(text, "name", limit, "names", MACHINE)


async def deployment_names(
    settings: SettingsDep, name: str = Query("", description="Deployment names, comma-separated")
) -> list[str]:
    return deployment_list(name, settings.max_items)


async def job_ids(
    settings: SettingsDep, jobid: str = Query("", description="Job ids, comma-separated")
) -> list[str]:
    return job_id_list(jobid, settings.max_items)


async def one_job_id(jobid: str = Query("", description="One job id")) -> str:
    """One job id, checked as `/task/status` checks each of its ids."""
    return job_id_list(jobid, 1)[0]


async def node_names(
    settings: SettingsDep, name: str = Query("", description="Nodenames or machine uuids, comma-separated")
) -> list[str]:
    return node_list(name, settings.max_items)


async def machine(uuid: str = Query("", description="Machine uuid (tingyu-<32 hex>) or nodename")) -> str:
    if not uuid:
        raise texts.required("uuid", "a machine uuid or nodename")
    return uuid


@dataclass(frozen=True, slots=True)
class NodeQuery:
    """Which machines `/node/list` answers: all of them unless filtered, one page of them if asked."""

    area: str = ""
    operator: str = ""
    status: str = ""
    page: int = 0  # 1-based; 0: every machine that matches
    page_size: int = 0

    def accepts(self, area: str, operator: str, status: str) -> bool:
        """Whether a machine of this area, operator and status is asked for."""
        return (
            (not self.area or area == self.area)
            and (not self.operator or operator == self.operator)
            and (not self.status or status == self.status)
        )

    @property
    def filtered(self) -> bool:
        return bool(self.area or self.operator or self.status)

    @property
    def window(self) -> slice:
        """Which of the matching machines are answered: one page, or all of them."""
        if not self.page:
            return slice(None)
        start = (self.page - 1) * self.page_size
        return slice(start, start + self.page_size)


DEFAULT_NODE_PAGE = 100


def positive(param: str, text: str, limit: int) -> int:
    """A whole number from 1 to `limit` (0 when the parameter is absent)."""
    text = text.strip()
    if not text:
        return 0
    if not text.isdigit() or not 1 <= int(text) <= limit:
        raise texts.not_allowed(f"{param} '{texts.cut(text)}' is not a whole number from 1 to {limit}")
    return int(text)


async def node_query(  # noqa: PLR0917 - FastAPI reads each query parameter from the signature
    settings: SettingsDep,
    page: str = Query("", description="Page number, from 1 (none: every machine that matches)"),
    page_size: str = Query(
        "", alias="pageSize", description="Machines per page (default 100, at most `node_page_max`, 1000)"
    ),
    area: str = Query("", description="Only machines of this area"),
    operator: str = Query("", description="Only machines of this operator: 移动, 联通 or 电信"),
    status: str = Query("", description="Only machines in this state: Ready or NotReady"),
) -> NodeQuery:
    if operator and operator not in OPERATORS:
        raise InvalidOperator()
    statuses = [s.value for s in NodeStatus]
    if status and status not in statuses:
        raise texts.not_allowed(f"status '{texts.cut(status)}' is not one of {', '.join(statuses)}")
    number = positive("page", page, 10**9)
    size = positive("pageSize", page_size, settings.node_page_max)
    if size and not number:
        number = 1
    if number and not size:
        size = DEFAULT_NODE_PAGE
    return NodeQuery(area=area, operator=operator, status=status, page=number, page_size=size)


NodeQueryDep = Annotated[NodeQuery, Depends(node_query)]
DeploymentNames = Annotated[list[str], Depends(deployment_names)]
JobIds = Annotated[list[str], Depends(job_ids)]
JobId = Annotated[str, Depends(one_job_id)]
NodeNames = Annotated[list[str], Depends(node_names)]
MachineUuid = Annotated[str, Depends(machine)]


def required(value: str, param: str) -> str:
    """The value without surrounding blanks; missing when nothing is left."""
    value = value.strip()
    if not value:
        raise texts.required(param)
    return value


# --- time ranges ----------------------------------------------------------------------------------


def wire_time(param: str, text: str, tz: str) -> float:
    """A contract time (`yyyy-MM-dd HH:mm:ss`, platform time zone) as epoch seconds."""
    if not text:
        raise texts.required(param, "yyyy-MM-dd HH:mm:ss")
    try:
        return timefmt.from_wire(text, tz)
    except ValueError as exc:
        raise texts.bad_range(f"{param} '{text}' is not yyyy-MM-dd HH:mm:ss") from exc


def time_range(start_date: str, end_date: str, settings: ApiSettings) -> tuple[float, float]:
    """Both dates parsed, in order, and no longer apart than the configured limit."""
    tz = settings.platform.timezone
    start, end = wire_time("startDate", start_date, tz), wire_time("endDate", end_date, tz)
    if start > end:
        raise texts.bad_range(f"startDate {start_date} is after endDate {end_date}")
    if end - start > settings.max_range_days * 86400:
        raise texts.bad_range(
            f"the range is longer than {settings.max_range_days} days; ask for a shorter one"
        )
    return start, end


async def dates(
    settings: SettingsDep,
    startDate: str = Query("", description="yyyy-MM-dd HH:mm:ss, platform time zone"),
    endDate: str = Query("", description="yyyy-MM-dd HH:mm:ss, platform time zone"),
) -> tuple[float, float]:
    """The contract's `startDate` and `endDate` as an epoch-seconds range."""
    return time_range(startDate, endDate, settings)


TimeRange = Annotated[tuple[float, float], Depends(dates)]


# --- image names ----------------------------------------------------------------------------------


def split_image_version(text: str, param: str = "imageVersion") -> tuple[str, str]:
    """`name:version` split at its last colon (a registry host may carry a port)."""
    name, sep, version = text.rpartition(":")
    if not sep or not name or not version or "/" in version:
        raise texts.not_allowed(f"{param} '{text}' is not name:version")
    return name, version


def version_filter(image_version: str, image: str) -> tuple[str, str]:
    """The (image, version) of a by-version query; the contract names the parameter both ways.

    `imageVersion=name:version` or `image=name:version`: that version; `image=name` alone: every
    version of that image; `image=name&imageVersion=version`: that version; nothing: everything.
    """
    image_version, image = image_version.strip(), image.strip()
    if image and image_version:
        name, version = image_version.rpartition(":")[::2] if ":" in image_version else (image, image_version)
        if name != image:
            raise texts.not_allowed(f"image '{image}' and imageVersion '{image_version}' disagree")
        return name, version
    if image_version:
        return split_image_version(image_version)
    if image and ":" in image.rsplit("/", 1)[-1]:
        return split_image_version(image, "image")
    return image, ""


async def image_version_or_image(
    imageVersion: str = Query(
        "", description="name:version, or a version of `image` (none: every container)"
    ),
    image: str = Query("", description="name:version, or a name alone for every version of it"),
) -> tuple[str, str]:
    """(image, version) of a by-version query, in either of the contract's spellings."""
    return version_filter(imageVersion, image)


def only(*allowed: str) -> Callable[[Request], Coroutine[Any, Any, None]]:
    """A metering route's dependency refusing query parameters it does not read (besides the dates)."""
    known = sorted({"startDate", "endDate", *allowed})

    async def check(request: Request) -> None:
        unknown = sorted(set(request.query_params) - set(known))
        if unknown:
            raise texts.unknown_parameters(unknown, known)

    return check


async def image_any_version(
    image: str = Query("", description="Image name (none: every container)"),
) -> tuple[str, str]:
    """(image, "") for every version of one image, or ("", "") when not given."""
    return image.strip(), ""


async def search_word(
    wordKey: str | None = Query(None, description="Keyword (the contract's example spelling)"),
    wordkey: str = Query("", description="Keyword (the contract's table spelling)"),
) -> str:
    """The search keyword, lower-cased; empty matches everything."""
    return (wordKey if wordKey is not None else wordkey).strip().lower()


async def upload_target(image_name: str = Query(""), version: str = Query("")) -> tuple[str, str]:
    """The (repository, tag) an upload is for."""
    name, tag = required(image_name, "image_name"), required(version, "version")
    if not is_image_name(name):
        raise texts.not_a_name("image_name", name, "a valid repository name")
    if not is_image_tag(tag):
        raise texts.not_a_name("version", tag, "a valid tag")
    return name, tag


@dataclass(frozen=True)
class UploadNotes:
    """What an upload says about its image, each within `TINGYU_API_MAX_DETAIL_BYTES`."""

    image_url: str
    detail: str


def bounded(text: str, param: str, limit: int) -> str:
    """`text` when its UTF-8 bytes are within `limit`; refused otherwise."""
    if len(text.encode()) > limit:
        raise texts.too_long(param, limit, "TINGYU_API_MAX_DETAIL_BYTES")
    return text


async def upload_notes(
    settings: SettingsDep,
    image_url: str = Query("", description="Where the image comes from (free text)"),
    detail: str = Query("", description="A description of this version (free text)"),
) -> UploadNotes:
    limit = settings.max_detail_bytes
    detail = bounded(detail, "detail", limit)
    return UploadNotes(image_url=bounded(image_url, "image_url", limit), detail=detail)


ImageAnyVersion = Annotated[tuple[str, str], Depends(image_any_version)]
ImageVersionOrImage = Annotated[tuple[str, str], Depends(image_version_or_image)]
SearchWord = Annotated[str, Depends(search_word)]
UploadTarget = Annotated[tuple[str, str], Depends(upload_target)]
UploadNotesDep = Annotated[UploadNotes, Depends(upload_notes)]


# --- rollouts ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RolloutTarget:
    """Which rollout a request reads or steers: one per (area, operator, image)."""

    area: str
    operator: str
    image: str


async def rollout_target(
    area: str = Query("", description="The rollout's area"),
    operator: str = Query("", description="移动, 联通 or 电信"),
    image: str = Query("", description="The rollout's image name"),
) -> RolloutTarget:
    """The operator first, whatever else is wrong (as updateByInherit judges it)."""
    if operator not in OPERATORS:
        raise InvalidOperator()
    if not area.strip() or not image.strip():
        raise texts.required_together("area, operator and image")
    return RolloutTarget(area=area.strip(), operator=operator, image=image.strip())


RolloutTargetDep = Annotated[RolloutTarget, Depends(rollout_target)]


# --- file paths -----------------------------------------------------------------------------------


def check_path(filepath: str) -> None:
    """An absolute, normalised path."""
    if not filepath:
        raise texts.required("filepath", "an absolute path in the container")
    if "\0" in filepath or len(filepath) > MAX_PATH:
        raise texts.not_allowed(f"filepath is not a valid path (NUL, or over {MAX_PATH} characters)")
    if not filepath.startswith("/"):
        raise texts.not_allowed(f"filepath must be absolute: {texts.shown(filepath)}")
    if posixpath.normpath(filepath) != filepath or filepath.startswith("//"):
        raise texts.not_allowed(
            f"filepath must be normalised (no '.', '..', '//' or trailing '/'): {texts.shown(filepath)}"
        )


def check_deployment_name(name: str) -> None:
    if not name:
        raise texts.required("name", "the container's deploymentname")
    if not is_deployment_name(name):
        raise texts.not_a_name("name", name, "a DNS-1123 label")


@dataclass(frozen=True)
class FileTarget:
    """Which file of which deployment to fetch, and the caller's own size limit (0: none)."""

    name: str
    path: str
    max_bytes: int


async def file_target(
    name: str = Query("", description="The container's deploymentname"),
    filepath: str = Query("", description="Absolute path of a regular file in the container"),
    maxbytes: int = Query(
        0, ge=0, description="Extension: refuse files above this size (never above the machine's limit)"
    ),
) -> FileTarget:
    check_path(filepath)
    check_deployment_name(name)
    return FileTarget(name=name, path=filepath, max_bytes=maxbytes)


FileTargetDep = Annotated[FileTarget, Depends(file_target)]


# --- audit queries --------------------------------------------------------------------------------

MAX_AUDIT_PAGE = 1000
_ACTION = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")


def moment(param: str, text: str, tz: str) -> float | None:
    """Epoch seconds, or a contract time (`yyyy-MM-dd HH:mm:ss`, platform time zone); None when empty."""
    text = text.strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        return wire_time(param, text, tz)


async def audit_query(  # noqa: PLR0917 - FastAPI reads each query parameter from the signature
    settings: SettingsDep,
    since: str = Query("", description="From this time: epoch seconds or yyyy-MM-dd HH:mm:ss"),
    until: str = Query("", description="Up to this time: epoch seconds or yyyy-MM-dd HH:mm:ss"),
    actor: str = Query("", description="Only calls made with the token of this name"),
    action: str = Query(
        "", description="Only this action (`container.create`), or all of an area (`container`)"
    ),
    after: int = Query(0, ge=0, description="Continue after this stream sequence (a page's `next`)"),
    limit: int = Query(100, ge=1, le=MAX_AUDIT_PAGE, description="Events per page"),
) -> AuditQuery:
    tz = settings.platform.timezone
    if action and not _ACTION.fullmatch(action):
        raise texts.not_allowed(f"action '{action[:80]}' is not a dotted name such as container.create")
    first, last = moment("since", since, tz), moment("until", until, tz)
    if first is not None and last is not None and first > last:
        raise texts.bad_range(f"since {since} is after until {until}")
    return AuditQuery(since=first, until=last, actor=actor.strip(), action=action, after=after, limit=limit)


AuditQueryDep = Annotated[AuditQuery, Depends(audit_query)]
