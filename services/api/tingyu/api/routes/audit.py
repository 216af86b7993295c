"""The audit (admin only): every change, file download and refused call, from stream `TY_AUDIT`."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from tingyu.api.deps import BusDep, admin
from tingyu.api.envelope import Envelope, EnvelopeRoute, ok
from tingyu.api.params import AuditQueryDep
from tingyu.api.schemas.audit import AuditPage
from tingyu.api.services import audit

router = APIRouter(tags=["audit"], route_class=EnvelopeRoute, dependencies=[Depends(admin)])


@router.get("/audit", response_model=Envelope[AuditPage])
async def events(bus: BusDep, query: AuditQueryDep) -> Envelope[AuditPage]:
    """Audit events oldest first (by time, action, actor); `data.next` is the `after` of the next page."""
    return ok(await audit.page(bus, query))
