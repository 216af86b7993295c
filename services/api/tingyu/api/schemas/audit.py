"""A page of audit events."""

from __future__ import annotations

from pydantic import BaseModel, Field

from tingyu.common.models.audit import AuditEvent


class AuditPage(BaseModel):
    """Events oldest first; ask again with `after=next` for the ones that follow."""

    events: list[AuditEvent]
    next: int = Field(description="Stream sequence of the last event read; pass it as `after`")
    more: bool = Field(description="More events were there than one page holds")
