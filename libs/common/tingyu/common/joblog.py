"""A job's log lines: every record a platform service logs while it works on a job goes to TY_JOBLOG.

A record names its job through the `job_id` context variable (set for each command a consumer
handles) or its own `extra={"job_id": ...}` (see `logs`). The logging call only appends to a bounded
queue in memory, from any thread, and never waits: a task on the service's own connection sends what
is queued. A line is dropped and counted (`tingyu_joblog_dropped_total`) when the queue is full or
NATS is down; logging itself never blocks nor fails because of this.

The edge agent does not forward: its NATS credential allows only its own subjects, and the job's
lines are the platform's account of the job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import AsyncIterator

from nats.js import api as js_api

from tingyu.common import logs, metrics, subjects
from tingyu.common.bus import Bus, reading
from tingyu.common.bus.consumers import fetch_listed
from tingyu.common.models.joblog import JobLogLine
from tingyu.common.names import is_job_id

QUEUE_MAX = 10_000  # lines waiting to be sent; more are dropped
BATCH = 256  # lines sent before one flush
FLUSH_S = 2  # a flush slower than this drops its batch (the server is not taking lines)
CUT_MARK = " …[cut]"


def cut(message: str, limit: int = subjects.JOBLOG_LINE_MAX) -> str:
    """`message` if it fits in `limit` bytes (UTF-8), else its head with `CUT_MARK`, in `limit` bytes."""
    data = message.encode()
    if len(data) <= limit:
        return message
    head = data[: limit - len(CUT_MARK.encode())].decode(errors="ignore")
    return head + CUT_MARK


def line_of(record: logging.LogRecord, service: str) -> JobLogLine:
    """A record as a job log line: its message, and the error it carries on its last line."""
    message = record.getMessage()
    if record.exc_info and record.exc_info[1] is not None:
        error = record.exc_info[1]
        message = f"{message} ({type(error).__name__}: {error})"
    return JobLogLine(time=record.created, service=service, level=record.levelname, message=cut(message))


def job_of(record: logging.LogRecord) -> str:
    """The job a record names (its own `extra` first, then the context), or "" for none."""
    job = getattr(record, "job_id", "") or logs.job_id.get()
    return job if isinstance(job, str) and is_job_id(job) else ""


class Forwarder(logging.Handler):
    """A logging handler that queues each record naming a job; `send` empties the queue onto NATS."""

    def __init__(self, service: str, capacity: int = QUEUE_MAX) -> None:
        super().__init__()
        self.service = service
        self.capacity = capacity
        self.queue: deque[tuple[str, JobLogLine]] = deque()
        self.guard = threading.Lock()  # emit runs on any thread (the API's upload readers too)
        self.ready = asyncio.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.loop_thread = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            job = job_of(record)
            if not job:
                return
            line = line_of(record, self.service)
        except Exception:  # a record that does not format is the stderr handler's to report
            return
        with self.guard:
            if len(self.queue) >= self.capacity:
                metrics.JOBLOG_DROPPED.labels("full").inc()
                return
            self.queue.append((job, line))
        self.wake()

    def wake(self) -> None:
        loop = self.loop
        if loop is None:
            return
        if threading.get_ident() == self.loop_thread:
            self.ready.set()
        else:
            with contextlib.suppress(RuntimeError):  # the loop closed: the lines stay unsent
                loop.call_soon_threadsafe(self.ready.set)

    def take(self, count: int) -> list[tuple[str, JobLogLine]]:
        with self.guard:
            return [self.queue.popleft() for _ in range(min(count, len(self.queue)))]

    async def send(self, bus: Bus, stop: asyncio.Event) -> None:
        """Send queued lines until `stop` is set, then what is left (once)."""
        self.loop = asyncio.get_running_loop()
        self.loop_thread = threading.get_ident()
        while not stop.is_set():
            self.ready.clear()
            await self.send_queued(bus)
            waiting = asyncio.create_task(self.ready.wait())
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait([waiting, stopping], return_when=asyncio.FIRST_COMPLETED)
            waiting.cancel()
            stopping.cancel()
        await self.send_queued(bus)

    async def send_queued(self, bus: Bus) -> None:
        while batch := self.take(BATCH):
            await self.send_batch(bus, batch)

    async def send_batch(self, bus: Bus, batch: list[tuple[str, JobLogLine]]) -> None:
        # Core publishes and one flush: a batch costs one round trip, and a server that does not
        # take it within FLUSH_S loses the batch rather than holding up the next ones.
        if not bus.connected:
            metrics.JOBLOG_DROPPED.labels("nats").inc(len(batch))
            return
        try:
            for job, line in batch:
                await bus.nc.publish(subjects.joblog(job), line.to_bytes())
            await bus.nc.flush(timeout=FLUSH_S)
        except Exception:  # no log here: this task's own records name no job, but stay quiet anyway
            metrics.JOBLOG_DROPPED.labels("nats").inc(len(batch))
            return
        metrics.JOBLOG_LINES.inc(len(batch))


@contextlib.asynccontextmanager
async def forwarding(service: str, bus: Bus) -> AsyncIterator[Forwarder]:
    """Forward this process's job log lines over `bus` while inside; the handler is removed after."""
    forwarder = Forwarder(service)
    root = logging.getLogger()
    root.addHandler(forwarder)
    stop = asyncio.Event()
    task = asyncio.create_task(forwarder.send(bus, stop), name=f"{service}-joblog")
    try:
        yield forwarder
    finally:
        root.removeHandler(forwarder)
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, FLUSH_S * 2)


async def read(bus: Bus, job_id: str, limit: int = subjects.JOBLOG_LINES) -> list[JobLogLine]:
    """The job's lines, oldest first (at most `limit`, the newest): one ephemeral consumer on its subject."""
    config = js_api.ConsumerConfig(
        deliver_policy=js_api.DeliverPolicy.ALL, filter_subject=subjects.joblog(job_id)
    )
    lines: list[JobLogLine] = []
    async with reading(bus, subjects.JOBLOG.name, config) as sub:
        pending = (await sub.consumer_info()).num_pending or 0
        while pending > 0:
            msgs = await fetch_listed(sub, min(pending, 256), timeout=2.0)
            for msg in msgs:
                with contextlib.suppress(ValueError):  # a line that does not parse is skipped
                    lines.append(JobLogLine.from_bytes(msg.data))
            pending = msgs[-1].metadata.num_pending or 0
    return lines[-limit:] if limit > 0 else []
