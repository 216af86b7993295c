"""The liveness and readiness answers."""

from __future__ import annotations

from pydantic import BaseModel


class Health(BaseModel):
    nats: bool


class Ready(BaseModel):
    """Every dependency `/readyz` checks, all true (otherwise it answers 503 TY0010 naming them)."""

    nats: bool
    jetstream: bool
