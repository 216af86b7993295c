"""Request limits, enforced before anything is parsed: URL and query values, body bytes while they arrive.

`RequestLimits` is plain ASGI, so a body over its limit is refused as the bytes come in (a JSON body
is never buffered beyond `TINGYU_API_MAX_BODY_BYTES`), and every refusal is the contract's envelope.
Uploads (streamed to storage) are counted: at most `TINGYU_API_MAX_UPLOADS` are in flight, one more
is refused at once with TY0010, and a stalled one is cut by the body idle timeout like any body.
The HTTP server's own limits sit above these (`ApiSettings.max_head_bytes`), so its plain-text
errors are reserved for what is not HTTP at all. `HttpLimits` enforces that head limit and closes
a connection that has not sent a whole request head in time, which uvicorn itself never does.
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from tingyu.api.config import ApiSettings
from tingyu.api.envelope import error_body
from tingyu.common.errors import RequestTimeout, RequestTooLarge, TingyuError, Unavailable

MAX_PARSED_URL = 65535  # bytes of a URL httptools.parse_url takes

# Routes whose body is streamed to storage with their own size limit (TINGYU_API_MAX_UPLOAD_BYTES).
STREAMED = ("/image/uploadImage",)


def _mib(size: int) -> str:
    return f"{size / 1024**2:.1f} MiB" if size >= 1024**2 else f"{size} bytes"


class _Body:
    """How much of the request body has been read, and whether all of it."""

    def __init__(self, receive: Receive, idle_s: float) -> None:
        self.receive = receive
        self.idle_s = idle_s
        self.size = 0
        self.done = False
        self.gone = False

    async def next(self) -> Message:
        """The next body message; RequestTimeout when the client sends nothing for `idle_s`."""
        if self.done:
            return await self.receive()
        try:
            message = await asyncio.wait_for(self.receive(), self.idle_s)
        except TimeoutError:
            self.done = True
            raise RequestTimeout(
                detail=f"no body bytes for {self.idle_s:g}s (TINGYU_API_BODY_IDLE_TIMEOUT_S)"
            ) from None
        if message["type"] != "http.request":
            self.done = self.gone = True
        else:
            self.size += len(message.get("body", b""))
            self.done = not message.get("more_body", False)
        return message

    async def drain(self, limit: int) -> None:
        """Read and drop up to `limit` more bytes, so a client that sends before it reads sees the answer."""
        start = self.size
        while not self.done and self.size - start < limit:
            try:
                await self.next()
            except RequestTimeout:
                return


class RequestLimits:
    """URL length, query values and body bytes, each refused with an envelope before routing."""

    def __init__(self, app: ASGIApp, settings: ApiSettings) -> None:
        self.app = app
        self.settings = settings
        self.streamed = {settings.root_path + path for path in STREAMED}
        self.uploads = 0  # streamed requests in flight (bounded by TINGYU_API_MAX_UPLOADS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = _Body(receive, self.settings.body_idle_timeout_s)
        try:
            self._check_head(scope)
            if scope["path"] in self.streamed:
                self._check_declared(scope, self.settings.max_upload_bytes)
                self._take_upload_slot()
                try:
                    await self.app(scope, body.next, send)
                finally:
                    self.uploads -= 1
                return
            self._check_declared(scope, self.settings.max_body_bytes)
            content = await self._read(body, self.settings.max_body_bytes)
        except TingyuError as exc:
            if not body.gone:
                await self._refuse(exc, body, send)
            return
        if not body.gone:
            await self.app(scope, _replay(content, receive), send)

    def _check_head(self, scope: Scope) -> None:
        query: bytes = scope.get("query_string", b"")
        path: bytes = scope.get("raw_path") or scope["path"].encode()
        limit = self.settings.max_url_bytes
        if len(path) + len(query) > limit:
            size = _mib(len(path) + len(query))
            raise RequestTooLarge(detail=f"the URL is {size}, over {_mib(limit)} (TINGYU_API_MAX_URL_BYTES)")
        limit = self.settings.max_query_value_bytes
        for pair in query.split(b"&"):
            if len(pair) > limit:
                name = pair.partition(b"=")[0][:40].decode(errors="replace")
                raise RequestTooLarge(
                    detail=f"query parameter '{name}' is {_mib(len(pair))}, over {_mib(limit)} "
                    "(TINGYU_API_MAX_QUERY_VALUE_BYTES)"
                )

    def _take_upload_slot(self) -> None:
        """Count one more upload in flight, or refuse it at once: a full API never queues one."""
        limit = self.settings.max_uploads
        if self.uploads >= limit:
            raise Unavailable(
                detail=f"{limit} uploads are in flight in this API process (TINGYU_API_MAX_UPLOADS)"
            )
        self.uploads += 1

    @staticmethod
    def _check_declared(scope: Scope, limit: int) -> None:
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                raise RequestTooLarge(detail=f"the body is {_mib(int(value))}, over {_mib(limit)}")

    @staticmethod
    async def _read(body: _Body, limit: int) -> bytes:
        chunks: list[bytes] = []
        while not body.done:
            message = await body.next()
            if body.size > limit:
                raise RequestTooLarge(detail=f"the body is over {_mib(limit)} (TINGYU_API_MAX_BODY_BYTES)")
            chunks.append(message.get("body", b""))
        return b"".join(chunks)

    async def _refuse(self, exc: TingyuError, body: _Body, send: Send) -> None:
        """The envelope first, then up to `drain_bytes` of the rest of the body, then the end."""
        payload = json.dumps(error_body(exc), ensure_ascii=False).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": exc.http_status, "headers": headers})
        await send({"type": "http.response.body", "body": payload, "more_body": True})
        await body.drain(self.settings.drain_bytes)
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _replay(content: bytes, receive: Receive) -> Callable[[], Awaitable[Message]]:
    """The body read already, as one message; then the server's own receive (disconnects)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": content, "more_body": False}

    return replay


class HttpLimits(HttpToolsProtocol):
    """uvicorn's httptools protocol (a C parser: a fraction of h11's CPU per request), with the two
    limits uvicorn leaves to h11 or to nobody. As h11 did, a request head that has come to more than
    `max_head_bytes` and is still not whole is answered 400 and the connection closed (so a head
    held in memory is bounded by the limit plus one read); and a connection that has not sent a
    whole request head within `head_timeout_s` is closed."""

    head_timeout_s: ClassVar[float] = 30.0
    max_head_bytes: ClassVar[int] = 192 * 1024
    _head_timer: asyncio.TimerHandle | None = None
    _heads = 0  # request heads received whole on this connection
    _answered = 0  # responses completed on this connection
    _in_body = False  # between a request's head and the end of its body
    _head_bytes = 0  # bytes received of a head not yet whole

    @classmethod
    def configured(cls, head_timeout_s: float, max_head_bytes: int) -> type[HttpLimits]:
        limits = {"head_timeout_s": head_timeout_s, "max_head_bytes": max_head_bytes}
        return type("HttpLimits", (cls,), limits)

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        heads, in_body = self._heads, self._in_body
        super().data_received(data)
        if self._heads != heads or in_body or self._in_body or self.transport.is_closing():
            self._head_bytes = 0  # a read with any body in it holds at most one read of the next head
            return
        self._head_bytes += len(data)
        if self._head_bytes > self.max_head_bytes:
            self.send_400_response("Invalid HTTP request received.")

    def on_headers_complete(self) -> None:
        self._heads += 1
        self._in_body = True
        url = self.url
        if len(url) <= MAX_PARSED_URL:
            super().on_headers_complete()
            return
        # httptools parses a URL of at most 64 KiB; the API's own URL limit (TY0006) is above that,
        # so a longer one is split here. The request's task starts later, with the scope fixed.
        raw_path, _, query = url.partition(b"?")
        self.url = b"/"
        try:
            super().on_headers_complete()
        finally:
            self.url = url
        path = raw_path.decode("ascii")
        self.scope["path"] = self.root_path + (urllib.parse.unquote(path) if "%" in path else path)
        self.scope["raw_path"] = self.root_path.encode("ascii") + raw_path
        self.scope["query_string"] = query

    def on_message_complete(self) -> None:
        self._in_body = False
        super().on_message_complete()

    def on_response_complete(self) -> None:
        self._answered += 1
        super().on_response_complete()
        self._arm()

    def handle_websocket_upgrade(self) -> None:
        self._disarm()  # the connection is the WebSocket's from here
        super().handle_websocket_upgrade()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self.head_timeout_s, self._expired)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _expired(self) -> None:
        self._head_timer = None
        # Every head received was answered: the connection is still waiting for the next one whole.
        if self._heads == self._answered and not self.transport.is_closing():
            self.transport.close()
