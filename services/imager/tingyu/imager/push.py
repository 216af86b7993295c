"""Handling one push command: spool the upload to disk, check it, push it, record it, tidy up.

The job goes 0 -> 2 (progress in `result`) -> 3 (digest in `result`) or 4 (the reason), always
through `JobStore`. A redelivered command whose job is already final is acked and nothing else
happens; a command the consumer gives up on (dead-lettered) fails its job with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from nats.aio.msg import Msg
from nats.js import errors as js_errors

from tingyu.common import subjects, timefmt
from tingyu.common.bus import Bus, Retry, in_progress
from tingyu.common.errors import ImageVersionExists, InternalError, RegistryError, TingyuError
from tingyu.common.jobs import JobStore
from tingyu.common.models.images import ImagePushCommand, ImageVersion
from tingyu.common.models.jobs import JobState
from tingyu.imager import catalog
from tingyu.imager.archive import Blob, ImageArchive, open_archive, read_member
from tingyu.imager.config import ImagerSettings
from tingyu.imager.registry import RegistryClient

log = logging.getLogger(__name__)


class Pusher:
    """Consumes `subjects.IMAGER_COMMANDS`; one instance per imager process."""

    def __init__(self, bus: Bus, registry: RegistryClient, settings: ImagerSettings) -> None:
        self.bus = bus
        self.registry = registry
        self.settings = settings
        self.jobs = JobStore(bus)

    async def handle(self, command: ImagePushCommand, msg: Msg) -> None:
        job = await self.jobs.get(command.job_id)
        if job is None or job.state.final:
            await self._forget_upload(command.upload)
            return
        deadline = time.monotonic() + self.settings.push_timeout_s
        async with in_progress(msg):  # a long upload is not redelivered to another replica
            try:
                result = await asyncio.wait_for(self._push(command, deadline), self.settings.push_timeout_s)
            except TingyuError as exc:
                log.info("push %s:%s failed: %s (%s)", command.name, command.version, exc.msg, exc.detail)
                failure = {"code": exc.code, **({"detail": exc.detail} if exc.detail else {})}
                await self.jobs.fail(command.job_id, exc.msg, result=failure)
            except TimeoutError as exc:
                if time.monotonic() < deadline:  # a registry or NATS call timed out: transient
                    await self._retry_or_fail(command, msg, exc)
                else:
                    await self._fail_timed_out(command)
            except (httpx.TransportError, js_errors.Error) as exc:
                await self._retry_or_fail(command, msg, exc)
            except Exception as exc:  # a defect must not leave the job running forever
                log.exception("push %s:%s failed unexpectedly", command.name, command.version)
                failure = {"code": InternalError.code, "detail": repr(exc)}
                await self.jobs.fail(command.job_id, InternalError.default_msg, result=failure)
            else:
                await self.jobs.move(command.job_id, JobState.SUCCEEDED, "success", result=result)
        await self._forget_upload(command.upload)

    async def on_dead(self, command: ImagePushCommand | None, reason: str, msg_id: str) -> None:
        """The consumer gave up on a push: its job fails with the reason, its upload goes."""
        job_id = command.job_id if command is not None else msg_id
        if job_id:
            await self.jobs.fail(job_id, reason, result={"code": InternalError.code})
        if command is not None:
            await self._forget_upload(command.upload)

    async def _retry_or_fail(self, command: ImagePushCommand, msg: Msg, exc: Exception) -> None:
        if (msg.metadata.num_delivered or 1) < self.settings.registry_attempts:
            raise Retry(f"transient failure: {exc!r}", delay=2.0) from exc
        reason = f"镜像仓库操作失败: {exc!r}"
        await self.jobs.fail(command.job_id, reason, result={"code": RegistryError.code})

    async def _fail_timed_out(self, command: ImagePushCommand) -> None:
        """One upload may not hold a push slot for longer than `push_timeout_s`; it is not retried."""
        limit = self.settings.push_timeout_s
        log.info("push %s:%s ran past %.0f s; failed", command.name, command.version, limit)
        detail = f"the push took longer than TINGYU_IMAGER_PUSH_TIMEOUT_S ({limit:.0f} s)"
        failure = {"code": RegistryError.code, "detail": detail}
        await self.jobs.fail(command.job_id, RegistryError.default_msg, result=failure)

    def clean_spool(self) -> None:
        """Remove what a previous process left in the spool (a spool belongs to one imager process)."""
        spool = self.settings.spool
        if not spool.is_dir():
            return
        for path in spool.iterdir():
            if path.is_file():
                path.unlink(missing_ok=True)
                log.info("removed stale spool file %s", path.name)

    async def _push(self, command: ImagePushCommand, deadline: float) -> dict[str, Any]:
        if await catalog.has_version(self.bus, command.name, command.version):
            stored = await catalog.version(self.bus, command.name, command.version)
            if stored.job_id == command.job_id:  # this push stored it; only its job move was lost
                return _result(command, stored, self.settings.platform.registry)
            raise ImageVersionExists(f"镜像版本已存在! {command.name}:{command.version}")
        spool = self.settings.spool
        spool.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=spool, prefix=f"{command.job_id}-", suffix=".tar") as handle:
            path = Path(handle.name)
            await self.progress(command, "receiving", 0, command.size)
            await self._download(command.upload, handle)
            await self.progress(command, "verifying", 0, command.size)
            archive = await asyncio.to_thread(open_archive, path, deadline)
            return await self._send(command, archive)

    async def _download(self, upload: str, handle: Any) -> None:
        store = await self.bus.objects(subjects.UPLOADS)
        try:
            await store.get(upload, writeinto=handle)
        except js_errors.ObjectNotFoundError as exc:
            raise TingyuError("上传文件已失效,请重新上传", detail=f"upload {upload} not found") from exc
        handle.flush()

    async def _send(self, command: ImagePushCommand, archive: ImageArchive) -> dict[str, Any]:
        name = command.name
        meter = _Meter(self, command, archive.size)
        await self.registry.ping()
        for blob in archive.blobs:
            if await self.registry.has_blob(name, blob.digest):
                meter.skipped += blob.size
                continue
            chunks = self._chunks(archive.path, blob, meter)
            await self.registry.push_blob(name, blob.digest, blob.size, chunks)
        pushed = await self.registry.put_manifest(name, command.version, archive.manifest, archive.media_type)
        digest = pushed or archive.digest
        entry = ImageVersion(
            version=command.version,
            digest=digest,
            size=archive.size,
            layers=len(archive.layers),
            uploaded_at=timefmt.now(),
            detail=command.detail,
            image_url=command.image_url,
            job_id=command.job_id,
        )
        await catalog.add_version(self.bus, name, entry)
        log.info(
            "pushed %s:%s %s (%d bytes sent, %d skipped)",
            name,
            command.version,
            digest,
            meter.sent,
            meter.skipped,
        )
        return {
            "image": name,
            "version": command.version,
            "digest": digest,
            "size": archive.size,
            "layers": len(archive.layers),
            "format": archive.layout,
            "bytes_sent": meter.sent,
            "bytes_skipped": meter.skipped,
            "reference": f"{self.settings.platform.registry}/{name}:{command.version}",
        }

    async def _chunks(self, path: Path, blob: Blob, meter: _Meter) -> AsyncIterator[bytes]:
        """One blob from the spooled tar, read in a thread, counted as it goes out."""
        reader = read_member(path, blob, self.settings.chunk_bytes)
        try:
            while data := await asyncio.to_thread(next, reader, b""):
                yield data
                await meter.add(len(data))
        finally:
            reader.close()

    async def progress(self, command: ImagePushCommand, phase: str, done: int, total: int) -> None:
        result = {"phase": phase, "bytes_done": done, "bytes_total": total}
        await self.jobs.move(command.job_id, JobState.RUNNING, result=result)

    async def _forget_upload(self, upload: str) -> None:
        store = await self.bus.objects(subjects.UPLOADS)
        with contextlib.suppress(js_errors.ObjectNotFoundError, js_errors.NotFoundError):
            await store.delete(upload)


class _Meter:
    """Bytes sent and skipped by one push; writes the job's progress at most every `progress_every_s`."""

    def __init__(self, pusher: Pusher, command: ImagePushCommand, total: int) -> None:
        self.pusher = pusher
        self.command = command
        self.total = total
        self.sent = 0
        self.skipped = 0
        self.last = time.monotonic()

    async def add(self, count: int) -> None:
        self.sent += count
        if time.monotonic() - self.last >= self.pusher.settings.progress_every_s:
            self.last = time.monotonic()
            await self.pusher.progress(self.command, "pushing", self.sent + self.skipped, self.total)


def _result(command: ImagePushCommand, stored: ImageVersion, registry: str) -> dict[str, Any]:
    """The job result of a push found already stored by the same job (a redelivery)."""
    return {
        "image": command.name,
        "version": command.version,
        "digest": stored.digest,
        "size": stored.size,
        "layers": stored.layers,
        "reference": f"{registry}/{command.name}:{command.version}",
    }
