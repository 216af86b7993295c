"""Deployer service: three durable consumers shared by all replicas."""

from __future__ import annotations

import asyncio
import contextlib

from tingyu.common import subjects
from tingyu.common.bus import Bus, consume
from tingyu.common.models.containers import ContainerCommand, NodeObserved
from tingyu.common.models.files import FileFetchCommand
from tingyu.common.models.jobs import JobDeadline
from tingyu.common.service import run as run_service
from tingyu.deployer.config import get_settings
from tingyu.deployer.handlers.commands import Commands
from tingyu.deployer.handlers.deadlines import Deadlines
from tingyu.deployer.handlers.files import Files
from tingyu.deployer.handlers.observed import Observed
from tingyu.deployer.jobs import Jobs
from tingyu.deployer.rollouts.workers import workers as rollout_workers


async def main(stop: asyncio.Event) -> None:
    settings = get_settings()
    bus = await Bus.connect(settings.platform, "tingyu-deployer")
    jobs = Jobs(bus)
    commands = Commands(bus, jobs, settings.job_timeout_s)
    observed = Observed(bus, jobs)
    deadlines = Deadlines(bus, jobs)
    files = Files(bus, jobs, settings.file_timeout_s, settings.file_agent_wait_s)
    loops = [
        consume(
            bus,
            stream=subjects.COMMANDS,
            durable=subjects.DURABLE_DEPLOYER_COMMANDS,
            subject=subjects.CONTAINER_COMMANDS,
            model=ContainerCommand,
            handler=commands.handle,
            key=lambda c: c.node_uuid,  # one machine's desired doc is written in command order
            batch=settings.batch,
            stop=stop,
        ),
        consume(
            bus,
            stream=subjects.OBSERVED,
            durable=subjects.DURABLE_DEPLOYER_OBSERVED,
            subject=subjects.OBSERVED_ALL,
            model=NodeObserved,
            handler=observed.handle,
            key=lambda r: r.node_uuid,
            batch=settings.batch,
            stop=stop,
        ),
        consume(
            bus,
            stream=subjects.JOB_DEADLINES,
            durable=subjects.DURABLE_DEPLOYER_DEADLINES,
            subject=subjects.JOB_DEADLINES_ALL,
            model=JobDeadline,
            handler=deadlines.handle,
            batch=settings.batch,
            max_deliver=-1,
            ack_wait=30.0,
            stop=stop,
        ),
        consume(
            bus,
            stream=subjects.COMMANDS,
            durable=subjects.DURABLE_DEPLOYER_FILES,
            subject=subjects.FILE_COMMANDS,
            model=FileFetchCommand,
            handler=files.handle,
            batch=settings.batch,
            ack_wait=30.0,  # a copy in progress keeps its message with in-progress acks
            max_deliver=-1,  # retries stop at the command's agent_wait_s, not at a count
            stop=stop,
        ),
    ]
    loops += rollout_workers(bus, jobs, settings, stop)
    tasks = [asyncio.create_task(loop) for loop in loops]
    await stop.wait()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(task, timeout=5)
    await bus.close()


def run() -> None:
    run_service("deployer", main, get_settings().platform.log_level)


if __name__ == "__main__":
    run()
