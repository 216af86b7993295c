"""The request-limits middleware on its own: what it answers, and how much of a body it reads."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.types import Message, Receive, Scope, Send

from tingyu.api.config import ApiSettings
from tingyu.api.limits import RequestLimits

SETTINGS = ApiSettings(max_body_bytes=1000, drain_bytes=3000, body_idle_timeout_s=0.2)


def scope(path: str = "/tingyu/container/create", query: bytes = b"", length: int | None = None) -> Scope:
    headers = [(b"content-length", str(length).encode())] if length is not None else []
    return {
        "type": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "headers": headers,
    }


class Client:
    """Sends body chunks when asked, then waits (a client that stalls); records what it was sent back."""

    def __init__(self, chunks: list[bytes], stall: bool = False) -> None:
        self.chunks = chunks
        self.stall = stall
        self.read = 0
        self.answer: list[Message] = []

    async def receive(self) -> Message:
        if not self.chunks:
            await asyncio.sleep(3600 if self.stall else 0)
            return {"type": "http.disconnect"}
        chunk = self.chunks.pop(0)
        self.read += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": bool(self.chunks) or self.stall}

    async def send(self, message: Message) -> None:
        self.answer.append(message)

    def envelope(self) -> tuple[int, dict[str, Any]]:
        body = b"".join(m.get("body", b"") for m in self.answer if m["type"] == "http.response.body")
        return self.answer[0]["status"], json.loads(body)


async def app_seeing(seen: list[bytes], settings: ApiSettings = SETTINGS) -> RequestLimits:
    async def app(_: Scope, receive: Receive, send: Send) -> None:
        seen.append((await receive())["body"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    return RequestLimits(app, settings)


async def test_a_body_under_the_limit_reaches_the_app_whole() -> None:
    seen: list[bytes] = []
    client = Client([b"a" * 400, b"b" * 400])
    await (await app_seeing(seen))(scope(), client.receive, client.send)
    assert seen == [b"a" * 400 + b"b" * 400]


async def test_a_body_over_the_limit_is_answered_and_drained_up_to_a_bound() -> None:
    seen: list[bytes] = []
    client = Client([b"a" * 500] * 100)  # 50,000 bytes
    await (await app_seeing(seen))(scope(), client.receive, client.send)
    status, envelope = client.envelope()
    assert (status, envelope["code"]) == (413, "TY0006")
    assert seen == []  # the app never saw it
    assert 1000 < client.read <= 1000 + 500 + 3000 + 500  # the limit, one chunk, the drain bound
    assert client.answer[1]["more_body"] is True  # the envelope went out before the drain


async def test_a_declared_length_over_the_limit_is_answered_before_reading() -> None:
    client = Client([b"a" * 500] * 10)
    await (await app_seeing([]))(scope(length=10**9), client.receive, client.send)
    assert client.envelope()[1]["code"] == "TY0006"
    assert client.read <= 3000 + 500


async def test_a_stalled_body_times_out() -> None:
    client = Client([b"a" * 10], stall=True)
    await asyncio.wait_for((await app_seeing([]))(scope(), client.receive, client.send), 5)
    status, envelope = client.envelope()
    assert (status, envelope["code"]) == (408, "TY0007")


async def test_url_and_query_value_limits() -> None:
    small = await app_seeing([], ApiSettings(max_url_bytes=100, max_query_value_bytes=20))
    for query in (b"name=" + b"a" * 200, b"jobid=" + b"a" * 30):
        client = Client([b""])
        await small(scope(path="/tingyu/task/status", query=query), client.receive, client.send)
        assert client.envelope()[1]["code"] == "TY0006"
