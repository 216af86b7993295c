"""API tokens: what an admin sends to create one and what the token routes answer."""

from __future__ import annotations

from pydantic import BaseModel, Field

from tingyu.api.envelope import Absent
from tingyu.common.models.tokens import Role


class TokenCreate(BaseModel):
    """A new token: its name (unique among active tokens), role and optionally the only areas it acts on."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    role: Role
    areas: list[str] = Field(default_factory=list, max_length=100, description="Empty: every area")


class TokenView(BaseModel):
    """One token, never its secret."""

    id: str
    name: str
    role: Role
    areas: list[str]
    createtime: str
    createdby: str
    revoked: bool
    revoketime: str | Absent = None
    revokedby: str | Absent = None


class TokenCreated(TokenView):
    """A token just made; `token` is shown this once and cannot be read again."""

    token: str = Field(description="Send it as `Authorization: Bearer <token>`")
