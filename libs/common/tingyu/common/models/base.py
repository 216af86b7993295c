"""Base model for everything that crosses NATS or lands in a bucket."""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict


class Message(BaseModel):
    """A model with compact JSON bytes in and out; unknown fields are kept for forward compatibility."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    def to_bytes(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        return cls.model_validate_json(data)
