"""API credentials: keys with a role and optionally the areas they may act on."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from tingyu.common.models.base import Message


class Role(StrEnum):
    """What a token may do: `viewer` reads, `operator` reads and changes, `admin` also manages tokens
    and reads the audit."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    def allows(self, needed: Role) -> bool:
        """Whether this role includes everything `needed` may do."""
        return _RANK[self] >= _RANK[needed]


_RANK = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}


class TokenRecord(Message):
    """Bucket `ty_tokens`, key = token id: one API key. Only the sha256 of its secret is stored; a
    revoked key keeps its record (with `revoked_at`) so that the audit's names stay explained."""

    id: str
    name: str
    role: Role
    areas: list[str] = Field(default_factory=list)  # empty: every area
    digest: str  # sha256 of the secret, hex
    created_at: float
    created_by: str = ""
    revoked_at: float = 0.0
    revoked_by: str = ""

    @property
    def active(self) -> bool:
        return not self.revoked_at
