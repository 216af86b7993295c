"""Request/reply over core NATS with one reply envelope for every responder.

A responder's handler returns a model or raises a `TingyuError`; `Reply` carries either the
model's JSON or `{code, msg, detail}`. `call` gives the caller the model back, or raises the same
`TingyuError` class (by its TY code) that the responder raised, so the API turns any failed reply
into the contract envelope in one place (its error translator).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from pydantic import Field

from tingyu.common import metrics
from tingyu.common.bus.connection import Bus
from tingyu.common.errors import InternalError, PayloadTooLarge, TingyuError, Unavailable, error_of
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


Handler = Callable[[str, Req], Awaitable[Message]]  # told the subject the request came on


class Responder(Generic[Req]):
    """Answers one subject (in `queue`, shared by a service's replicas), each request in its own
    task, so a slow answer (a file copy, a long range query) never holds up the next request. The
    handler is given the subject the request came on (a wildcard's token may name the asker).
    At most `limit` are answered at once; with `expires_s`, a request that waited that long for
    its turn is dropped unanswered: its asker has stopped waiting (a busy replica then spends its
    time on requests still wanted, and the asker's retry finds it less busy). And a request that
    arrives while the oldest one waiting for its turn has waited half that long is answered
    `Unavailable` ("busy") at once instead of joining the queue: its asker learns within a round
    trip that a replica is there but busy, and backs off, instead of timing out (which it cannot
    tell from nobody serving the subject)."""

    def __init__(
        self,
        bus: Bus,
        subject: str,
        request: type[Req],
        handler: Handler[Req],
        *,
        queue: str = "",
        limit: int = 64,
        expires_s: float = 0.0,
    ) -> None:
        self.bus = bus
        self.subject = subject
        self.queue = queue
        self.request = request
        self.handler = handler
        self.slots = asyncio.Semaphore(limit)
        self.expires_s = expires_s  # 0: a request waits for its turn however long it takes
        # A series only where requests can expire: a machine (or a simulator of thousands) runs a
        # responder per subject of its own, and would keep a series at 0 for each.
        self.expired = metrics.RPC_EXPIRED.labels(subject) if expires_s else None
        self.busy = metrics.RPC_BUSY.labels(subject) if expires_s else None
        self.waiting: dict[object, float] = {}  # requests waiting for a slot -> arrival, oldest first
        self.answering: set[asyncio.Task[None]] = set()
        self.sub: Subscription | None = None

    async def start(self) -> Responder[Req]:
        self.sub = await self.bus.nc.subscribe(self.subject, queue=self.queue, cb=self._on_request)
        return self

    async def close(self) -> None:
        """Stop answering; answers in flight are cancelled (their askers time out or ask again)."""
        if self.sub is not None:
            with contextlib.suppress(Exception):
                await self.sub.unsubscribe()
        for task in self.answering:
            task.cancel()
        await asyncio.gather(*self.answering, return_exceptions=True)

    async def _on_request(self, msg: Msg) -> None:
        arrived = time.monotonic()
        if self.busy is not None and self._backlogged(arrived):
            self.busy.inc()
            detail = f"busy: requests waited over {self.expires_s / 2:g} s for their turn; ask again later"
            reply = Reply(ok=False, code=Unavailable.code, msg=Unavailable.default_msg, detail=detail)
            if msg.reply:
                with contextlib.suppress(Exception):
                    await msg.respond(reply.to_bytes())
            return
        task = asyncio.create_task(self._answer(msg, arrived))
        self.answering.add(task)
        task.add_done_callback(self.answering.discard)

    def _backlogged(self, now: float) -> bool:
        """The oldest request waiting for its turn has waited half of `expires_s` or more."""
        oldest = next(iter(self.waiting.values()), now)
        return now - oldest >= self.expires_s / 2

    async def _answer(self, msg: Msg, arrived: float) -> None:
        token = object()
        self.waiting[token] = arrived
        try:
            await self.slots.acquire()
        finally:
            del self.waiting[token]
        try:
            if self.expired is not None and time.monotonic() - arrived > self.expires_s:
                self.expired.inc()
                return
            reply = await answer(msg.data, self.request, functools.partial(self.handler, msg.subject))
        finally:
            self.slots.release()
        if msg.reply:
            with contextlib.suppress(Exception):  # the asker may have gone; its side says so
                await msg.respond(fitted(self.bus, msg.reply, reply))


def fitted(bus: Bus, inbox: str, reply: Reply | bytes) -> bytes:
    """The reply's bytes, or an error reply when they would not fit in one message (headers and
    protocol lines counted), so the asker hears why instead of timing out."""
    data = reply if isinstance(reply, bytes) else reply.to_bytes()
    try:
        bus.check(inbox, len(data))
    except PayloadTooLarge as exc:
        return Reply(ok=False, code=exc.code, msg=exc.msg, detail=exc.detail or "").to_bytes()
    return data


def ignoring_subject(handler: Callable[[Req], Awaitable[Message]]) -> Handler[Req]:
    """A handler of the request alone, as a responder calls it (with the subject first)."""

    async def handle(_: str, req: Req) -> Message:
        return await handler(req)

    return handle


async def serve(
    bus: Bus,
    subject: str,
    request: type[Req],
    handler: Callable[[Req], Awaitable[Message]],
    *,
    queue: str = "",
    limit: int = 64,
) -> Responder[Req]:
    """Answer `subject` until the returned responder is closed."""
    return await serve_by_subject(bus, subject, request, ignoring_subject(handler), queue=queue, limit=limit)


async def serve_by_subject(
    bus: Bus,
    subjects: str,
    request: type[Req],
    handler: Handler[Req],
    *,
    queue: str = "",
    limit: int = 64,
    expires_s: float = 0.0,
) -> Responder[Req]:
    """Answer every subject `subjects` (a wildcard) matches, the handler told which one each
    request came on (where a credential allows each asker its own subject alone)."""
    responder = Responder(bus, subjects, request, handler, queue=queue, limit=limit, expires_s=expires_s)
    return await responder.start()


async def answer(
    data: bytes, request: type[Req], handler: Callable[[Req], Awaitable[Message]]
) -> Reply | bytes:
    """The reply to one request: the handler's model (as `succeeded` encodes it), or the error it
    raised."""
    try:
        result = await handler(request.from_bytes(data))
    except TingyuError as exc:
        return Reply(ok=False, code=exc.code, msg=exc.msg, detail=exc.detail or "")
    except ValueError as exc:  # the request does not decode
        return Reply(ok=False, code=InternalError.code, msg=InternalError.default_msg, detail=str(exc)[:500])
    except Exception:
        log.exception("request on %s failed", request.__name__)
        return Reply(ok=False, code=InternalError.code, msg=InternalError.default_msg)
    return succeeded(result)


def succeeded(result: Message) -> bytes:
    """`Reply(data=result)` as bytes, the result encoded once (not dumped to a dict and encoded
    again with its envelope: a deployer answering a fleet's listings spent a tenth of its time so)."""
    return b'{"ok":true,"data":' + result.to_bytes() + b',"code":"","msg":"","detail":""}'


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
