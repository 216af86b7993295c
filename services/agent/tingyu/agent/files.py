"""File fetch requests: copy one file out of one of this machine's containers into `ty_files`.

The deployer asks over core NATS (`responders.call`) and owns the job; the agent only copies and
answers with the one reply envelope: a `FileFetchReply`, or `FileFetchError` / `PayloadTooLarge`
whose detail says in English why not. A copy can take longer than a callback should block the
subscription (nats-py runs one subscription's callbacks one after another), so each request is
answered in its own task; a second request for a job already being copied waits for that copy.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
from typing import Any

from tingyu.agent.runtime import FileTooLarge, Runtime, RuntimeFailure, RuntimeFile
from tingyu.common import subjects
from tingyu.common.bus import Bus
from tingyu.common.bus.responders import Responder, serve
from tingyu.common.errors import FileFetchError, PayloadTooLarge, TingyuError
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
        self.responder: Responder[FileFetchCommand] | None = None

    async def start(self) -> None:
        subject = subjects.agent_request(self.node_uuid, "file")
        self.responder = await serve(self.bus, subject, FileFetchCommand, self.handle)

    async def close(self) -> None:
        """Stop answering; copies in flight are cancelled (the deployer asks again or fails the job)."""
        if self.responder is not None:
            await self.responder.close()
        for task in self.copies.values():
            task.cancel()
        await asyncio.gather(*self.copies.values(), return_exceptions=True)

    async def handle(self, command: FileFetchCommand) -> FileFetchReply:
        """The copy of this job: a new one, or the one already under way."""
        copy = self.copies.get(command.job_id)
        if copy is None:
            copy = asyncio.create_task(self.fetch(command))
            self.copies[command.job_id] = copy
            copy.add_done_callback(lambda _: self.copies.pop(command.job_id, None))
        return await asyncio.shield(copy)

    async def fetch(self, command: FileFetchCommand) -> FileFetchReply:
        """Copy the file, or raise the error that says in one sentence why not."""
        async with self.slots:
            try:
                return await self._copy(command)
            except FileTooLarge as exc:
                raise PayloadTooLarge(detail=str(exc)) from exc
            except RuntimeFailure as exc:
                raise FileFetchError(detail=str(exc)) from exc
            except TingyuError:
                raise
            except Exception as exc:
                log.exception("file job %s: copy failed", command.job_id)
                raise FileFetchError(detail=f"the copy failed: {exc}") from exc

    async def _copy(self, command: FileFetchCommand) -> FileFetchReply:
        containers = await self.runtime.list_node(self.node_uuid)
        container = next((c for c in containers if c.name == command.name), None)
        if container is None:
            raise FileFetchError(
                detail=f"container {command.name} does not exist on machine {self.node_uuid}"
            )
        if container.status != "running":
            raise FileFetchError(detail=f"container {command.name} is not running (it is {container.status})")
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
