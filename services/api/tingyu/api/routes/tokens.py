"""API tokens (admin only): create one (its secret is answered once), list them, revoke one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Query, Request

from tingyu.api.auth import Keyring
from tingyu.api.deps import Admin, BusDep, SettingsDep, admin
from tingyu.api.envelope import Envelope, EnvelopeRoute, ok
from tingyu.api.schemas.tokens import TokenCreate, TokenCreated, TokenView
from tingyu.api.services import tokens

router = APIRouter(prefix="/token", tags=["tokens"], route_class=EnvelopeRoute, dependencies=[Depends(admin)])


@router.post("/create", response_model=Envelope[TokenCreated])
async def create(
    who: Admin, bus: BusDep, settings: SettingsDep, body: Annotated[TokenCreate, Body()]
) -> Envelope[TokenCreated]:
    """Create a token with a role (and optionally areas); `data.token` is its secret, shown this once."""
    return ok(await tokens.create(bus, settings, body, caller=who))


@router.get("/list", response_model=Envelope[list[TokenView]])
async def list_all(bus: BusDep, settings: SettingsDep) -> Envelope[list[TokenView]]:
    """Every token, oldest first, revoked ones included; never a secret."""
    return ok(await tokens.listing(bus, settings))


@router.delete("/revoke", response_model=Envelope[TokenView])
async def revoke(
    who: Admin,
    request: Request,
    bus: BusDep,
    settings: SettingsDep,
    name: str = Query("", description="The token's name or id"),
) -> Envelope[TokenView]:
    """Revoke a token; it is refused from the next call on."""
    keyring: Keyring = request.app.state.keyring
    return ok(await tokens.revoke(bus, settings, keyring, name.strip(), caller=who))
