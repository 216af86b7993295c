"""The liveness answer."""

from __future__ import annotations

from pydantic import BaseModel


class Health(BaseModel):
    nats: bool
