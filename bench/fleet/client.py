"""The fleet benchmark's API calls, made from a process of their own with a minimal HTTP client.

The benchmark's main process follows every heartbeat and every job write (10,000 messages a
second at 100,000 machines): a call timed from there waits for that process as well as for the
API. Here the calls are made by a process that does nothing else, one keep-alive connection per
concurrent caller (`RawHttp`: httpx spends more CPU per request than the API does), and times are
taken on the system's monotonic clock, which the main process's job probe shares.
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bench.harness import RawHttp

PAGE = 500  # machines in one /node/list page


@dataclass
class Calls:
    """What to ask (the process's argument: it is pickled)."""

    api_url: str
    headers: dict[str, str]
    uuids: list[str]
    image: str
    requests: int  # calls of each kind
    concurrency: int

    @property
    def root(self) -> str:
        """The API's path prefix (`/tingyu`)."""
        return urllib.parse.urlsplit(self.api_url).path


@dataclass
class Timed:
    """Latencies in ms by call, the accepted jobs (id -> `time.monotonic()` of the create), and the
    first refusal."""

    latencies: dict[str, list[float]] = field(
        default_factory=lambda: {"create": [], "node/get": [], "task/status": []}
    )
    accepted: dict[str, float] = field(default_factory=dict)
    refused: str = ""


@dataclass
class Listed:
    """One full `/node/list`: its machines, ms until its last byte arrived (the API's answer) and
    ms this process then took to parse it (a client's own cost, tens of megabytes at 100 000);
    then ms for one `PAGE`-machine page (None where the build has no paging: the whole fleet came)."""

    machines: int
    full_ms: float
    parse_ms: float
    page_ms: float | None


def create_body(uuid: str, ref: str) -> list[dict[str, Any]]:
    return [
        {
            "uuid": uuid,
            "image": ref,
            "imageversion": "1",
            "deploymentname": f"f{secrets.token_hex(6)}",
            "limitsmemory": 64,
        }
    ]


def _client(calls: Calls) -> RawHttp:
    url = urllib.parse.urlsplit(calls.api_url)
    return RawHttp(url.hostname or "127.0.0.1", url.port or 80, calls.headers)


def lists(calls: Calls) -> Listed:
    """One full `/node/list`, then one page of it."""
    return asyncio.run(_lists(calls))


async def _lists(calls: Calls) -> Listed:
    root = calls.root
    client = _client(calls)
    try:
        start = time.monotonic()
        _, body = await client.request("GET", f"{root}/node/list")
        received = time.monotonic()
    finally:
        await client.close()
    machines = len(json.loads(body)["data"])
    parsed = time.monotonic()
    # A connection of its own: parsing a whole fleet's answer can outlast the API's keep-alive.
    client = _client(calls)
    try:
        _, body = await client.request("GET", f"{root}/node/list?page=1&pageSize={PAGE}")
        page_ms = (time.monotonic() - parsed) * 1000
    finally:
        await client.close()
    data = json.loads(body).get("data")
    paged = isinstance(data, list) and len(data) <= PAGE < machines
    full_ms, parse_ms = (received - start) * 1000, (parsed - received) * 1000
    return Listed(machines, full_ms, parse_ms, round(page_ms, 1) if paged else None)


def run(calls: Calls) -> Timed:
    """Creates (mutating), then reads (node/get and task/status in turns), at `concurrency`."""
    return asyncio.run(_run(calls))


async def _run(calls: Calls) -> Timed:
    clients, root = [_client(calls) for _ in range(calls.concurrency)], calls.root
    timed = Timed()

    async def create(client: RawHttp, _: int) -> None:
        start = time.monotonic()
        body = json.dumps(create_body(random.choice(calls.uuids), calls.image)).encode()
        _, answer = await client.request("POST", f"{root}/container/create", body)
        timed.latencies["create"].append((time.monotonic() - start) * 1000)
        result = json.loads(answer)["data"][0]
        if result["code"] == 200:
            timed.accepted[result["jobid"]] = start
        elif not timed.refused:
            timed.refused = str(result)

    async def read(client: RawHttp, i: int) -> None:
        if i % 2:
            kind, query = "node/get", {"name": random.choice(calls.uuids).removeprefix("tingyu-")}
        else:
            kind, query = "task/status", {"jobid": random.choice(list(timed.accepted) or ["0" * 32])}
        start = time.monotonic()
        await client.request("GET", f"{root}/{kind}?{urllib.parse.urlencode(query)}")
        timed.latencies[kind].append((time.monotonic() - start) * 1000)

    async def phase(op: Callable[[RawHttp, int], Awaitable[None]]) -> None:
        queue = iter(range(calls.requests))

        async def caller(client: RawHttp) -> None:
            for i in queue:
                await op(client, i)

        await asyncio.gather(*(caller(client) for client in clients))

    try:
        await phase(create)
        await phase(read)
    finally:
        for client in clients:
            await client.close()
    return timed
