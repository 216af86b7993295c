"""What the deployer runs for rollouts: the command consumer (every replica) and the leader loop."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from tingyu.common import subjects
from tingyu.common.bus import Bus, consume
from tingyu.common.models.rollouts import RolloutCommand
from tingyu.deployer.config import DeployerSettings
from tingyu.deployer.jobs import Jobs
from tingyu.deployer.rollouts.consumer import RolloutCommands
from tingyu.deployer.rollouts.loop import RolloutLoop


def workers(
    bus: Bus, jobs: Jobs, settings: DeployerSettings, stop: asyncio.Event
) -> list[Coroutine[Any, Any, None]]:
    commands = RolloutCommands(bus, jobs)
    return [
        consume(
            bus,
            stream=subjects.COMMANDS,
            durable=subjects.DURABLE_DEPLOYER_ROLLOUTS,
            subject=subjects.ROLLOUT_COMMANDS,
            model=RolloutCommand,
            handler=commands.handle,
            # Calls on one rollout are applied in stream order (a later percent extends an earlier one).
            key=lambda c: (c.area, c.operator, c.image),
            batch=settings.batch,
            stop=stop,
        ),
        RolloutLoop(bus, jobs, settings).run(stop),
    ]
