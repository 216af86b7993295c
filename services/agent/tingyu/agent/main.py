"""`tingyu-agent`, one per machine: identity, Docker and the bus are made here and closed in reverse."""

from __future__ import annotations

import asyncio
import functools
import logging

from tingyu.agent.agent import Agent
from tingyu.agent.applied import AppliedRestarts
from tingyu.agent.config import AgentSettings, get_settings
from tingyu.agent.docker_runtime import DockerRuntime
from tingyu.agent.facts import read_facts
from tingyu.agent.files import FileFetcher
from tingyu.agent.identity import load_or_create
from tingyu.agent.reconciler import Reconciler
from tingyu.agent.sampling import run_sampler
from tingyu.common import service
from tingyu.common.bus import Bus
from tingyu.common.policy import Policy

log = logging.getLogger(__name__)


async def main(stop: asyncio.Event, settings: AgentSettings | None = None) -> None:
    """Run this machine's agent until `stop` is set; its containers keep running afterwards."""
    settings = settings or get_settings()
    identity = load_or_create(settings.state_dir)
    platform = settings.platform
    runtime = DockerRuntime.connect(
        settings.docker_host,
        settings.docker_timeout_s,
        registry=platform.registry,
        registry_user=platform.registry_user,
        registry_password=platform.registry_password,
        pull_timeout_s=settings.pull_timeout_s,
        stop_timeout_s=settings.stop_timeout_s,
    )
    try:
        # Agents do not declare the platform's streams and buckets: the central services own them.
        bus = await Bus.connect(platform, "tingyu-agent", ensure=False)
        try:
            log.info("agent %s (nodename %s) starting", identity.uuid, identity.nodename)
            agent = Agent(
                bus,
                identity,
                Reconciler(
                    runtime,
                    identity.uuid,
                    AppliedRestarts(settings.state_dir / "applied.json"),
                    settings.parallel,
                    Policy.from_settings(own_registry=platform.registry),
                ),
                functools.partial(read_facts, identity, settings),
                heartbeat_s=settings.heartbeat_s,
                resync_s=settings.resync_s,
                facts_every=settings.facts_every,
                files=FileFetcher(
                    bus, runtime, identity.uuid, settings.max_file_bytes, settings.file_parallel
                ),
            )
            sampler = asyncio.create_task(run_sampler(bus, identity.uuid, stop))
            try:
                await agent.run(stop)
            finally:
                stop.set()
                await sampler
        finally:
            await bus.close()
    finally:
        runtime.close()
    log.info("agent %s stopped", identity.uuid)


def run() -> None:
    settings = get_settings()
    service.run("agent", functools.partial(main, settings=settings), settings.platform.log_level)


if __name__ == "__main__":
    run()
