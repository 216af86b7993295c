"""File fetch requests: copy one file out of one of this machine's containers into `ty_files`.

The deployer asks over core NATS (request/reply) and owns the job; the agent only copies and
answers. A copy can take longer than a callback should block the subscription, so each request
runs in its own task; a second request for a job already being copied waits for that copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import logging
from typing import Any

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from tingyu.agent.runtime import FileTooLarge, Runtime, RuntimeFailure, RuntimeFile
from tingyu.common import subjects
from tingyu.common.bus import Bus
from tingyu.common.errors import FileFetchError, PayloadTooLarge
from tingyu.common.models.files import FileFetchCommand, FileFetchReply

log = logging.getLogger(__name__)


class FileFetcher:
    """Answers `ty.agent.<uuid>.req.file` for one machine."""

    def __init__(self, bus: Bus, runtime: Runtime, node_uuid: str, max_bytes: int, parallel: int = 2) -> None:
        self.bus = bus
        self.runtime = runtime
        self.node_uuid = node_uuid
        self.max_bytes = max_bytes
        self.slots = asyncio.Semaphore(max(parallel, 1))
        self.copies: dict[str, asyncio.Task[FileFetchReply]] = {}
        self.answering: set[asyncio.Task[None]] = set()
        self.sub: Subscription | None = None

    async def start(self) -> None:
        self.sub = await self.bus.nc.subscribe(
            subjects.agent_request(self.node_uuid, "file"), cb=self._on_request
        )

    async def close(self) -> None:
        """Stop answering; copies in flight are cancelled (the deployer asks again or fails the job)."""
        if self.sub is not None:
            with contextlib.suppress(Exception):
                await self.sub.unsubscribe()
        for task in [*self.copies.values(), *self.answering]:
            task.cancel()
        await asyncio.gather(*self.copies.values(), *self.answering, return_exceptions=True)

    async def _on_request(self, msg: Msg) -> None:
        task = asyncio.create_task(self._answer(msg))
        self.answering.add(task)
        task.add_done_callback(self.answering.discard)

    async def _answer(self, msg: Msg) -> None:
        try:
            command = FileFetchCommand.from_bytes(msg.data)
        except ValueError as exc:
            log.warning("undecodable file request ignored: %s", exc)
            return
        copy = self.copies.get(command.job_id)
        if copy is None:
            copy = asyncio.create_task(self.fetch(command))
            self.copies[command.job_id] = copy
            copy.add_done_callback(lambda _: self.copies.pop(command.job_id, None))
        reply = await asyncio.shield(copy)
        with contextlib.suppress(Exception):  # the asker may have given up; the job says so
            await msg.respond(reply.to_bytes())

    async def fetch(self, command: FileFetchCommand) -> FileFetchReply:
        """Copy the file, or say in one sentence why not."""
        async with self.slots:
            try:
                return await self._copy(command)
            except FileTooLarge as exc:
                return _failed(command, str(exc), PayloadTooLarge.code)
            except RuntimeFailure as exc:
                return _failed(command, str(exc))
            except Exception as exc:
                log.exception("file job %s: copy failed", command.job_id)
                return _failed(command, f"the copy failed: {exc}")

    async def _copy(self, command: FileFetchCommand) -> FileFetchReply:
        containers = await self.runtime.list_node(self.node_uuid)
        container = next((c for c in containers if c.name == command.name), None)
        if container is None:
            return _failed(command, f"container {command.name} does not exist on machine {self.node_uuid}")
        if container.status != "running":
            return _failed(command, f"container {command.name} is not running (it is {container.status})")
        limit = min(command.max_bytes, self.max_bytes) if command.max_bytes > 0 else self.max_bytes
        opened = await self.runtime.open_file(container.id, command.path, limit)
        reader = _Hashing(opened)
        try:
            store = await self.bus.objects(subjects.FILES)
            # put() reads in a thread pool and publishes chunk by chunk: the file is never in memory.
            await store.put(command.job_id, reader)  # type: ignore[arg-type]  # any object with readinto
        finally:
            reader.close()
        log.info(
            "file job %s: %s (%d bytes) copied from %s",
            command.job_id,
            command.path,
            reader.size,
            command.name,
        )
        return FileFetchReply(
            job_id=command.job_id,
            ok=True,
            name=opened.name,
            size=reader.size,
            sha256=reader.digest.hexdigest(),
            object=command.job_id,
        )


def _failed(command: FileFetchCommand, message: str, code: str = FileFetchError.code) -> FileFetchReply:
    return FileFetchReply(job_id=command.job_id, ok=False, message=message, code=code)


class _Hashing(io.RawIOBase):
    """Passes the file's bytes through, counting them and computing their sha256."""

    def __init__(self, opened: RuntimeFile) -> None:
        self.opened = opened
        self.size = 0
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self.opened.reader.readinto(buffer)
        if n:
            self.digest.update(memoryview(buffer)[:n])
            self.size += n
        return n or 0

    def close(self) -> None:
        self.opened.close()
        super().close()
