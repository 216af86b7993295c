"""Audit events: who changed what, who downloaded which file, and every refused call."""

from __future__ import annotations

from pydantic import Field

from tingyu.common.models.base import Message


class AuditEvent(Message):
    """Stream `TY_AUDIT`, subject `ty.audit.<action>`: one call to the API.

    `action` is stable per route (`container.create`, `file.content`, `token.revoke`; `unknown` for
    a path no route has). `code` is the answer's code: `200`, or the TY code of a refusal.
    """

    time: float  # epoch seconds
    request_id: str
    action: str
    method: str
    path: str
    actor: str = ""  # the token's name; "" for an anonymous or unknown caller
    token_id: str = ""  # "bootstrap" for TINGYU_API_ADMIN_TOKEN
    role: str = ""
    areas: list[str] = Field(default_factory=list)
    targets: list[str] = Field(default_factory=list)  # deployment, image, token names, job or file ids
    machines: list[str] = Field(default_factory=list)  # machine uuids named in the request
    status: int  # HTTP status
    code: str
    job_ids: list[str] = Field(default_factory=list)
    client: str = ""  # the client's address as the API saw it (after trusted proxy headers)
