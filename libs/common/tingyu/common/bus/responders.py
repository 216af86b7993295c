"""Request/reply over core NATS with one reply envelope for every responder.

A responder's handler returns a model or raises a `TingyuError`; `Reply` carries either the
model's JSON or `{code, msg, detail}`. `call` gives the caller the model back, or raises the same
`TingyuError` class (by its TY code) that the responder raised, so the API turns any failed reply
into the contract envelope in one place (its error translator).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from pydantic import Field

from tingyu.common.bus.connection import Bus
from tingyu.common.errors import InternalError, TingyuError, error_of
from tingyu.common.models.base import Message

log = logging.getLogger(__name__)

Req = TypeVar("Req", bound=Message)
Rep = TypeVar("Rep", bound=Message)


class Reply(Message):
    """Every responder's answer: `ok` with `data`, or a TY `code`, `msg` and `detail`."""

    ok: bool = True
    data: dict[str, Any] = Field(default_factory=dict)
    code: str = ""
    msg: str = ""
    detail: str = ""


async def serve(
    bus: Bus,
    subject: str,
    request: type[Req],
    handler: Callable[[Req], Awaitable[Message]],
    *,
    queue: str = "",
) -> Subscription:
    """Answer `subject` (in `queue`, shared by a service's replicas); the caller unsubscribes."""

    async def respond(msg: Msg) -> None:
        reply = await answer(msg.data, request, handler)
        if msg.reply:
            await msg.respond(reply.to_bytes())

    return await bus.nc.subscribe(subject, queue=queue, cb=respond)


async def answer(data: bytes, request: type[Req], handler: Callable[[Req], Awaitable[Message]]) -> Reply:
    """The reply to one request: the handler's model, or the error it raised."""
    try:
        result = await handler(request.from_bytes(data))
    except TingyuError as exc:
        return Reply(ok=False, code=exc.code, msg=exc.msg, detail=exc.detail or "")
    except ValueError as exc:  # the request does not decode
        return Reply(ok=False, code=InternalError.code, msg=InternalError.default_msg, detail=str(exc)[:500])
    except Exception:
        log.exception("request on %s failed", request.__name__)
        return Reply(ok=False, code=InternalError.code, msg=InternalError.default_msg)
    return Reply(data=result.model_dump(mode="json", by_alias=True))


async def call(bus: Bus, subject: str, request: Message, reply: type[Rep], timeout: float = 5.0) -> Rep:
    """Ask and wait: the answer as `reply`, or the responder's error raised here
    (`TimeoutError` / `nats.errors.NoRespondersError` when nobody answers)."""
    data = request.to_bytes()
    bus.check(subject, len(data))
    answer_msg = await bus.nc.request(subject, data, timeout=timeout)
    envelope = Reply.from_bytes(answer_msg.data)
    if not envelope.ok:
        raise error_of(envelope.code, envelope.msg, envelope.detail or None)
    return reply.model_validate(envelope.data)
