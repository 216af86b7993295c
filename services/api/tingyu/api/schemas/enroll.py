"""A machine's enrollment: what the agent sends and the credential it gets back."""

from __future__ import annotations

from pydantic import BaseModel, Field


class EnrollBody(BaseModel):
    """The agent's request: its enrollment token, its uuid and the public half of its own nkey."""

    token: str = Field(min_length=1, max_length=256)
    uuid: str = Field(min_length=1, max_length=64)
    publicKey: str = Field(min_length=1, max_length=64, description="the machine's user nkey (U…)")


class EnrollView(BaseModel):
    """The machine's NATS user JWT (signed by the account) and what its token presets."""

    uuid: str
    jwt: str
    area: str = ""
    operator: str = ""
