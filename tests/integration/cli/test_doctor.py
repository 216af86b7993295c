"""`tingyu doctor` against a real nats-server and registry: all well, then a corrupt record written
straight into a bucket, a job stuck past its deadline, a dead letter and a growing backlog, then
NATS gone; each named in its report and in its exit code."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.support import trusted
from tests.support.factories import command
from tingyu.cli.launcher import Platform, PlatformConfig, free_port
from tingyu.common import subjects
from tingyu.common.bus import Bus
from tingyu.common.bus.consumers import subscribe
from tingyu.common.models.containers import ContainerOp
from tingyu.common.models.jobs import Job, JobKind, JobState
from tingyu.common.settings import PlatformSettings

NODE = "tingyu-" + "0" * 32


@pytest.fixture
def parts(tmp_path: Path) -> AsyncIterator[Platform]:
    platform = Platform(
        trusted(
            PlatformConfig(
                state_dir=tmp_path,
                nats_port=free_port(),
                registry_port=free_port(),
                colour=False,
                log_file=tmp_path / "log",
            )
        )
    )
    try:
        platform.start_nats()
        platform.start_registry()
        yield platform  # type: ignore[misc]
    finally:
        platform.stop()


@pytest_asyncio.fixture
async def bus(parts: Platform) -> AsyncIterator[Bus]:
    """The platform's topology with every consumer declared, as the services leave it."""
    bus = await Bus.connect(PlatformSettings(nats_url=parts.config.nats_url), "doctor-test")
    for spec in subjects.ALL_CONSUMERS:
        await (await subscribe(bus, spec)).unsubscribe()
    yield bus
    await bus.close()


async def doctor(parts: Platform) -> tuple[int, str]:
    env = dict(
        os.environ,
        TINGYU_NATS_URL=parts.config.nats_url,
        TINGYU_REGISTRY_URL=f"http://{parts.config.registry}",
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tingyu.cli.main",
        "doctor",
        "--interval",
        "1",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_doctor_names_what_needs_attention(parts: Platform, bus: Bus) -> None:
    code, report = await doctor(parts)
    assert code == 0, report
    assert "FAIL" not in report
    assert "ok    nats: connected" in report
    # The platform's registry asks for its users: 401 to an anonymous look still says it is there.
    assert f"ok    registry: http://{parts.config.registry}/v2/ answers 401" in report

    # A record that does not parse, written straight into the bucket (as a bug or a hand edit would).
    nodes = await bus.js.key_value(subjects.NODES.name)
    await nodes.put(NODE, b'{"uuid": 5, "nodename": "x"}')
    # A job still dispatched a day after it was created.
    stale = command(ContainerOp.CREATE, "stuck1")
    day_ago = time.time() - 86400
    job = Job(
        job_id=stale.job_id,
        kind=JobKind.CONTAINER,
        op="create",
        state=JobState.DISPATCHED,
        created_at=day_ago,
        updated_at=day_ago,
    )
    await bus.store(subjects.JOBS).put(job.job_id, job)
    # A dead letter, and samples arriving that nobody takes.
    await bus.js.publish(subjects.dead(subjects.METERING_SAMPLES.durable), b"{}")
    stop = asyncio.Event()

    async def samples() -> None:
        while not stop.is_set():
            await bus.js.publish(f"ty.samples.{NODE}", b"{}")
            await asyncio.sleep(0.05)

    feeding = asyncio.create_task(samples())
    try:
        code, report = await doctor(parts)
    finally:
        stop.set()
        await feeding
    assert code == 1, report
    lines = report.splitlines()
    assert any(
        line.startswith(f"FAIL  bucket ty_nodes: record {NODE} (")
        and "facts: Field required" in line
        and line.endswith("does not parse as NodeRecord")
        for line in lines
    ), report
    assert f"FAIL  job {job.job_id} (container create) has been in state 1" in report
    assert "FAIL  dead letters: 1 waiting (metering-samples: 1)" in report
    assert "FAIL  consumer metering-samples: backlog grows" in report
    assert "ok    bucket ty_desired" in report  # the other buckets are fine

    parts.kill("nats")
    code, report = await doctor(parts)
    assert code == 2, report
    assert f"FAIL  nats: {parts.config.nats_url} not reachable" in report
