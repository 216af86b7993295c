"""Machine enrollment: one-time tokens and the credential each enrolled machine holds."""

from __future__ import annotations

from pydantic import Field

from tingyu.common.models.base import Message


class EnrollToken(Message):
    """Bucket `ty_enroll`, key = `token.<sha256 of the token>`: what the token presets for the
    machine that uses it, until when and how many times it may be used."""

    area: str = ""
    operator: str = ""
    created_at: float
    expires_at: float
    uses_left: int = 1
    used_by: list[str] = Field(default_factory=list)


class MachineKey(Message):
    """Bucket `ty_enroll`, key = `machine.<uuid>`: the public nkey the machine enrolled with;
    `revoked_at` > 0 once `tingyu node revoke` cut it off."""

    node_uuid: str
    public_key: str
    enrolled_at: float
    revoked_at: float = 0.0


class EnrollRecord(Message):
    """One entry of `ty_enroll`: a token or a machine key (the key's prefix says which)."""

    token: EnrollToken | None = None
    machine: MachineKey | None = None
