"""The registry token service's answer, in the form Docker's token specification gives it."""

from __future__ import annotations

from pydantic import BaseModel, Field


class RegistryToken(BaseModel):
    """A bearer token for the platform's registry and how long it is valid."""

    token: str = Field(description="an RS256 JWT the registry verifies against its rootcertbundle")
    access_token: str = Field(description="the same token (OAuth2 clients read this name)")
    expires_in: int = Field(description="seconds the token is valid")
    issued_at: str = Field(description="RFC 3339 time of issue")
