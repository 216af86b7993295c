"""Dead letters: messages a consumer gave up on, parked with the reason for inspection and replay."""

from __future__ import annotations

from pydantic import Field

from tingyu.common.models.base import Message


class DeadLetter(Message):
    """Stream `TY_DEAD`, subject `ty.dead.<durable>`: one message a consumer could not handle."""

    durable: str
    stream: str
    subject: str
    stream_seq: int = 0
    deliveries: int = 0
    reason: str
    headers: dict[str, str] = Field(default_factory=dict)
    data_b64: str = ""  # the message's bytes, base64 (cut at `truncated`)
    truncated: bool = False
    dead_at: float
