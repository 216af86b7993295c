"""Machine enrollment: public, because it carries its own one-time enrollment token."""

from __future__ import annotations

from fastapi import APIRouter

from tingyu.api.deps import BusDep, SettingsDep
from tingyu.api.envelope import Envelope, EnvelopeRoute, ok
from tingyu.api.schemas.enroll import EnrollBody, EnrollView
from tingyu.api.services import enroll as enrollment

router = APIRouter(prefix="/node", tags=["nodes"], route_class=EnvelopeRoute)


@router.post("/enroll", response_model=Envelope[EnrollView])
async def enroll(bus: BusDep, settings: SettingsDep, body: EnrollBody) -> Envelope[EnrollView]:
    """A machine trades a token and its public nkey for its NATS credential; TY0060 when refused."""
    return ok(await enrollment.enroll(bus, settings.platform, body))
