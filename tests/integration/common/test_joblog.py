"""A job's log lines against a real nats-server: records naming a job reach TY_JOBLOG, bounded per
job and per line, and a NATS that is down never holds up the logging call."""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from prometheus_client import REGISTRY

from tests.integration.conftest import nats_only
from tests.support import eventually
from tingyu.common import joblog, logs, subjects
from tingyu.common.bus import Bus
from tingyu.common.models.joblog import JobLogLine
from tingyu.common.names import new_job_id
from tingyu.common.settings import PlatformSettings

log = logging.getLogger("tytest.joblog")
log.setLevel(logging.INFO)  # the records reach the root's handlers whatever the root's level


@pytest_asyncio.fixture(scope="module")
async def bus(nats_url: str) -> AsyncIterator[Bus]:
    connected = await Bus.connect(PlatformSettings(nats_url=nats_url), "test-joblog")
    yield connected
    await connected.close()


def dropped() -> float:
    return sum(
        REGISTRY.get_sample_value("tingyu_joblog_dropped_total", {"reason": r}) or 0.0
        for r in ("full", "nats")
    )


async def lines_of(bus: Bus, job_id: str, count: int) -> list[JobLogLine] | None:
    lines = await joblog.read(bus, job_id)
    return lines if len(lines) >= count else None


async def test_records_naming_a_job_arrive_in_order_with_service_and_level(bus: Bus) -> None:
    job_id, other = new_job_id(), new_job_id()
    async with joblog.forwarding("deployer", bus):
        token = logs.job_id.set(job_id)
        try:
            log.info("taking job %s", job_id)
            log.warning("machine slow")
        finally:
            logs.job_id.reset(token)
        log.info("no job here")
        log.error("about another job", extra={"job_id": other})
        lines = await eventually(lambda: lines_of(bus, job_id, 2))
    assert [(line.service, line.level, line.message) for line in lines] == [
        ("deployer", "INFO", f"taking job {job_id}"),
        ("deployer", "WARNING", "machine slow"),
    ]
    assert lines[0].time <= lines[1].time <= time.time()
    others = await eventually(lambda: lines_of(bus, other, 1))
    assert [line.message for line in others] == ["about another job"]


async def test_a_long_line_is_cut_and_a_job_keeps_its_newest_lines(bus: Bus) -> None:
    job_id = new_job_id()
    extra = 30
    async with joblog.forwarding("imager", bus):
        log.info("x" * 5000 + "end", extra={"job_id": job_id})
        for number in range(subjects.JOBLOG_LINES + extra):
            log.info("line %d", number, extra={"job_id": job_id})

        async def newest() -> list[JobLogLine] | None:
            lines = await joblog.read(bus, job_id)
            return (
                lines if lines and lines[-1].message == f"line {subjects.JOBLOG_LINES + extra - 1}" else None
            )

        lines = await eventually(newest)
    assert len(lines) == subjects.JOBLOG_LINES
    assert lines[0].message == f"line {extra}"  # the long line and the first ones went first
    # The stream itself holds no more than that for the job (not only the reader's cut).
    info = await bus.js.stream_info(subjects.JOBLOG.name, subjects_filter=subjects.joblog(job_id))
    assert (info.state.subjects or {}).get(subjects.joblog(job_id)) == subjects.JOBLOG_LINES
    long = joblog.line_of(logging.LogRecord("t", logging.INFO, "", 0, "é" * 3000, None, None), "api")
    assert long.message.endswith(joblog.CUT_MARK)
    assert len(long.message.encode()) <= subjects.JOBLOG_LINE_MAX


async def test_a_cut_line_is_stored_cut(bus: Bus) -> None:
    job_id = new_job_id()
    async with joblog.forwarding("api", bus):
        log.info("y" * 5000, extra={"job_id": job_id})
        (line,) = await eventually(lambda: lines_of(bus, job_id, 1))
    assert line.message.endswith(joblog.CUT_MARK)
    assert line.message.startswith("yyyy")
    assert len(line.message.encode()) == subjects.JOBLOG_LINE_MAX


async def test_logging_never_waits_for_a_nats_that_is_down() -> None:
    with tempfile.TemporaryDirectory(prefix="tingyu-joblog-") as folder:
        server = nats_only(Path(folder))
        own = await Bus.connect(PlatformSettings(nats_url=server.config.nats_url), "test-joblog-down")
        try:
            async with joblog.forwarding("nodes", own) as forwarder:
                server.stop()
                await eventually(lambda: _false(own.nc.is_connected))
                before = dropped()
                job_id = new_job_id()
                # Timed through the forwarder alone (the session's stderr and capture handlers are
                # slow on a busy machine and are not what is measured).
                alone = logging.getLogger(f"tytest.joblog.{job_id}")
                alone.propagate = False
                alone.addHandler(forwarder)
                started = time.monotonic()
                for number in range(joblog.QUEUE_MAX + 500):
                    alone.info("line %d", number, extra={"job_id": job_id})
                took = time.monotonic() - started
                assert took < 5.0, took  # ~10 000 records: appends to a queue, no waiting on NATS
                assert len(forwarder.queue) <= joblog.QUEUE_MAX
                await eventually(lambda: _true(dropped() - before >= 500))
        finally:
            await own.close(timeout=1.0)


async def _true(value: bool) -> bool:
    return value


async def _false(value: bool) -> bool:
    return not value
