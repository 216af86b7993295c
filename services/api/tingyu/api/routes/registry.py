"""The platform registry's token service: public, because it takes HTTP Basic credentials itself."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from tingyu.api.envelope import RegistryErrorRoute
from tingyu.api.schemas.registry import RegistryToken
from tingyu.api.services.registry import RegistryTokens

router = APIRouter(prefix="/registry", tags=["registry"], route_class=RegistryErrorRoute)


@router.get(
    "/token",
    response_model=RegistryToken,
    responses={401: {"description": "unknown, wrong or revoked credential (the registry's error form)"}},
)
async def token(
    request: Request,
    service: Annotated[str, Query(max_length=256)] = "",
    scope: Annotated[list[str] | None, Query()] = None,
) -> RegistryToken:
    """A registry bearer token: the imager may pull, push and delete; a machine may only pull."""
    tokens: RegistryTokens = request.app.state.registry_tokens
    return await tokens.issue(request, service, scope or [])
