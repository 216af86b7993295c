"""The one owner of jobs: submitting a command with its job, and moving jobs through their states.

Every service that submits or finishes work does it through `JobStore`; nothing else writes the
`ty_jobs` bucket. The transition rule (`advance`) is one pure function: a final job (succeeded or
failed) never changes again, and a job never goes back to an earlier state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from tingyu.common import metrics, subjects, timefmt
from tingyu.common.bus import Bus
from tingyu.common.errors import Conflict
from tingyu.common.models.jobs import Command, Job, JobState
from tingyu.common.names import new_job_id, nodename_of

log = logging.getLogger(__name__)


class Refused(Exception):
    """A submission's guard said no; the text says why (per-item answers carry it)."""


def advance(job: Job | None, state: JobState, now: float, message: str = "", **fields: Any) -> Job | None:
    """The job after a move to `state`, or None when the rule refuses it: a final job never changes,
    a later state never goes back (the same state may update its progress fields)."""
    if job is None or job.state.final or state < job.state:
        return None
    update: dict[str, Any] = {"state": state, "updated_at": now, **fields}
    if message:
        update["message"] = message
    return job.model_copy(update=update)


def new_job(command: Command, now: float) -> Job:
    """The queued job record of a command about to be published."""
    name, node_uuid = command.job_target
    return Job(
        job_id=command.job_id,
        kind=command.kind,
        op=command.job_op,
        deploymentname=name,
        node_uuid=node_uuid,
        nodename=nodename_of(node_uuid) if node_uuid else "",
        created_at=now,
        updated_at=now,
    )


class JobStore:
    """Jobs in `ty_jobs`; remembers recently finished ones so redeliveries skip the read, and the
    open ones it wrote last (with their revisions) so that their next move needs no read."""

    def __init__(self, bus: Bus, remember: int = 100_000, open_jobs: int = 10_000) -> None:
        self.bus = bus
        self.store = bus.store(subjects.JOBS)
        self.finished: OrderedDict[str, None] = OrderedDict()
        self.remember = remember
        self.written: OrderedDict[str, tuple[Job, int]] = OrderedDict()
        self.open_jobs = open_jobs

    def _wrote(self, job: Job | None, revision: int) -> None:
        if job is None or job.state.final or not revision:
            return
        self.written[job.job_id] = (job, revision)
        self.written.move_to_end(job.job_id)
        while len(self.written) > self.open_jobs:
            self.written.popitem(last=False)

    async def get(self, job_id: str) -> Job | None:
        return await self.store.get(job_id)

    async def read(self, job_id: str) -> Job | None:
        """The stored job, remembered as a move remembers it: as finished, or (open) with its
        revision, so that its next move needs no read."""
        job, revision = await self.store.entry(job_id)
        if job is not None and job.state.final:
            self._finished(job_id)
        else:
            self._wrote(job, revision)
        return job

    def _finished(self, job_id: str) -> None:
        self.finished[job_id] = None
        if len(self.finished) > self.remember:
            self.finished.popitem(last=False)

    def is_finished(self, job_id: str) -> bool:
        return job_id in self.finished

    async def submit(self, command: Command, guard: Callable[[], Awaitable[str]] | None = None) -> Job:
        """Write the job record, then publish the command with the job id as its message id, so the
        job exists before any worker can see the command and a second submit has one effect.

        `guard` runs beside the record (e.g. claiming a name); a non-empty answer refuses the command:
        the record is removed and `Refused` raised. If publishing fails the job is marked failed, so
        `/task/status` never shows a phantom.
        """
        job = new_job(command, timefmt.now())

        async def record() -> None:
            with contextlib.suppress(Conflict):  # submitted before: the publish is deduplicated too
                await self.store.create(job.job_id, job)

        # The record and the guard go out together (one round trip): the record's request is sent
        # first on the same connection, and whoever reads the guard's claim needs two more round
        # trips before it reads this job, so it never finds a claim whose job is not there yet.
        if guard is None:
            await record()
            refusal = ""
        else:
            _, refusal = await asyncio.gather(record(), guard())
        if refusal:
            await self.store.delete(job.job_id)
            raise Refused(refusal)
        try:
            await self.bus.publish(subjects.command_subject(command), command, msg_id=command.job_id)
        except Exception as exc:
            await self.move(job.job_id, JobState.FAILED, f"command could not be queued: {exc}")
            raise
        metrics.COMMANDS.labels(job.kind.value).inc()
        metrics.JOBS.labels(job.kind.value, job.state.name.lower()).inc()
        log.info("job %s queued: %s %s", job.job_id, job.op, described(job), extra={"job_id": job.job_id})
        return job

    async def move(self, job_id: str, state: JobState, message: str = "", **fields: Any) -> Job | None:
        """Move a job by the rule of `advance`; returns what is stored afterwards."""
        if job_id in self.finished:
            return None
        before: dict[str, JobState] = {}

        def change(job: Job | None) -> Job | None:
            if job is not None:
                before["state"] = job.state
            return advance(job, state, timefmt.now(), message, **fields)

        stored, revision = await self.store.mutate_entry(job_id, change, known=self.written.pop(job_id, None))
        self._wrote(stored, revision)
        if stored is not None and stored.state != before.get("state"):
            metrics.JOBS.labels(stored.kind.value, stored.state.name.lower()).inc()
            # Each move is a line of the job's log (TY_JOBLOG), whichever service made it.
            level = logging.WARNING if stored.state == JobState.FAILED else logging.INFO
            said = f": {message}" if message else ""
            log.log(level, "job %s %s%s", job_id, stored.state.name.lower(), said, extra={"job_id": job_id})
        if stored is not None and stored.state.final:
            self._finished(job_id)
        return stored

    async def fail(self, job_id: str, reason: str, **fields: Any) -> Job | None:
        return await self.move(job_id, JobState.FAILED, reason, **fields)


def described(job: Job) -> str:
    """What a job is about, for its log: the deployment and machine it names, if any."""
    parts = [job.deploymentname, f"on {job.node_uuid}" if job.node_uuid else ""]
    return " ".join(part for part in parts if part) or job.kind.value


def job_id() -> str:
    """A fresh job id."""
    return new_job_id()
