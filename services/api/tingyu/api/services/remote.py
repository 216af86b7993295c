"""Logs and exec on a container's machine, over the agent's own NATS connection (docs/remote.md).

The API finds the deployment's machine (the contract's not-found message for an unknown name,
`Node is not ready` for a NotReady machine) and asks its agent on `ty.agent.<uuid>.req.<verb>`.
Streams (followed logs, an interactive session) come back to the reply inbox of the request, the
only place a machine's credential lets it answer; every ack, keystroke and keep-alive sent to the
machine names that inbox again, which keeps it answerable for as long as the stream lasts
(`REPLY_TTL_S` in `common/auth/permissions.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
from collections.abc import AsyncIterator
from typing import Any

import nats.errors
from fastapi import WebSocket
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from starlette.websockets import WebSocketDisconnect

from tingyu.api import reads, texts
from tingyu.api.auth import Principal
from tingyu.api.config import ApiSettings
from tingyu.api.envelope import error_body
from tingyu.api.schemas.remote import ExecResult, LogLines
from tingyu.api.services.files import within
from tingyu.common import subjects, timefmt
from tingyu.common.bus import Bus, call
from tingyu.common.bus.responders import Reply
from tingyu.common.errors import (
    DeploymentNotFound,
    FollowEnded,
    NodeNotReady,
    TingyuError,
    Unavailable,
    error_of,
)
from tingyu.common.models.base import Message
from tingyu.common.models.containers import DesiredState
from tingyu.common.models.nodes import NodeStatus
from tingyu.common.models.remote import (
    ExecInput,
    ExecOutput,
    ExecReply,
    ExecRequest,
    ExecStarted,
    LogFrame,
    LogsReply,
    LogsRequest,
    b64,
    unb64,
)

KEEPALIVE_S = 10.0  # an open session tells its agent it is still there this often
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


async def machine_of(bus: Bus, name: str, caller: Principal) -> str:
    """The Ready machine the deployment `name` runs on, in the caller's areas (else 403 TY0071)."""
    if not name:
        raise texts.required("name")
    owner = await reads.claim(bus, name)
    desired = (await reads.desired(bus, owner.node_uuid)).containers.get(name) if owner else None
    if owner is None or desired is None or desired.state == DesiredState.ABSENT:
        raise DeploymentNotFound(texts.not_found(name))
    await within(bus, caller, owner.node_uuid, f"container {name}")
    node = await reads.find_node(bus, owner.node_uuid)
    if node is None or node.status != NodeStatus.READY:
        raise NodeNotReady(texts.not_ready(), detail=f"machine {owner.node_uuid} is NotReady")
    return owner.node_uuid


def silent(node_uuid: str) -> Unavailable:
    return Unavailable(detail=f"the agent of machine {node_uuid} is not answering")


async def ask(
    bus: Bus,
    node_uuid: str,
    verb: str,
    request: Message,
    *,
    inbox: str,
    answers: asyncio.Queue[Msg],
    timeout: float,
) -> Reply:
    """Send `request` with `inbox` (already subscribed, into `answers`) as its reply subject and
    wait for the first answer there; raises the agent's error, or `silent` without an agent."""
    data = request.to_bytes()
    subject = subjects.agent_request(node_uuid, verb)
    bus.check(subject, len(data))
    await bus.nc.publish(subject, data, reply=inbox)
    first = await asyncio.wait_for(answers.get(), timeout)
    if first.headers and first.headers.get("Status") == "503":
        raise silent(node_uuid)
    reply = Reply.from_bytes(first.data)
    if not reply.ok:
        raise error_of(reply.code, reply.msg, reply.detail or None)
    return reply


# --- logs ------------------------------------------------------------------------------------------


def parse_since(text: str, tz: str, now: float) -> float:
    """`since`: epoch seconds, `yyyy-MM-dd HH:mm:ss` (platform time zone) or a duration back from
    now (`90s`, `10m`, `2h`, `1d`); empty: no bound."""
    text = text.strip()
    if not text:
        return 0.0
    if match := _DURATION.match(text):
        return now - float(match.group(1)) * _UNITS[match.group(2)]
    with contextlib.suppress(ValueError):
        return float(text)
    try:
        return timefmt.from_wire(text, tz)
    except ValueError:
        raise texts.not_allowed(
            f"since '{text}' is not epoch seconds, yyyy-MM-dd HH:mm:ss or a duration such as 10m"
        ) from None


def check_tail(tail: int, settings: ApiSettings) -> int:
    if not 0 <= tail <= settings.logs_max_tail:
        raise texts.not_allowed(f"tail must be from 0 to {settings.logs_max_tail}, not {tail}")
    return tail


def follow_seconds(seconds: float, settings: ApiSettings) -> float:
    """How long a follow lasts: what was asked for, never over the configured maximum."""
    if seconds < 0 or seconds > settings.logs_follow_max_s:
        raise texts.not_allowed(f"seconds must be from 0 to {settings.logs_follow_max_s:g}, not {seconds:g}")
    return seconds or settings.logs_follow_max_s


async def lines(bus: Bus, settings: ApiSettings, request: LogsRequest, *, caller: Principal) -> LogLines:
    node_uuid = await machine_of(bus, request.name, caller)
    subject = subjects.agent_request(node_uuid, "logs")
    try:
        reply = await call(bus, subject, request, LogsReply, timeout=settings.bus_timeout_s)
    except nats.errors.NoRespondersError:
        raise silent(node_uuid) from None
    return LogLines(name=reply.name, lines=reply.lines, truncated=reply.truncated)


def sse(data: str, event: str = "") -> str:
    """One server-sent event (the text has no newline: log lines are split on them)."""
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {data}\n\n"


def end_event(exc: TingyuError) -> str:
    """The stream's last event: why it ended, as the contract's error envelope."""
    return sse(json.dumps(error_body(exc), ensure_ascii=False), "end")


class Follow:
    """A followed log stream: frames arrive on this process's inbox and are acked once yielded, so a
    slow client slows the machine down; leaving unsubscribes, which stops the machine's stream."""

    def __init__(self, bus: Bus, node_uuid: str, seconds: float) -> None:
        self.bus = bus
        self.node_uuid = node_uuid
        self.seconds = seconds
        self.inbox = bus.nc.new_inbox()
        self.frames: asyncio.Queue[Msg] = asyncio.Queue(maxsize=4)
        self.sub: Subscription | None = None

    async def open(self, request: LogsRequest, timeout: float) -> None:
        """Ask the agent; its first answer says whether the stream starts (or raises its error)."""
        self.sub = await self.bus.nc.subscribe(self.inbox, cb=self.frames.put)
        try:
            await ask(
                self.bus,
                self.node_uuid,
                "logs",
                request,
                inbox=self.inbox,
                answers=self.frames,
                timeout=timeout,
            )
        except BaseException:
            await self.close()
            raise

    async def events(self) -> AsyncIterator[str]:
        """Each line as an event, then an `end` event that says why the stream ended."""
        try:
            while True:
                try:
                    msg = await asyncio.wait_for(self.frames.get(), self.seconds + 30.0)
                except TimeoutError:
                    yield end_event(FollowEnded(detail=f"machine {self.node_uuid} stopped sending"))
                    return
                frame = LogFrame.from_bytes(msg.data)
                for line in frame.lines:
                    yield sse(line)
                if msg.reply:
                    # the ack that lets the next frame go; it names the inbox again (answerable)
                    await self.bus.nc.publish(msg.reply, b"", reply=self.inbox)
                if frame.end:
                    yield end_event(
                        FollowEnded(f"{FollowEnded.default_msg}: {frame.reason}", detail=frame.reason)
                    )
                    return
        finally:
            await self.close()

    async def close(self) -> None:
        if self.sub is not None:
            # shielded: a client that left cancels this stream, and the unsubscribe must still
            # happen (it is what stops the machine's side)
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.shield(self.sub.unsubscribe())
            self.sub = None


async def follow(bus: Bus, settings: ApiSettings, request: LogsRequest, *, caller: Principal) -> Follow:
    node_uuid = await machine_of(bus, request.name, caller)
    stream = Follow(bus, node_uuid, request.max_s)
    await stream.open(request, settings.bus_timeout_s)
    return stream


# --- exec ------------------------------------------------------------------------------------------


def command(cmd: list[str]) -> list[str]:
    cmd = [part for part in cmd if part != ""]
    if not cmd:
        raise texts.required("cmd")
    return cmd


async def run(
    bus: Bus, settings: ApiSettings, name: str, cmd: list[str], timeout: float, *, caller: Principal
) -> ExecResult:
    """Run a command to its end: its output and exit code."""
    cmd = command(cmd)
    node_uuid = await machine_of(bus, name, caller)
    limit = min(timeout, settings.exec_timeout_s) if timeout > 0 else settings.exec_timeout_s
    request = ExecRequest(name=name, cmd=cmd, timeout_s=limit)
    subject = subjects.agent_request(node_uuid, "exec")
    try:
        reply = await call(bus, subject, request, ExecReply, timeout=limit + settings.bus_timeout_s)
    except nats.errors.NoRespondersError:
        raise silent(node_uuid) from None
    return ExecResult(
        name=reply.name, exit_code=reply.exit_code, output=reply.output, truncated=reply.truncated
    )


class Session:
    """An interactive exec bridged between a WebSocket and the machine's agent."""

    def __init__(self, bus: Bus, node_uuid: str, idle_s: float) -> None:
        self.bus = bus
        self.node_uuid = node_uuid
        self.idle_s = idle_s
        self.id = secrets.token_hex(8)
        self.inbox = bus.nc.new_inbox()
        self.input = subjects.agent_exec_input(node_uuid, self.id)
        self.output: asyncio.Queue[Msg] = asyncio.Queue(maxsize=256)
        self.sub: Subscription | None = None

    async def open(self, request: ExecRequest, timeout: float) -> None:
        """Start the session: its `ExecStarted` and then its output come to this session's inbox."""
        self.sub = await self.bus.nc.subscribe(self.inbox, cb=self.output.put)
        request = request.model_copy(update={"session": self.id, "inbox": self.inbox, "interactive": True})
        try:
            answer = await ask(
                self.bus,
                self.node_uuid,
                "exec",
                request,
                inbox=self.inbox,
                answers=self.output,
                timeout=timeout,
            )
            ExecStarted.model_validate(answer.data)
        except BaseException:
            await self.close()
            raise

    async def send(self, message: ExecInput) -> None:
        """Input to the session; it names the output inbox again, which keeps it answerable."""
        with contextlib.suppress(Exception):
            await self.bus.emit(self.input, message, reply=self.inbox)

    async def bridge(self, websocket: WebSocket) -> None:
        """Client bytes to the command, its output back, then the exit code as the last message."""
        tasks = [
            asyncio.create_task(self._upstream(websocket)),
            asyncio.create_task(self._keepalive()),
        ]
        try:
            await self._downstream(websocket)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.close()

    async def _upstream(self, websocket: WebSocket) -> None:
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                if message.get("bytes"):
                    await self.send(ExecInput(data=b64(message["bytes"])))
                elif message.get("text"):
                    await self.send(control(message["text"]))
        except (WebSocketDisconnect, RuntimeError):
            pass
        await self.send(ExecInput(close=True))

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(KEEPALIVE_S)
            await self.send(ExecInput())

    async def _downstream(self, websocket: WebSocket) -> None:
        while True:
            try:
                msg = await asyncio.wait_for(self.output.get(), self.idle_s)
            except TimeoutError:
                await self.send(ExecInput(close=True))
                await _finish(websocket, None, f"nothing happened for {self.idle_s:g}s")
                return
            out = ExecOutput.from_bytes(msg.data)
            if out.data:
                await websocket.send_bytes(unb64(out.data))
            if out.end:
                await _finish(websocket, out.exit_code, out.reason)
                return

    async def close(self) -> None:
        if self.sub is not None:
            # shielded: a client that left cancels this stream, and the unsubscribe must still
            # happen (it is what stops the machine's side)
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.shield(self.sub.unsubscribe())
            self.sub = None


def control(text: str) -> ExecInput:
    """A text frame from the client: `{"resize": [cols, rows]}`, `{"eof": true}`, `{"close": true}`,
    or typed text."""
    try:
        parsed: Any = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        size = parsed.get("resize")
        if isinstance(size, list) and len(size) == 2 and all(isinstance(n, int) and n > 0 for n in size):
            return ExecInput(cols=size[0], rows=size[1])
        if parsed.get("eof") is True:
            return ExecInput(eof=True)
        if parsed.get("close") is True:
            return ExecInput(close=True)
    return ExecInput(data=b64(text.encode()))


async def _finish(websocket: WebSocket, exit_code: int | None, reason: str) -> None:
    data = {"exit_code": exit_code, "reason": reason}
    with contextlib.suppress(Exception):
        await websocket.send_json({"msg": "success", "code": 200, "data": data})
        await websocket.close()


async def session(
    bus: Bus,
    settings: ApiSettings,
    name: str,
    cmd: list[str],
    *,
    tty: bool,
    size: tuple[int, int],
    caller: Principal,
) -> Session:
    """An open interactive session (the agent has started the command)."""
    cmd = command(cmd)
    node_uuid = await machine_of(bus, name, caller)
    opened = Session(bus, node_uuid, settings.exec_idle_s)
    request = ExecRequest(name=name, cmd=cmd, tty=tty, cols=size[0], rows=size[1])
    await opened.open(request, settings.bus_timeout_s)
    return opened


async def refuse(websocket: WebSocket, exc: TingyuError) -> None:
    """An exec that cannot start: the error envelope as the only message, then close."""
    with contextlib.suppress(Exception):
        await websocket.send_json(error_body(exc))
        await websocket.close(code=1008)
