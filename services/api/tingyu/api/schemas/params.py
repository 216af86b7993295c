"""Comma-separated identifiers from the query string, each checked against its exact form.

An identifier becomes a NATS subject token or a key, so one that is not of its form is refused
(TY0003) before anything is looked up; a well-formed one that does not exist is the route's
own answer (per item, or TY0015).
"""

from __future__ import annotations

from collections.abc import Callable

from tingyu.common.errors import InvalidParameter, MissingParameter
from tingyu.common.names import is_deployment_name, is_job_id, is_node_uuid, is_nodename, split_csv


def _shown(value: str) -> str:
    return repr(value if len(value) <= 80 else value[:80] + "…")


def identifiers(text: str, parameter: str, limit: int, valid: Callable[[str], bool], form: str) -> list[str]:
    """The distinct values of a comma-separated parameter, in order; refused if one is malformed."""
    values = list(dict.fromkeys(split_csv(text)))
    if not values:
        raise MissingParameter(f"缺少必填参数: {parameter}")
    if len(values) > limit:
        raise InvalidParameter(f"参数值不合法: at most {limit} values of {parameter} per request")
    for value in values:
        if not valid(value):
            raise InvalidParameter(f"参数值不合法: {parameter} {_shown(value)} is not {form}")
    return values


def job_ids(text: str, limit: int, parameter: str = "jobid") -> list[str]:
    return identifiers(text, parameter, limit, is_job_id, "a job id (32 lower-case hex digits)")


def deployment_names(text: str, limit: int, parameter: str = "name") -> list[str]:
    return identifiers(
        text, parameter, limit, is_deployment_name, "a deployment name (DNS-1123 label, 1-63 characters)"
    )


def node_names(text: str, limit: int, parameter: str = "name") -> list[str]:
    """Machine uuids (`tingyu-<32 hex>`) or nodenames."""
    return identifiers(
        text,
        parameter,
        limit,
        lambda value: is_node_uuid(value) or is_nodename(value),
        "a machine uuid (tingyu-<32 hex>) or nodename",
    )
