"""Audit events of API calls: what to record (pure) and publishing on `ty.audit.<action>`.

Publishing never fails or delays a call: events are sent after the answer, in the background, a
bounded number at a time; one that cannot be sent is logged (with its content) and dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from tingyu.common import subjects
from tingyu.common.bus import Bus
from tingyu.common.models.audit import AuditEvent

log = logging.getLogger(__name__)

MAX_PENDING = 1000  # events on their way; beyond that an event is logged and dropped
MAX_LISTED = 100  # targets, machines or job ids kept per event
# Request fields that name what a call acts on (query parameters and JSON body keys).
TARGET_KEYS = (
    "name",
    "deploymentname",
    "deploymentnames",
    "image",
    "image_name",
    "imageVersion",
    "imageversion",
    "version",
    "area",
    "operator",
    "filepath",
    "jobId",
    "jobid",
    "job_id",
    "role",
)
MACHINE_KEYS = ("uuid",)
# GET routes audited like changes: file downloads, container logs, exec sessions (the WebSocket).
AUDITED_READS = ("file.content", "container.logs", "container.exec")


def action_of(route_path: str, root: str) -> str:
    """`/tingyu/container/updateByName` -> `container.updateByName`; path parameters are dropped."""
    path = route_path.removeprefix(root)
    parts = [part for part in path.split("/") if part and not part.startswith("{")]
    return ".".join(parts) or "root"


def audited(method: str, action: str, status: int) -> bool:
    """Every change, every file download, log read and exec session, and every refused call (401,
    403, 429)."""
    return method not in ("GET", "HEAD", "OPTIONS") or action in AUDITED_READS or status in (401, 403, 429)


def _bounded(values: list[str]) -> list[str]:
    unique = list(dict.fromkeys(v for v in values if v))
    if len(unique) > MAX_LISTED:
        return [*unique[:MAX_LISTED], f"+{len(unique) - MAX_LISTED} more"]
    return unique


def _texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [part.strip()[:256] for part in value.split(",") if part.strip()]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return [str(value)]
    return []


def named(query: dict[str, str], path_params: dict[str, Any], body: Any) -> tuple[list[str], list[str]]:
    """(targets, machines) a request names in its query, path and JSON body."""
    targets: list[str] = []
    machines: list[str] = []
    sources: list[dict[str, Any]] = [query, path_params]
    if isinstance(body, dict):
        sources.append(body)
    elif isinstance(body, list):
        sources.extend(item for item in body[:MAX_LISTED] if isinstance(item, dict))
    for source in sources:
        for key in TARGET_KEYS:
            targets.extend(_texts(source.get(key)))
        for key in MACHINE_KEYS:
            machines.extend(_texts(source.get(key)))
    return _bounded(targets), _bounded(machines)


def outcome(status: int, body: Any) -> tuple[str, list[str]]:
    """(code, job ids) of an answer: its TY code or `200`, and every job id it hands out."""
    code = str(status)
    jobs: list[str] = []
    if isinstance(body, dict):
        code = str(body.get("tycode") or body.get("code") or status)
        jobs.extend(_texts(body.get("jobid")))
        data = body.get("data")
        items = data if isinstance(data, list) else [data]
        for item in items:
            if isinstance(item, dict):
                jobs.extend(_texts(item.get("jobid")))
    return code, _bounded(jobs)


def parse_json(data: bytes) -> Any:
    if not data:
        return None
    with contextlib.suppress(ValueError):
        return json.loads(data)
    return None


class Auditor:
    """Sends audit events in the background; `close` waits a little for those still on their way."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self._pending: set[asyncio.Task[None]] = set()

    def record(self, event: AuditEvent) -> None:
        if len(self._pending) >= MAX_PENDING:
            log.error("audit: too many events on their way; dropped %s", event.to_bytes().decode())
            return
        task = asyncio.create_task(self._send(event), name="audit")
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _send(self, event: AuditEvent) -> None:
        try:
            await self.bus.publish(subjects.audit(event.action), event)
        except Exception as exc:
            log.error("audit: could not publish (%s); event %s", exc, event.to_bytes().decode())

    async def close(self, timeout: float = 5.0) -> None:
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=timeout)
