"""File fetch commands: ask the machine's agent to copy the file, then finish the job with its answer.

The command is durable in `TY_COMMANDS`; the agent is reached with core-NATS request/reply. While
the agent is away (no responder) the command comes back a little later, until `agent_wait_s` after
it was issued. While a copy runs, the message is kept ours (in-progress acks); if this replica
dies, another one asks again and the agent, already copying that job, answers once for both.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import nats.errors
from nats.aio.msg import Msg

from tingyu.common import subjects, timefmt
from tingyu.common.bus import Bus, Retry, kv_get
from tingyu.common.models.files import FileFetchCommand, FileFetchReply
from tingyu.common.models.jobs import Job, JobState
from tingyu.deployer.jobs import Jobs

log = logging.getLogger(__name__)

KEEP_ALIVE_S = 10.0  # well under the consumer's ack wait
AGENT_RETRY_S = 1.0


class Files:
    """Handles `ty.cmd.file.*`."""

    def __init__(self, bus: Bus, jobs: Jobs, copy_timeout_s: float, agent_wait_s: float) -> None:
        self.bus = bus
        self.jobs = jobs
        self.copy_timeout_s = copy_timeout_s
        self.agent_wait_s = agent_wait_s

    async def handle(self, command: FileFetchCommand, msg: Msg) -> None:
        job, _rev = await kv_get(await self.bus.kv(subjects.JOBS), command.job_id, Job)
        if job is None or job.state.final:
            return
        await self.jobs.move(command.job_id, JobState.RUNNING)
        try:
            reply = await self._ask(command, msg)
        except nats.errors.NoRespondersError:
            if timefmt.now() < command.issued_at + self.agent_wait_s:
                raise Retry("the agent is not answering yet", AGENT_RETRY_S) from None
            await self._fail(
                command, f"machine {command.node_uuid} did not answer within {self.agent_wait_s:.0f}s"
            )
            return
        except TimeoutError:
            await self._fail(command, f"the copy did not finish within {self.copy_timeout_s:.0f}s")
            return
        if not reply.ok:
            await self._fail(command, reply.message, reply.code)
            return
        result = {"name": reply.name, "size": reply.size, "sha256": reply.sha256, "object": reply.object}
        await self.jobs.move(command.job_id, JobState.SUCCEEDED, result={**result, "path": command.path})

    async def _ask(self, command: FileFetchCommand, msg: Msg) -> FileFetchReply:
        async def keep_alive() -> None:
            while True:
                await asyncio.sleep(KEEP_ALIVE_S)
                with contextlib.suppress(Exception):
                    await msg.in_progress()

        keeper = asyncio.create_task(keep_alive())
        try:
            subject = subjects.agent_request(command.node_uuid, "file")
            return await self.bus.request(subject, command, FileFetchReply, timeout=self.copy_timeout_s)
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper

    async def _fail(self, command: FileFetchCommand, message: str, code: str = "") -> None:
        log.info("file job %s (%s:%s) failed: %s", command.job_id, command.name, command.path, message)
        await self.jobs.move(command.job_id, JobState.FAILED, message, result={"code": code} if code else {})
