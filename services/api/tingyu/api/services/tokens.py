"""API tokens: create (the secret is answered once, only its digest is stored), list, revoke."""

from __future__ import annotations

import re

from tingyu.api import texts
from tingyu.api.auth import BOOTSTRAP_NAME, Keyring, Principal, clean_areas, digest, mint
from tingyu.api.config import ApiSettings
from tingyu.api.schemas.tokens import TokenCreate, TokenCreated, TokenView
from tingyu.common import subjects, timefmt
from tingyu.common.bus import Bus
from tingyu.common.errors import TokenExists, TokenNotFound
from tingyu.common.models.tokens import TokenRecord

_ID = re.compile(r"[0-9a-f]{16}")


def view(record: TokenRecord, tz: str) -> TokenView:
    found = TokenView(
        id=record.id,
        name=record.name,
        role=record.role,
        areas=record.areas,
        createtime=timefmt.to_wire(record.created_at, tz),
        createdby=record.created_by,
        revoked=not record.active,
    )
    if not record.active:
        found.revoketime = timefmt.to_wire(record.revoked_at, tz)
        found.revokedby = record.revoked_by
    return found


async def every(bus: Bus) -> list[TokenRecord]:
    return sorted(await bus.store(subjects.TOKENS).values(), key=lambda r: r.created_at)


async def listing(bus: Bus, settings: ApiSettings) -> list[TokenView]:
    """Every token, oldest first, revoked ones too."""
    return [view(record, settings.platform.timezone) for record in await every(bus)]


async def create(bus: Bus, settings: ApiSettings, body: TokenCreate, *, caller: Principal) -> TokenCreated:
    """A new token; its name must not be taken by an active one (nor be the bootstrap admin's)."""
    if body.name == BOOTSTRAP_NAME or any(r.active and r.name == body.name for r in await every(bus)):
        raise TokenExists(f"{TokenExists.default_msg} {body.name}")
    token_id, secret, token = mint()
    record = TokenRecord(
        id=token_id,
        name=body.name,
        role=body.role,
        areas=clean_areas(body.areas),
        digest=digest(secret),
        created_at=timefmt.now(),
        created_by=caller.name,
    )
    await bus.store(subjects.TOKENS).create(token_id, record)
    return TokenCreated(**dict(view(record, settings.platform.timezone)), token=token)


async def find(bus: Bus, name_or_id: str) -> TokenRecord:
    """The token with that id, or the active one with that name."""
    if not name_or_id:
        raise texts.required("name")
    if _ID.fullmatch(name_or_id) and (record := await bus.store(subjects.TOKENS).get(name_or_id)):
        return record
    for record in await every(bus):
        if record.active and record.name == name_or_id:
            return record
    raise TokenNotFound(f"{TokenNotFound.default_msg} {name_or_id}")


async def revoke(
    bus: Bus, settings: ApiSettings, keyring: Keyring, name_or_id: str, *, caller: Principal
) -> TokenView:
    """Revoke a token: refused from the next call on (on every replica within the token cache time)."""
    record = await find(bus, name_or_id)
    now = timefmt.now()

    def revoked(current: TokenRecord | None) -> TokenRecord | None:
        if current is None or not current.active:
            return None
        return current.model_copy(update={"revoked_at": now, "revoked_by": caller.name})

    stored = await bus.store(subjects.TOKENS).mutate(record.id, revoked)
    keyring.forget(record.id)
    return view(stored or record, settings.platform.timezone)
