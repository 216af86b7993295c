"""Container logs for the platform: `ty.agent.<uuid>.req.logs` (docs/remote.md).

A plain request answers the last lines (stdout and stderr as Docker interleaved them), bounded by
lines and bytes. A followed one answers once (so that the asker knows the container exists), then
sends new lines as `LogFrame` requests to the asker's inbox: each frame waits for its ack, so a
slow reader slows the stream down, and a reader that left (no responder, no ack) stops it at once.
It also ends when the container stops or the maximum duration passes, with a last frame that says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Iterator
from typing import Any

import nats.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from tingyu.agent.docker_runtime import DockerRuntime
from tingyu.agent.runtime import RuntimeContainer, RuntimeFailure
from tingyu.common import subjects
from tingyu.common.bus import Bus
from tingyu.common.bus.responders import answer, fitted
from tingyu.common.errors import DeploymentNotFound, RemoteCommandFailed
from tingyu.common.models.remote import LogFrame, LogsReply, LogsRequest

log = logging.getLogger(__name__)

FRAME_LINES = 200  # lines per frame at most
FRAME_WAIT_S = 0.25  # a frame goes out after this long even when it is not full
ACK_TIMEOUT_S = 15.0  # a follower that does not ack a frame within this is taken as gone
_END = object()


def bounded(lines: list[str], max_lines: int, max_bytes: int) -> tuple[list[str], bool]:
    """The newest lines that fit both limits, oldest first; True when older ones were dropped."""
    kept: list[str] = []
    size = 0
    for line in reversed(lines[-max_lines:] if max_lines > 0 else []):
        size += len(line.encode()) + 1
        if size > max_bytes:
            break
        kept.append(line)
    kept.reverse()
    return kept, len(kept) < len(lines)


def split_lines(data: bytes) -> list[str]:
    text = data.decode(errors="replace")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]


async def container_named(runtime: DockerRuntime, node_uuid: str, name: str) -> RuntimeContainer:
    """This machine's deployment container `name`; the contract's not-found refusal otherwise."""
    for container in await runtime.list_node(node_uuid):
        if container.name == name:
            return container
    raise DeploymentNotFound(f'deployments.apps "{name}" not found')


class LogServer:
    """Answers `ty.agent.<uuid>.req.logs` for one machine."""

    def __init__(
        self,
        bus: Bus,
        runtime: DockerRuntime,
        node_uuid: str,
        *,
        max_lines: int,
        max_bytes: int,
        follow_max_s: float,
    ) -> None:
        self.bus = bus
        self.runtime = runtime
        self.node_uuid = node_uuid
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self.follow_max_s = follow_max_s
        self.sub: Subscription | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        subject = subjects.agent_request(self.node_uuid, "logs")
        self.sub = await self.bus.nc.subscribe(subject, cb=self._on_request)

    async def close(self) -> None:
        if self.sub is not None:
            with contextlib.suppress(Exception):
                await self.sub.unsubscribe()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _on_request(self, msg: Msg) -> None:
        task = asyncio.create_task(self._serve(msg))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _serve(self, msg: Msg) -> None:
        try:
            request = LogsRequest.from_bytes(msg.data)
        except ValueError:
            request = None
        follow = request is not None and request.follow and bool(msg.reply)
        reply = await answer(msg.data, LogsRequest, self.follow_check if follow else self.read)
        if msg.reply:
            with contextlib.suppress(Exception):
                await msg.respond(fitted(self.bus, msg.reply, reply))
        answered = isinstance(reply, bytes)  # an error is a Reply, a success its bytes
        if follow and answered and request is not None:
            await self.follow(request, msg.reply)

    async def read(self, request: LogsRequest) -> LogsReply:
        """The last lines, within this machine's limits."""
        container = await container_named(self.runtime, self.node_uuid, request.name)
        tail = min(max(request.tail, 0), self.max_lines)
        options: dict[str, Any] = {"stdout": True, "stderr": True, "timestamps": request.timestamps}
        options["tail"] = tail
        if request.since > 0:
            options["since"] = request.since
        try:
            data = await self.runtime.call(self.runtime.client.api.logs, container.id, **options)
        except RuntimeFailure as exc:
            raise RemoteCommandFailed(detail=f"docker logs of {request.name}: {exc}") from exc
        lines, truncated = bounded(split_lines(data), tail, self.max_bytes)
        return LogsReply(name=request.name, lines=lines, truncated=truncated)

    async def follow_check(self, request: LogsRequest) -> LogsReply:
        await container_named(self.runtime, self.node_uuid, request.name)
        return LogsReply(name=request.name)

    async def follow(self, request: LogsRequest, inbox: str) -> None:
        """Send new lines to `inbox` until the follower leaves, the container stops or time is up."""
        limit = min(request.max_s, self.follow_max_s) if request.max_s > 0 else self.follow_max_s
        deadline = asyncio.get_running_loop().time() + limit
        container = await container_named(self.runtime, self.node_uuid, request.name)
        lines: queue.Queue[object] = queue.Queue(maxsize=FRAME_LINES * 8)
        closed = threading.Event()
        options: dict[str, Any] = {"stdout": True, "stderr": True, "timestamps": request.timestamps}
        options.update(stream=True, follow=True, tail=min(max(request.tail, 0), self.max_lines))
        if request.since > 0:
            options["since"] = request.since
        stream = await self.runtime.call(self.runtime.client.api.logs, container.id, **options)
        reader = threading.Thread(target=_read_stream, args=(stream, lines, closed), daemon=True)
        reader.start()
        reason = ""
        try:
            while not reason:
                batch, ended = await asyncio.to_thread(_take, lines, FRAME_WAIT_S, FRAME_LINES)
                if ended:
                    reason = f"container {request.name} stopped"
                elif asyncio.get_running_loop().time() >= deadline:
                    reason = f"the follow reached its maximum of {limit:g}s"
                if batch and not await self._send(inbox, LogFrame(lines=batch)):
                    return  # the follower left
            await self._send(inbox, LogFrame(end=True, reason=reason))
        finally:
            closed.set()
            with contextlib.suppress(Exception):
                stream.close()
            await asyncio.to_thread(reader.join, 5.0)

    async def _send(self, inbox: str, frame: LogFrame) -> bool:
        """Send one frame and wait for its ack; False when the follower is gone."""
        try:
            await self.bus.nc.request(inbox, frame.to_bytes(), timeout=ACK_TIMEOUT_S)
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError, TimeoutError):
            return False
        return True


def _read_stream(stream: Iterator[bytes], lines: queue.Queue[object], closed: threading.Event) -> None:
    """Docker's chunks as lines into `lines` (waiting while it is full), then the end marker."""
    rest = b""
    try:
        for chunk in stream:
            rest += chunk
            *complete, rest = rest.split(b"\n")
            for line in complete:
                if not _put(lines, line.decode(errors="replace").rstrip("\r"), closed):
                    return
    except Exception as exc:
        if not closed.is_set():
            log.debug("log stream ended: %s", exc)
    if rest:
        _put(lines, rest.decode(errors="replace"), closed)
    _put(lines, _END, closed)


def _put(lines: queue.Queue[object], item: object, closed: threading.Event) -> bool:
    while not closed.is_set():
        try:
            lines.put(item, timeout=0.5)
            return True
        except queue.Full:
            continue
    return False


def _take(lines: queue.Queue[object], wait_s: float, most: int) -> tuple[list[str], bool]:
    """Up to `most` lines: waits `wait_s` for the first, takes what else is there; True at the end."""
    batch: list[str] = []
    try:
        item = lines.get(timeout=wait_s)
        while True:
            if item is _END:
                return batch, True
            batch.append(str(item))
            if len(batch) >= most:
                return batch, False
            item = lines.get_nowait()
    except queue.Empty:
        return batch, False
