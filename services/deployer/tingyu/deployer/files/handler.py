"""File fetch commands: ask the machine's agent to copy the file, then finish the job with its answer.

The command is durable in `TY_COMMANDS`; the agent is reached with a request/reply
(`responders.call`; it answers a `FileFetchReply` or raises `FileFetchError`/`PayloadTooLarge`).
While the agent is away (no responder) the command comes back a little later, until `agent_wait_s`
after it was issued. While a copy runs, the message is kept ours (in-progress acks); if this replica
dies, another one asks again and the agent, already copying that job, answers once for both.
"""

from __future__ import annotations

import logging
from typing import Any

import nats.errors
from nats.aio.msg import Msg

from tingyu.common import subjects, timefmt
from tingyu.common.bus import Bus, Retry, call, in_progress
from tingyu.common.errors import TingyuError
from tingyu.common.jobs import JobStore
from tingyu.common.models.files import FileFetchCommand, FileFetchReply
from tingyu.common.models.jobs import JobState
from tingyu.deployer.files.rules import agent_may_return, agent_silent, copy_too_slow, fetched, refused

log = logging.getLogger(__name__)

AGENT_RETRY_S = 1.0


class Files:
    """Handles `ty.cmd.file.*`."""

    def __init__(self, bus: Bus, jobs: JobStore, copy_timeout_s: float, agent_wait_s: float) -> None:
        self.bus = bus
        self.jobs = jobs
        self.copy_timeout_s = copy_timeout_s
        self.agent_wait_s = agent_wait_s

    async def handle(self, command: FileFetchCommand, msg: Msg) -> None:
        job = await self.jobs.get(command.job_id)
        if job is None or job.state.final:
            return
        await self.jobs.move(command.job_id, JobState.RUNNING)
        try:
            async with in_progress(msg):
                reply = await call(
                    self.bus,
                    subjects.agent_request(command.node_uuid, "file"),
                    command,
                    FileFetchReply,
                    timeout=self.copy_timeout_s,
                )
        except nats.errors.NoRespondersError:
            if agent_may_return(command, timefmt.now(), self.agent_wait_s):
                raise Retry("the agent is not answering yet", AGENT_RETRY_S) from None
            await self._fail(command, agent_silent(command, self.agent_wait_s))
            return
        except TimeoutError:
            await self._fail(command, copy_too_slow(self.copy_timeout_s))
            return
        except TingyuError as exc:
            await self._fail(command, *refused(exc))
            return
        await self.jobs.move(command.job_id, JobState.SUCCEEDED, result=fetched(command, reply))

    async def _fail(
        self, command: FileFetchCommand, message: str, result: dict[str, Any] | None = None
    ) -> None:
        log.info("file job %s (%s:%s) failed: %s", command.job_id, command.name, command.path, message)
        await self.jobs.fail(command.job_id, message, result=result or {})
