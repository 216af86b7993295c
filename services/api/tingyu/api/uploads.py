"""Streaming an uploaded tar into object store `ty_uploads` without holding it in memory.

The body is read chunk by chunk from the ASGI stream (multipart field `file`, parsed by
python-multipart's push parser, or a raw `application/x-tar` body). nats-py's `ObjectStore.put`
reads from a blocking file-like object in a worker thread; `BodyReader` is that object, and
each `readinto` waits for the next chunk from the event loop. At most one request chunk and
one object chunk are in memory at a time, plus the tar's small JSON documents.

Every chunk also goes through the imager's own tar reader (`tingyu.common.imagetar`): a body
that is not a tar, a member that claims more than the upload holds, a sparse member, a device,
a link that dangles or leaves the archive, or a tar that is not a `docker save` layout is refused
before the upload is accepted (digests are checked by the imager, which fails the job).
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

from nats.js import api as js_api
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from tingyu.api import texts
from tingyu.common import metrics, subjects
from tingyu.common.bus import Bus
from tingyu.common.errors import BadImageArchive
from tingyu.common.imagetar import TarScanner, kept_reader, read_layout

log = logging.getLogger(__name__)

CHUNK_BYTES = 512 * 1024  # object chunk; below NATS' default 1 MiB max payload
RAW_TYPES = ("application/x-tar", "application/octet-stream", "application/tar")
DRAIN_BYTES = (
    64 * 1024 * 1024
)  # read at most this much more of a refused body, so the client reads the answer


SPARE_THREADS = 8  # threads of the default executor beyond one per upload in flight


def reader_threads(max_uploads: int) -> ThreadPoolExecutor:
    """The API's default executor: nats-py reads every upload body in it (one thread per upload,
    blocked while the client sends), so it holds a thread for each upload admitted and some to
    spare. Python's own default (cores + 4) let six stalled uploads block every other one."""
    return ThreadPoolExecutor(max_uploads + SPARE_THREADS, thread_name_prefix="tingyu-api")


async def store_upload(bus: Bus, request: Request, name: str, limit: int) -> int:
    """Store the request's tar as object `name`; returns its size. Nothing stays behind on failure."""
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    if content_type == b"multipart/form-data":
        boundary = options.get(b"boundary")
        if not boundary:
            raise texts.upload_shape("multipart body without a boundary")
        chunks = multipart_field(request.stream(), boundary, b"file")
    elif content_type.decode(errors="replace") in RAW_TYPES:
        chunks = request.stream()
    else:
        raise texts.upload_shape("send the tar as multipart field `file` or as application/x-tar")
    length = request.headers.get("content-length", "")
    bound = min(limit, int(length)) if length.isdigit() else limit
    reader = BodyReader(chunks, asyncio.get_running_loop(), limit, bound)
    started = time.monotonic()
    store = await bus.objects(subjects.UPLOADS)
    meta = js_api.ObjectMeta(name=name, options=js_api.ObjectMetaOptions(max_chunk_size=CHUNK_BYTES))
    try:
        info = await store.put(name, reader, meta=meta)  # type: ignore[arg-type]
    except BadImageArchive:
        await reader.drain(DRAIN_BYTES)
        raise
    except ClientDisconnect:
        # Nobody reads the answer; an expected event, not a stack trace in the log.
        log.info("upload %s: the client went away after %d bytes", name, reader.total)
        raise texts.upload_shape("the client closed the connection during the upload") from None
    size = int(info.size or 0)
    metrics.UPLOAD_BYTES.inc(size)
    metrics.UPLOAD_SECONDS.observe(time.monotonic() - started)
    return size


async def multipart_field(
    stream: AsyncIterator[bytes], boundary: bytes, field: bytes
) -> AsyncIterator[bytes]:
    """The bytes of one multipart field, as they arrive; MissingParameter if the body has none."""
    pending: list[bytes] = []
    state = {"header": b"", "value": b"", "wanted": False, "found": False}

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["header"] = bytes(data[start:end]).lower()

    def on_header_value(data: bytes, start: int, end: int) -> None:
        if state["header"] == b"content-disposition":
            _, params = parse_options_header(bytes(data[start:end]))
            state["wanted"] = params.get(b"name") == field
            state["found"] = state["found"] or state["wanted"]

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if state["wanted"]:
            pending.append(bytes(data[start:end]))

    def on_part_end() -> None:
        state["wanted"] = False

    parser = MultipartParser(
        boundary,
        {
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    async for chunk in stream:
        parser.write(chunk)
        while pending:
            yield pending.pop(0)
    parser.finalize()
    while pending:
        yield pending.pop(0)
    if not state["found"]:
        raise texts.required("file", "the tar, as multipart field `file`")


class BodyReader(io.RawIOBase):
    """A blocking reader over an async chunk stream, for code that reads in a worker thread.

    It also refuses bodies over `limit` bytes, and feeds every chunk to a tar scanner bounded by
    `bound` (the body's length when the client sent it): the archive check runs as bytes arrive.
    """

    def __init__(
        self, chunks: AsyncIterator[bytes], loop: asyncio.AbstractEventLoop, limit: int, bound: int
    ) -> None:
        self._chunks = chunks
        self._loop = loop
        self._limit = limit
        self._buffer = memoryview(b"")
        self._scanner = TarScanner(bound, keep=True)
        self.total = 0

    def readable(self) -> bool:
        return True

    def readinto(self, target: bytearray | memoryview) -> int:  # type: ignore[override]
        if not self._buffer:
            data = asyncio.run_coroutine_threadsafe(self._next(), self._loop).result()
            if not data:
                return 0
            self._buffer = memoryview(data)
        count = min(len(target), len(self._buffer))
        target[:count] = self._buffer[:count]
        self._buffer = self._buffer[count:]
        return count

    async def _next(self) -> bytes:
        while True:
            try:
                data = await anext(self._chunks)
            except StopAsyncIteration:
                if self.total == 0:
                    raise texts.upload_empty() from None
                index = self._scanner.finish()
                read_layout(index, kept_reader(index))
                return b""
            if not data:
                continue
            self.total += len(data)
            if self.total > self._limit:
                raise texts.upload_too_large(self._limit)
            self._scanner.feed(data)
            return data

    async def drain(self, most: int) -> None:
        """Read (and drop) what is left of a refused body, up to `most` bytes."""
        drained = 0
        try:
            async for data in self._chunks:
                drained += len(data)
                if drained > most:
                    return
        except Exception:  # a broken body: nothing more to read
            return
