"""Request dependencies as `Annotated` aliases.

They are `async def` on purpose: FastAPI runs a plain `def` dependency in its thread pool, a
thread hop per request for what is only an attribute read.

The caller was authenticated by the gate (`gate.py`) before any route runs; these check what its
role and areas allow. Every route but the public ones reads `Caller` (its router declares it), and
a route that changes anything declares `Operator`, `FleetOperator` or `Admin`; a WebSocket route
declares `SessionOperator`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from tingyu.api.auth import Principal
from tingyu.api.config import ApiSettings, get_settings
from tingyu.common.bus import Bus
from tingyu.common.errors import Forbidden, Unauthenticated
from tingyu.common.models.tokens import Role

# Declares the scheme in OpenAPI; the gate has already checked the token.
BEARER = HTTPBearer(
    auto_error=False,
    scheme_name="token",
    description="An API token (`tingyu token create`) or the bootstrap admin token.",
)


async def get_bus(request: Request) -> Bus:
    bus: Bus = request.app.state.bus
    return bus


async def settings() -> ApiSettings:
    return get_settings()


async def authenticated(connection: HTTPConnection) -> Principal:
    """The caller the gate authenticated, on a request or on a WebSocket's upgrade."""
    principal: Principal | None = getattr(connection.state, "principal", None)
    if principal is None:  # only when the gate is not installed: refuse rather than guess
        raise Unauthenticated()
    return principal


async def caller(
    principal: Annotated[Principal, Depends(authenticated)],
    _: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)],
) -> Principal:
    """The authenticated caller (any role may read)."""
    return principal


def require(principal: Principal, role: Role) -> Principal:
    if not principal.allows(role):
        raise Forbidden(
            detail=f"token {principal.name!r} has role {principal.role.value}; this needs {role.value}"
        )
    return principal


async def operator(principal: Annotated[Principal, Depends(caller)]) -> Principal:
    """A caller that may change things (operator or admin)."""
    return require(principal, Role.OPERATOR)


async def fleet_operator(principal: Annotated[Principal, Depends(operator)]) -> Principal:
    """An operator of every area: images are shared by the whole fleet."""
    if principal.areas:
        raise Forbidden(
            detail=f"token {principal.name!r} is limited to areas {', '.join(sorted(principal.areas))}; "
            "this change affects every area"
        )
    return principal


async def session_operator(principal: Annotated[Principal, Depends(authenticated)]) -> Principal:
    """An operator on a WebSocket (FastAPI's bearer scheme reads only plain requests; the gate
    checked the upgrade's token the same way). A refusal answers the upgrade with HTTP 403."""
    return require(principal, Role.OPERATOR)


async def admin(principal: Annotated[Principal, Depends(caller)]) -> Principal:
    """A caller that manages tokens and reads the audit."""
    return require(principal, Role.ADMIN)


BusDep = Annotated[Bus, Depends(get_bus)]
SettingsDep = Annotated[ApiSettings, Depends(settings)]
Caller = Annotated[Principal, Depends(caller)]
Operator = Annotated[Principal, Depends(operator)]
FleetOperator = Annotated[Principal, Depends(fleet_operator)]
Admin = Annotated[Principal, Depends(admin)]
SessionOperator = Annotated[Principal, Depends(session_operator)]
