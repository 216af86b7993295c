"""Pre-pull commands: ask each target machine's agent to have the image, a few at a time, until
every machine has it or the job's deadline passes.

The message is kept ours (in-progress acks) while the job runs; if this replica dies another one
handles it again from the start, and machines that already pulled answer `already_present` at once.
A machine that is NotReady (or whose agent is away) is asked again when it returns; past the
deadline it counts as failed with the reason, so the job always ends.
"""

from __future__ import annotations

import asyncio
import logging

import nats.errors
from nats.aio.msg import Msg

from tingyu.common import subjects, timefmt
from tingyu.common.bus import Bus, call, in_progress
from tingyu.common.errors import TingyuError
from tingyu.common.jobs import JobStore
from tingyu.common.models.jobs import JobState
from tingyu.common.models.nodes import NodeStatus
from tingyu.common.models.remote import PrepullCommand, PullReply, PullRequest
from tingyu.deployer.prepull.rules import Plan, PullState, done, due, expire, plan, result, verdict

log = logging.getLogger(__name__)


class Prepulls:
    """Handles `ty.cmd.prepull.*`."""

    def __init__(
        self, bus: Bus, jobs: JobStore, *, parallel: int, pull_timeout_s: float, tick_s: float
    ) -> None:
        self.bus = bus
        self.jobs = jobs
        self.parallel = max(parallel, 1)
        self.pull_timeout_s = pull_timeout_s
        self.tick_s = tick_s
        self.nodes = bus.store(subjects.NODES)

    async def handle(self, command: PrepullCommand, msg: Msg) -> None:
        job = await self.jobs.get(command.job_id)
        if job is None or job.state.final:
            return
        current = plan(command, await self.nodes.values())
        await self.jobs.move(command.job_id, JobState.RUNNING, result=result(command, current))
        async with in_progress(msg):
            current = await self.run(command, current)
        succeeded, message = verdict(current)
        state = JobState.SUCCEEDED if succeeded else JobState.FAILED
        log.info("prepull job %s of %s: %s", command.job_id, command.image_ref, message)
        await self.jobs.move(command.job_id, state, message, result=result(command, current))

    async def run(self, command: PrepullCommand, current: Plan) -> Plan:
        """Ask Ready pending machines, at most `parallel` at once, until all are done or time is up."""
        asking: dict[str, asyncio.Task[tuple[PullState, str]]] = {}
        reported = result(command, current)
        try:
            while not done(current):
                ready = {n.facts.uuid for n in await self.nodes.values() if n.status == NodeStatus.READY}
                if timefmt.now() >= command.deadline:
                    current = expire(current, ready)
                    break
                for uuid in due(current, ready, set(asking), self.parallel - len(asking)):
                    asking[uuid] = asyncio.create_task(self.pull(command, uuid))
                if asking:
                    await asyncio.wait(
                        asking.values(), timeout=self.tick_s, return_when=asyncio.FIRST_COMPLETED
                    )
                else:
                    await asyncio.sleep(self.tick_s)
                for uuid, task in list(asking.items()):
                    if task.done():
                        current[uuid] = task.result()
                        del asking[uuid]
                if result(command, current) != reported:
                    reported = result(command, current)
                    await self.jobs.move(command.job_id, JobState.RUNNING, result=reported)
        finally:
            for task in asking.values():
                task.cancel()
        return current

    async def pull(self, command: PrepullCommand, uuid: str) -> tuple[PullState, str]:
        """One machine's answer; PENDING again when its agent is away (asked again later)."""
        request = PullRequest(image_ref=command.image_ref, job_id=command.job_id, ratelimit=command.ratelimit)
        subject = subjects.agent_request(uuid, "pull")
        try:
            reply = await call(self.bus, subject, request, PullReply, timeout=self.pull_timeout_s)
        except nats.errors.NoRespondersError:
            return PullState.PENDING, ""
        except TimeoutError:
            return PullState.FAILED, f"no answer within {self.pull_timeout_s:g}s"
        except TingyuError as exc:
            return PullState.FAILED, exc.detail or exc.msg
        return (PullState.ALREADY_PRESENT if reply.already_present else PullState.PULLED), ""
