"""File fetch requests: copy one file out of one of this machine's containers into `ty_files`.

The deployer asks over core NATS (`responders.call`) and owns the job; the agent only copies and
answers with the one reply envelope: a `FileFetchReply`, or `FileFetchError` / `PayloadTooLarge`
whose detail says in English why not. A copy can take longer than a callback should block the
subscription (nats-py runs one subscription's callbacks one after another), so each request is
answered in its own task; a second request for a job already being copied waits for that copy.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import logging
import secrets
from datetime import UTC, datetime
from typing import Any

from nats.js import api as js_api

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
            await put_object(self.bus, subjects.FILES, command.job_id, reader)
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


CHUNK = 128 * 1024  # the object store's own chunk size


async def put_object(bus: Bus, spec: subjects.ObjectStoreSpec, name: str, reader: io.RawIOBase) -> None:
    """Write one object in the object store's layout (chunks on `$O.<bucket>.C.<id>`, then its
    meta on `$O.<bucket>.M.<name>`), read in a thread pool chunk by chunk so the file is never in
    memory. Unlike nats-py's `put`, it reads nothing back (no stream info, no earlier meta): a
    machine's permissions allow it to publish these subjects and nothing else of the store."""
    chunk_id = secrets.token_hex(11)
    chunk_subject = f"$O.{spec.name}.C.{chunk_id}"
    digest = hashlib.sha256()
    buffer = bytearray(CHUNK)
    size = chunks = 0
    loop = asyncio.get_running_loop()
    while n := await loop.run_in_executor(None, reader.readinto, buffer):
        await bus.js.publish(chunk_subject, bytes(buffer[:n]))
        digest.update(buffer[:n])
        size += n
        chunks += 1
    info = js_api.ObjectInfo(
        name=name,
        bucket=spec.name,
        nuid=chunk_id,
        size=size,
        chunks=chunks,
        mtime=datetime.now(UTC).isoformat(),
        digest="SHA-256=" + base64.urlsafe_b64encode(digest.digest()).decode(),
        options=js_api.ObjectMetaOptions(max_chunk_size=CHUNK),
    )
    meta_subject = f"$O.{spec.name}.M.{base64.urlsafe_b64encode(name.encode()).decode()}"
    await bus.js.publish(
        meta_subject, json.dumps(info.as_dict()).encode(), headers={js_api.Header.ROLLUP: "sub"}
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
