"""Autonomy: an agent restarted while NATS is unreachable keeps its machine as it was, and converges
without recreating anything once NATS is back (real nats-server, real Docker Engine)."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import docker

from tests.integration.agent.test_agent_lifecycle import (
    agent_settings,
    inspect,
    last_report,
    make_desired,
    make_spec,
    put_desired,
    remove_node_containers,
    reported,
    run_agent,
)
from tests.integration.conftest import nats_only
from tests.support import enroll_offline, eventually, unique
from tingyu.agent.runtime import LABEL_NODE
from tingyu.common.bus import Bus
from tingyu.common.models.containers import PodPhase
from tingyu.common.settings import PlatformSettings


def started(engine: docker.DockerClient, names: list[str]) -> dict[str, tuple[str, str, bool]]:
    """name -> (container id, StartedAt, running) as Docker says."""
    found: dict[str, tuple[str, str, bool]] = {}
    for name in names:
        attrs: dict[str, Any] | None = inspect(engine, name)
        if attrs is not None:
            found[name] = (attrs["Id"], attrs["State"]["StartedAt"], attrs["State"]["Running"])
    return found


async def test_restarted_offline_the_agent_keeps_everything_and_converges_without_recreating(
    tmp_path: Path, engine: docker.DockerClient, image: str
) -> None:
    nats = nats_only(tmp_path)
    own_bus = await Bus.connect(PlatformSettings(nats_url=nats.config.nats_url), "autonomy-tests")
    settings = agent_settings(nats.config.nats_url, tmp_path / "state")
    uuid = enroll_offline(settings.state_dir)  # its own machine credential, as enrollment gives
    names = [unique("au") for _ in range(2)]
    stray = unique("stray")
    stop = asyncio.Event()
    task = asyncio.create_task(run_agent(stop, settings))
    try:
        await put_desired(own_bus, uuid, *(make_desired(n, make_spec(image)) for n in names))
        for name in names:
            await reported(own_bus, uuid, name, 1, PodPhase.RUNNING)
        disk = json.loads((settings.state_dir / "desired.json").read_text())
        assert sorted(disk["containers"]) == sorted(names)
        before = started(engine, names)

        # NATS goes away, and the agent restarts during the outage (a reboot)
        stop.set()
        await asyncio.wait_for(task, 30)
        nats.kill("nats", signal.SIGTERM)
        # a container of this machine that is in no desired state: nothing may remove it offline
        engine.containers.run(image, name=stray, detach=True, labels={LABEL_NODE: uuid})
        await asyncio.to_thread(engine.api.stop, names[0], timeout=1)
        stop = asyncio.Event()
        task = asyncio.create_task(run_agent(stop, settings))

        # held on the state on disk: the stopped one runs again, in the same container
        async def held() -> dict[str, tuple[str, str, bool]] | None:
            now = started(engine, names)
            return now if all(running for _, _, running in now.values()) else None

        offline = await eventually(held, timeout=30)
        assert {n: c[0] for n, c in offline.items()} == {n: c[0] for n, c in before.items()}
        assert offline[names[1]] == before[names[1]]  # untouched
        assert inspect(engine, stray) is not None  # nothing removed while offline
        assert not task.done()

        # NATS is back: the agent connects, reports, and converges without recreating anything
        nats.start_nats()

        async def converged() -> bool:
            report = await last_report(own_bus, uuid)
            return report is not None and all(
                report.containers[n].phase == PodPhase.RUNNING
                and report.containers[n].container_id == offline[n][0]
                for n in names
            )

        await eventually(converged, timeout=60)
        await eventually(lambda: _gone(engine, stray), timeout=30)  # the platform's state removes it
        assert started(engine, names) == offline
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await own_bus.close()
        nats.stop()
        remove_node_containers(engine, uuid)


async def _gone(engine: docker.DockerClient, name: str) -> bool:
    return await asyncio.to_thread(inspect, engine, name) is None
