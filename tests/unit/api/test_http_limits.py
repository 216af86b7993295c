"""The HTTP server's own limits (`HttpLimits`): a request head too long or too slow, against a real
uvicorn server on a local socket with an app that answers `{}` (after `/slow`, a pause)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from tests.support.waiting import eventually
from tingyu.api.limits import HttpLimits

HEAD_TIMEOUT_S = 0.5
MAX_HEAD = 192 * 1024  # as the API: its URL limit (128 KiB) and 64 KiB


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    if scope["path"] == "/slow":
        await asyncio.sleep(HEAD_TIMEOUT_S * 3)
    body = str(size).encode() if scope["path"] != "/query" else scope["query_string"]
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]}
    )
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
async def port() -> AsyncIterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app, http=HttpLimits.configured(HEAD_TIMEOUT_S, MAX_HEAD), log_level="error", lifespan="off"
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))

    async def started() -> bool:
        return server.started

    await eventually(started, timeout=10, every=0.01)
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        await serving
        sock.close()


def request(path: str = "/", body: bytes = b"", extra: str = "") -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    return head.encode() + body


async def answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    lines = head.decode().split("\r\n")
    length = next(int(line.split(":")[1]) for line in lines if line.lower().startswith("content-length"))
    return int(lines[0].split()[1]), await reader.readexactly(length)


async def closed(reader: asyncio.StreamReader) -> bool:
    with contextlib.suppress(ConnectionError):
        return await asyncio.wait_for(reader.read(), HEAD_TIMEOUT_S * 4) == b""
    return True


@pytest.mark.parametrize(
    "piece", [b"X-More: " + b"a" * 500 + b"\r\n", b"a" * 500], ids=["headers", "one value"]
)
async def test_a_head_sent_in_pieces_is_cut_once_it_passes_the_limit(port: int, piece: bytes) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST / HTTP/1.1\r\nHost: t\r\nX-Long: ")
    sent = 0
    with contextlib.suppress(ConnectionError):
        while not reader.at_eof() and sent < 4 * MAX_HEAD:
            writer.write(piece)
            sent += len(piece)
            await writer.drain()
            await asyncio.sleep(0.005)
    # The server closes with bytes unread, so its 400 may be lost to the reset: what matters is the cut.
    assert sent < 2 * MAX_HEAD
    got = b""
    with contextlib.suppress(ConnectionError):
        got = await asyncio.wait_for(reader.read(), 5)
    assert got == b"" or got.startswith(b"HTTP/1.1 400 ")
    writer.close()


async def test_a_body_larger_than_the_head_limit_is_read_whole(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    body = b"x" * (MAX_HEAD * 50)
    writer.write(request(body=body))
    assert await answer(reader) == (200, str(len(body)).encode())
    writer.write(request(body=b"again"))  # the same connection takes the next request
    assert await answer(reader) == (200, b"5")
    writer.close()


async def test_a_url_longer_than_httptools_parses_reaches_the_app_whole(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    query = b"name=" + b",".join([b"a%2Cb"] * 20_000)  # 120 KB: the API's URL limit is 128 KiB
    writer.write(b"GET /query?" + query + b" HTTP/1.1\r\nHost: t\r\n" + b"X: y\r\n" * 10 + b"\r\n")
    assert await answer(reader) == (200, query)
    writer.close()


async def test_a_head_not_whole_in_time_closes_the_connection(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST / HTTP/1.1\r\nHost: t\r\n")  # and never the rest
    assert await closed(reader)
    writer.close()


async def test_a_request_answered_after_the_head_timeout_keeps_its_connection(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request("/slow") + request(body=b"pipelined"))
    assert await answer(reader) == (200, b"0")
    assert await answer(reader) == (200, b"9")
    writer.close()
