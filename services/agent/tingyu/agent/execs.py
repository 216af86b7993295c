"""Commands in this machine's containers for the platform: `ty.agent.<uuid>.req.exec` (docs/remote.md).

Docker's exec API (`exec_create`, `exec_start(socket=True)`, `exec_resize`, `exec_inspect`) does the
work. A non-interactive command answers its output (bounded) and exit code. An interactive session
answers `ExecStarted`, then reads keystrokes, resizes and keep-alives on
`ty.agent.<uuid>.req.exec.<session>` and sends output to the asker's inbox, ending with the exit code.
A session ends when its command exits, when the asker closes it or stops keeping it alive, or after
`idle_s` without input or output; a command still running then is killed with its process group
(Docker has no exec kill: the agent signals the host process id that `exec_inspect` names, which it
can when it shares the host's process namespace, as its units and `make up` run it). At most
`max_sessions` commands run at once on the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from tingyu.agent.docker_runtime import DockerRuntime
from tingyu.agent.logs import container_named
from tingyu.agent.runtime import RuntimeFailure
from tingyu.common import subjects
from tingyu.common.bus import Bus
from tingyu.common.bus.responders import Responder, serve
from tingyu.common.errors import ContainerNotRunning, RemoteCommandFailed, TooManySessions
from tingyu.common.models.base import Message
from tingyu.common.models.remote import (
    ExecInput,
    ExecOutput,
    ExecReply,
    ExecRequest,
    ExecStarted,
    b64,
    unb64,
)

log = logging.getLogger(__name__)

CHUNK = 16 * 1024  # bytes of output per message
ASKER_GONE_S = 30.0  # an asker sends a keep-alive every 10 s; silence this long ends its session


class ExecServer:
    """Answers `ty.agent.<uuid>.req.exec` for one machine."""

    def __init__(
        self,
        bus: Bus,
        runtime: DockerRuntime,
        node_uuid: str,
        *,
        max_sessions: int,
        idle_s: float,
        timeout_s: float,
        max_output_bytes: int,
    ) -> None:
        self.bus = bus
        self.runtime = runtime
        self.node_uuid = node_uuid
        self.max_sessions = max(max_sessions, 1)
        self.idle_s = idle_s
        self.timeout_s = timeout_s
        self.max_output_bytes = max_output_bytes
        self.running = 0
        self.sessions: dict[str, Session] = {}
        self.responder: Responder[ExecRequest] | None = None

    async def start(self) -> None:
        subject = subjects.agent_request(self.node_uuid, "exec")
        self.responder = await serve(self.bus, subject, ExecRequest, self.handle)

    async def close(self) -> None:
        if self.responder is not None:
            await self.responder.close()
        for session in list(self.sessions.values()):
            await session.end("the agent is stopping")

    async def handle(self, request: ExecRequest) -> Message:
        if not request.cmd:
            raise RemoteCommandFailed(detail="cmd is empty")
        container = await container_named(self.runtime, self.node_uuid, request.name)
        if container.status != "running":
            raise ContainerNotRunning(
                f"容器未运行: {request.name}",
                detail=f"container {request.name} is not running (it is {container.status})",
            )
        if self.running >= self.max_sessions:
            raise TooManySessions(
                detail=f"machine {self.node_uuid} already runs {self.running} commands "
                f"(at most {self.max_sessions})"
            )
        self.running += 1
        kept = False  # an open session keeps its slot until it ends (`forget`)
        try:
            exec_id = await self._create(container.id, request)
            if request.interactive:
                started = await self._open(exec_id, request)
                kept = True
                return started
            return await self._run(exec_id, request)
        finally:
            if not kept:
                self.running -= 1

    async def _create(self, container_id: str, request: ExecRequest) -> str:
        api = self.runtime.client.api
        try:
            created = await self.runtime.call(
                api.exec_create,
                container_id,
                request.cmd,
                stdout=True,
                stderr=True,
                stdin=request.interactive,
                tty=request.tty,
            )
        except RuntimeFailure as exc:
            raise RemoteCommandFailed(detail=f"exec in {request.name}: {exc}") from exc
        return str(created["Id"])

    async def _run(self, exec_id: str, request: ExecRequest) -> ExecReply:
        """Run to the end (or the time limit) and answer the output and exit code."""
        limit = min(request.timeout_s, self.timeout_s) if request.timeout_s > 0 else self.timeout_s
        raw = await self._attach(exec_id, request)
        try:
            output, truncated, finished = await asyncio.to_thread(
                _collect, raw, request.tty, self.max_output_bytes, time.monotonic() + limit
            )
        finally:
            raw.close()
        if not finished:
            await self.kill(exec_id)
            raise RemoteCommandFailed(detail=f"the command did not finish within {limit:g}s")
        code = await self.exit_code(exec_id)
        return ExecReply(
            name=request.name,
            exit_code=code if code is not None else -1,
            output=output.decode(errors="replace"),
            truncated=truncated,
        )

    async def _attach(self, exec_id: str, request: ExecRequest) -> socket.socket:
        """The exec's connection as a plain socket of our own (a duplicate of docker-py's)."""
        api = self.runtime.client.api
        try:
            hijacked: Any = await self.runtime.call(api.exec_start, exec_id, socket=True, tty=request.tty)
        except RuntimeFailure as exc:
            raise RemoteCommandFailed(detail=f"exec in {request.name}: {exc}") from exc
        try:
            raw = socket.socket(fileno=os.dup(hijacked.fileno()))
        finally:
            hijacked.close()
        raw.setblocking(True)  # the descriptor came non-blocking from docker-py's own timeout
        return raw

    async def exit_code(self, exec_id: str) -> int | None:
        for _ in range(50):  # the exit code lands a moment after the output ends
            state = await self.runtime.call(self.runtime.client.api.exec_inspect, exec_id)
            if not state.get("Running"):
                code = state.get("ExitCode")
                return int(code) if code is not None else None
            await asyncio.sleep(0.1)
        return None

    async def _open(self, exec_id: str, request: ExecRequest) -> ExecStarted:
        if not request.session or not request.inbox:
            raise RemoteCommandFailed(detail="an interactive exec needs a session id and an inbox")
        raw = await self._attach(exec_id, request)
        session = Session(self, exec_id, request, raw)
        self.sessions[request.session] = session
        await session.start()
        log.info("exec session %s in %s: %s", request.session, request.name, request.cmd)
        return ExecStarted(session=request.session)

    async def kill(self, exec_id: str) -> None:
        """SIGKILL a command that is still running, and its process group."""
        with contextlib.suppress(RuntimeFailure):
            state = await self.runtime.call(self.runtime.client.api.exec_inspect, exec_id)
            pid = int(state.get("Pid") or 0)
            if state.get("Running") and pid > 1:
                kill_tree(pid)

    def forget(self, session: Session) -> None:
        if self.sessions.pop(session.request.session, None) is not None:
            self.running -= 1


class Session:
    """One interactive command: its socket, its input subscription, its output pump and its watchdog."""

    def __init__(self, server: ExecServer, exec_id: str, request: ExecRequest, raw: socket.socket) -> None:
        self.server = server
        self.exec_id = exec_id
        self.request = request
        self.raw = raw
        self.bus = server.bus
        self.active = time.monotonic()  # last input or output
        self.heard = time.monotonic()  # last message of any kind from the asker
        self.sub: Subscription | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.ended = False
        self.reason = ""

    async def start(self) -> None:
        subject = subjects.agent_exec_input(self.server.node_uuid, self.request.session)
        self.sub = await self.bus.nc.subscribe(subject, cb=self._on_input)
        if self.request.cols > 0 and self.request.rows > 0:
            await self._resize(self.request.cols, self.request.rows)
        self.tasks = [asyncio.create_task(self._pump()), asyncio.create_task(self._watch())]

    async def _on_input(self, msg: Msg) -> None:
        self.heard = time.monotonic()
        try:
            message = ExecInput.from_bytes(msg.data)
        except ValueError:
            return
        if message.close:
            await self.end("closed by the client")
            return
        if message.cols > 0 and message.rows > 0:
            await self._resize(message.cols, message.rows)
        if message.data:
            self.active = time.monotonic()
            with contextlib.suppress(OSError):
                await asyncio.to_thread(self.raw.sendall, unb64(message.data))
        if message.eof:
            with contextlib.suppress(OSError):
                self.raw.shutdown(socket.SHUT_WR)  # the command reads the end of its input

    async def _resize(self, cols: int, rows: int) -> None:
        if not self.request.tty:
            return
        with contextlib.suppress(RuntimeFailure):
            await self.server.runtime.call(
                self.server.runtime.client.api.exec_resize, self.exec_id, height=rows, width=cols
            )

    async def _pump(self) -> None:
        """Output to the asker until the command's end; then its exit code."""
        loop = asyncio.get_running_loop()
        chunks: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=64)

        def read() -> None:
            try:
                for chunk in _frames(self.raw, self.request.tty, None):
                    asyncio.run_coroutine_threadsafe(chunks.put(chunk), loop).result()
            except Exception as exc:
                log.warning("exec session %s: output ended: %r", self.request.session, exc)
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(chunks.put(None), loop).result(5.0)

        reader = threading.Thread(target=read, daemon=True, name=f"exec-{self.request.session}")
        reader.start()
        while (chunk := await chunks.get()) is not None:
            self.active = time.monotonic()
            await self._send(ExecOutput(data=b64(chunk)))
        if self.reason:  # ended from this side: the command may still run with nobody to read it
            await self.server.kill(self.exec_id)
        code = None if self.reason else await self.server.exit_code(self.exec_id)
        await self._send(ExecOutput(end=True, exit_code=code, reason=self.reason))
        await self._finish()

    async def _watch(self) -> None:
        while not self.ended:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            if now - self.active > self.server.idle_s:
                await self.end(f"idle for more than {self.server.idle_s:g}s")
            elif now - self.heard > ASKER_GONE_S:
                await self.end("the client went away")

    async def end(self, reason: str) -> None:
        """Close the command's connection: the pump then sends the last message with this reason."""
        if self.ended or self.reason:
            return
        self.reason = reason
        log.info("exec session %s ended: %s", self.request.session, reason)
        with contextlib.suppress(OSError):
            self.raw.shutdown(socket.SHUT_RDWR)

    async def _send(self, message: ExecOutput) -> None:
        with contextlib.suppress(Exception):
            await self.bus.emit(self.request.inbox, message)

    async def _finish(self) -> None:
        self.ended = True
        if self.sub is not None:
            with contextlib.suppress(Exception):
                await self.sub.unsubscribe()
        with contextlib.suppress(OSError):
            self.raw.close()
        self.server.forget(self)


def kill_tree(pid: int) -> None:
    """SIGKILL `pid` and, when it leads one, its process group; quiet when it is gone or not ours."""
    with contextlib.suppress(OSError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)


def _frames(raw: socket.socket, tty: bool, deadline: float | None) -> Iterator[bytes]:
    """The command's output as it comes: raw with a TTY, else out of Docker's 8-byte-header frames."""
    buffer = b""
    while True:
        if deadline is not None:
            raw.settimeout(max(deadline - time.monotonic(), 0.001))
        chunk = raw.recv(CHUNK)
        if not chunk:
            return
        if tty:
            yield chunk
            continue
        buffer += chunk
        while len(buffer) >= 8:
            (size,) = struct.unpack(">L", buffer[4:8])
            if len(buffer) < 8 + size:
                break
            yield buffer[8 : 8 + size]
            buffer = buffer[8 + size :]


def _collect(raw: socket.socket, tty: bool, max_bytes: int, deadline: float) -> tuple[bytes, bool, bool]:
    """(output, truncated, finished): all output up to `max_bytes` (the rest is read and dropped)."""
    output = bytearray()
    truncated = False
    try:
        for chunk in _frames(raw, tty, deadline):
            room = max_bytes - len(output)
            if len(chunk) > room:
                truncated = True
            output += chunk[: max(room, 0)]
    except TimeoutError:
        return bytes(output), truncated, False
    return bytes(output), truncated, True
