"""The containers slice's handlers: operators' commands, and agents' reports of what they applied.

Commands: claim the name, write desired state (the deployment's own key), nudge the agent with the
key's new revision, dispatch the job and set its timer. Each step is idempotent, so a command
redelivered after a crash at any point has one effect.
Reports: store the observed state and complete the jobs whose revision was applied. A report names
each deployment's revision and job, so a job this replica dispatched completes from what it wrote
(`Dispatched`); only other open deployments (and failed or deleted ones) are read back.
Transactions: a change of spec commits when its job succeeds and rolls back when it fails (the
decisions are the pure `commit` and `roll_back` of the rules; this stores them and nudges the agent).
"""

from __future__ import annotations

import asyncio
import logging
import time
from array import array
from collections import OrderedDict
from collections.abc import Iterable
from typing import NamedTuple

from nats.aio.msg import Msg

from tingyu.common import subjects, timefmt
from tingyu.common.bus import Bus
from tingyu.common.bus.consumers import Reject
from tingyu.common.claims import claim_name
from tingyu.common.desired import DesiredStore, gather
from tingyu.common.jobs import JobStore
from tingyu.common.models.containers import (
    ContainerCommand,
    ContainerOp,
    ContainerReport,
    DesiredContainer,
    DesiredNudge,
    NodeDesired,
    NodeReport,
    PodPhase,
)
from tingyu.common.models.jobs import JobDeadline, JobState
from tingyu.deployer.containers.rules import (
    Outcome,
    applied,
    apply,
    commit,
    newer,
    roll_back,
    verdict,
    without,
)

log = logging.getLogger(__name__)


class Dispatched:
    """The deployments as this replica wrote them for the jobs it dispatched (without env and
    volumes: what judging a report needs), by job id, the most recent `limit` of them. A report
    that applied one completes its job without reading `ty_desired` back; a rollback or commit
    reads the key itself, so an entry here never decides one."""

    def __init__(self, limit: int = 20_000) -> None:
        self.limit = limit
        self.entries: OrderedDict[str, DesiredContainer] = OrderedDict()

    def remember(self, entry: DesiredContainer) -> None:
        spare: dict[str, list[object]] = {"env": [], "volumes": []}
        self.entries[entry.job_id] = entry.model_copy(
            update={
                "spec": entry.spec.model_copy(update=spare),
                "fallback": entry.fallback.model_copy(update=spare) if entry.fallback else None,
            }
        )
        self.entries.move_to_end(entry.job_id)
        while len(self.entries) > self.limit:
            self.entries.popitem(last=False)

    def get(self, seen: ContainerReport) -> DesiredContainer | None:
        """The deployment as written for the job and revision a report names, if remembered."""
        entry = self.entries.get(seen.job_id)
        return entry if entry is not None and entry.revision == seen.revision else None

    def forget(self, job_id: str) -> None:
        self.entries.pop(job_id, None)


class Commands:
    """Handles `ty.cmd.container.*`."""

    def __init__(
        self, bus: Bus, jobs: JobStore, job_timeout_s: float, dispatched: Dispatched | None = None
    ) -> None:
        self.bus = bus
        self.dispatched = dispatched or Dispatched()
        self.jobs = jobs
        self.job_timeout_s = job_timeout_s
        self.nodes = bus.store(subjects.NODES)
        self.names = bus.store(subjects.NAMES)
        self.desired = DesiredStore(bus)

    async def handle(self, command: ContainerCommand, _: Msg) -> None:
        creating = command.op == ContainerOp.CREATE
        # The job, the machine and (for a create) the name's claim, read at once: one round trip.
        job, node, claim = await asyncio.gather(
            self.jobs.get(command.job_id),
            self.nodes.get(command.node_uuid),
            self.names.entry(command.name) if creating else asyncio.sleep(0, (None, 0)),
        )
        if job is not None and job.state.final:
            return
        if node is None:
            await self.jobs.fail(command.job_id, f"machine {command.node_uuid} is not registered")
            return
        if creating:
            refusal = await claim_name(self.bus, command.name, command.node_uuid, command.job_id, known=claim)
            if refusal:
                await self.jobs.fail(command.job_id, refusal)
                return
        outcome, revision = await self.write_desired(command)
        if outcome.error:
            await self.jobs.fail(command.job_id, outcome.error)
            return
        # The agent starts on it at once. The job reads dispatched and gets its timer meanwhile: a
        # report that completes it first makes the move a no-op (a final job never changes), and a
        # redelivery after a crash here nudges again (the agent skips a revision it holds).
        await nudge(self.bus, command.node_uuid, command.name, revision)
        await self.jobs.move(
            command.job_id,
            JobState.DISPATCHED,
            revision=outcome.revision,
            goal=outcome.goal.value,
            node_uuid=command.node_uuid,
        )
        if outcome.superseded and outcome.superseded != command.job_id:
            await self.jobs.fail(outcome.superseded, f"superseded by job {command.job_id}")
        deadline = JobDeadline(
            job_id=command.job_id,
            deadline=command.issued_at + self.job_timeout_s,
            dispatched_at=timefmt.now(),
        )
        await self.bus.publish(
            subjects.job_deadline(command.job_id), deadline, msg_id=f"deadline-{command.job_id}"
        )

    async def write_desired(self, command: ContainerCommand) -> tuple[Outcome, int]:
        """Apply the command to its deployment's key: the outcome and the key's revision."""
        outcome = Outcome()

        def change(entry: DesiredContainer | None) -> DesiredContainer | None:
            nonlocal outcome
            doc = one(command.node_uuid, entry)
            outcome = apply(doc, command, timefmt.now())
            return doc.containers.get(command.name) if outcome.changed and not outcome.error else None

        fresh = command.op == ContainerOp.CREATE
        stored, revision = await self.desired.mutate(command.node_uuid, command.name, change, fresh=fresh)
        if outcome.error:
            log.info("job %s (%s %s) refused: %s", command.job_id, command.op, command.name, outcome.error)
        elif stored is not None and stored.job_id == command.job_id:
            self.dispatched.remember(stored)
        return outcome, revision


def one(node_uuid: str, entry: DesiredContainer | None) -> NodeDesired:
    """A deployment's key as the rules see a machine: a document holding it alone (or nothing)."""
    return gather(node_uuid, [entry] if entry is not None else [])


async def nudge(bus: Bus, node_uuid: str, name: str, revision: int) -> None:
    """Tell the agent which key changed and its revision (it reads that key alone)."""
    if revision:
        await bus.emit(subjects.agent_nudge(node_uuid), DesiredNudge(name=name, revision=revision))


class Transactions:
    """Stores the end of a change of spec: committed, or rolled back to the spec that ran."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.desired = DesiredStore(bus)

    async def commit(self, node_uuid: str, name: str, job_id: str) -> None:
        """The change made by `job_id` ran: forget the fallback (before the job reads succeeded)."""

        def change(entry: DesiredContainer | None) -> DesiredContainer | None:
            doc = one(node_uuid, entry)
            return doc.containers[name] if commit(doc, name, job_id) else None

        await self.desired.mutate(node_uuid, name, change)

    async def roll_back(self, node_uuid: str, name: str, job_id: str, reason: str) -> bool:
        """The change made by `job_id` failed: the machine goes back to the last spec that ran."""
        rolled = False

        def change(entry: DesiredContainer | None) -> DesiredContainer | None:
            nonlocal rolled
            doc = one(node_uuid, entry)
            rolled = roll_back(doc, name, job_id, reason, timefmt.now())
            return doc.containers[name] if rolled else None

        _, revision = await self.desired.mutate(node_uuid, name, change)
        if rolled:
            log.info(
                "deployment %s on %s rolled back after job %s failed: %s",
                *(name, node_uuid, job_id, reason),
                extra={"job_id": job_id},  # a line of the job's log (TY_JOBLOG)
            )
            await nudge(self.bus, node_uuid, name, revision)
        return rolled


class Stored(NamedTuple):
    """What a replica remembers of the last report it stored for a machine and judged in full."""

    reported_at: float  # the newest report time seen with these deployments (what `newer` compares)
    revision: int  # the revision of the machine's key in `ty_observed`
    content: int  # `content_digest` of the report's deployments
    written_at: float  # when this replica last wrote the key (monotonic)
    finished: bytes = b""  # `packed` marks of the report's jobs known final (`job_mark`)


def content_digest(report: NodeReport) -> int:
    """A number that changes whenever any deployment of the report does (this process's hash of
    every field: kept in memory only)."""
    return hash(tuple((name, *vars(seen).values()) for name, seen in sorted(report.containers.items())))


def job_mark(job_id: str) -> int:
    """A job id as 8 bytes of memory (this process's hash: two ids of one machine's deployments
    share a mark with a chance of one in 2^64)."""
    return hash(job_id)


def packed(marks: Iterable[int]) -> bytes:
    return array("q", sorted(marks)).tobytes()


def unpacked(data: bytes) -> set[int]:
    return set(array("q", data)) if data else set()


def ending(seen: ContainerReport) -> bool:
    """A deployment reported failed or deleted: acted on whatever its job's state (a crash may have
    come between a job's end and its rollback or removal)."""
    return seen.phase in (PodPhase.FAILED, PodPhase.DELETED)


class Reports:
    """Handles `ty.evt.observed.*`."""

    # An unchanged report is still written (and judged) once this long after the last write, so the
    # stored one is never older than this and another replica's late write is corrected.
    REWRITE_S = 1800.0

    def __init__(
        self,
        bus: Bus,
        jobs: JobStore,
        dispatched: Dispatched | None = None,
        stored_limit: int = 200_000,
    ) -> None:
        self.jobs = jobs
        self.dispatched = dispatched or Dispatched()
        self.transactions = Transactions(bus)
        self.observed = bus.store(subjects.REPORTED)
        # Per machine, the last report this replica stored and judged (`Stored`, 0.45 KiB with ten
        # deployments), for the `stored_limit` machines heard from most recently (90 MiB for
        # 200 000). A fleet that fits writes a changed report without reading the one before, an
        # unchanged one (an agent repeats its report every few minutes) costs neither a write nor
        # a read, and the jobs of its deployments known final are not read back, however many jobs
        # the fleet has (the job store remembers only the most recent).
        self.stored: dict[str, Stored] = {}
        self.stored_limit = stored_limit
        self.unchanged = 0  # reports skipped as unchanged
        self.desired = DesiredStore(bus)
        self.names = bus.store(subjects.NAMES)

    async def handle(self, report: NodeReport, msg: Msg) -> None:
        # The subject names the machine its credential allows: a report about another is refused.
        if msg.subject != subjects.report(report.node_uuid):
            raise Reject(f"report about {report.node_uuid} arrived on {msg.subject}")
        content = content_digest(report)
        if self.same_as_stored(report, content):
            return
        last = self.stored.get(report.node_uuid)
        finished = unpacked(last.finished) if last is not None else set()
        kept = await self.store_observed(report, content)
        doc = await self.open_deployments(report, finished)
        # Each deployment has its own key and job: they are judged at once, not one after another.
        judged = await asyncio.gather(
            *(self.judge(report.node_uuid, entry, seen) for entry, seen in applied(doc, report))
        )
        if kept is not None:  # stored and judged: an unchanged report after this one is neither
            finished |= {job_mark(job_id) for job_id in judged if job_id}
            self.remember(report.node_uuid, kept._replace(finished=self.finished_now(report, finished)))

    async def judge(self, node_uuid: str, entry: DesiredContainer, seen: ContainerReport) -> str | None:
        """Complete, commit, roll back or forget one deployment by what the report says of it;
        its job id when that job is final."""
        outcome = verdict(entry, seen)
        final = self.jobs.is_finished(entry.job_id)
        if not final:
            if outcome.commit:
                await self.transactions.commit(node_uuid, entry.name, entry.job_id)
            job = await self.jobs.move(entry.job_id, outcome.state, outcome.message)
            final = job is not None and job.state.final
            if outcome.state.final:
                self.dispatched.forget(entry.job_id)
        if outcome.roll_back:
            # Also for a job already failed: a crash may have come between its failure and the rollback.
            await self.transactions.roll_back(node_uuid, entry.name, entry.job_id, outcome.roll_back)
        if outcome.forget:
            await self.forget(node_uuid, entry)
        return entry.job_id if final else None

    def same_as_stored(self, report: NodeReport, content: int) -> bool:
        """The report says what the last one this replica stored and judged said, and that one was
        written less than `REWRITE_S` ago: judging it again changes nothing. Its time is kept, so
        that an older report arriving late is still refused by `newer`."""
        last = self.stored.get(report.node_uuid)
        if last is None or last.content != content or time.monotonic() - last.written_at > self.REWRITE_S:
            return False
        if report.reported_at > last.reported_at:
            self.stored[report.node_uuid] = last._replace(reported_at=report.reported_at)
        self.unchanged += 1
        return True

    async def store_observed(self, report: NodeReport, content: int) -> Stored | None:
        """Keep the report unless a more recent one is stored; returns what is stored then. The
        time and revision of the last one this replica stored are all `newer` needs: the next is
        written without reading it back."""
        node = report.node_uuid
        last = self.stored.pop(node, None)
        placeholder = NodeReport(node_uuid=node, reported_at=last.reported_at) if last else None
        known = (placeholder, last.revision) if last else None
        stored, revision = await self.observed.mutate_entry(
            node, lambda current: newer(current, report), known=known
        )
        if stored is None or not revision:
            return None
        if stored is report:
            return Stored(report.reported_at, revision, content, time.monotonic())
        if last is not None and stored is placeholder:  # the one remembered is more recent
            return last
        return Stored(stored.reported_at, revision, content_digest(stored), time.monotonic())  # read back

    def remember(self, node: str, stored: Stored) -> None:
        self.stored.pop(node, None)
        self.stored[node] = stored  # the newest entry goes last
        if len(self.stored) > self.stored_limit:
            del self.stored[next(iter(self.stored))]

    async def open_deployments(self, report: NodeReport, finished: set[int]) -> NodeDesired:
        """The desired deployments the report may complete, change or remove: those whose job is
        still open, and those that failed or are deleted (a crash may have come between a job's
        end and its rollback or removal). A report about deployments at rest reads nothing.
        `finished`: marks of jobs known final (`job_mark`) besides those the job store remembers;
        it gains those found final here. A job known neither way is read before its deployment
        (after a restart most are final, and then the deployment is not read)."""
        acting = {name: seen for name, seen in report.containers.items() if self.may_act(seen, finished)}
        known = {name: entry for name, seen in acting.items() if (entry := self.dispatched.get(seen))}
        settled = [(name, seen) for name, seen in acting.items() if name not in known and not ending(seen)]
        jobs = await asyncio.gather(*(self.jobs.read(seen.job_id) for _, seen in settled))
        at_rest = {name for (name, _), job in zip(settled, jobs, strict=True) if job and job.state.final}
        finished |= {job_mark(acting[name].job_id) for name in at_rest}
        unknown = [name for name in acting if name not in known and name not in at_rest]
        read = await asyncio.gather(*(self.desired.get(report.node_uuid, name) for name in unknown))
        return gather(report.node_uuid, [*known.values(), *(entry for entry in read if entry is not None)])

    def may_act(self, seen: ContainerReport, finished: set[int]) -> bool:
        if ending(seen):
            return True
        return job_mark(seen.job_id) not in finished and not self.jobs.is_finished(seen.job_id)

    def finished_now(self, report: NodeReport, known: set[int]) -> bytes:
        """The marks of the report's jobs known final once it is judged (a final job stays final):
        `known` ones and those the job store remembers."""
        marks = set()
        for seen in report.containers.values():
            mark = job_mark(seen.job_id)
            if mark in known or self.jobs.is_finished(seen.job_id):
                marks.add(mark)
        return packed(marks)

    async def forget(self, node_uuid: str, entry: DesiredContainer) -> None:
        """A deleted deployment leaves the desired state, then frees its name."""
        current = await self.desired.get(node_uuid, entry.name)
        if without(one(node_uuid, current), entry) is not None:
            await self.desired.remove(node_uuid, entry.name)
        claim = await self.names.get(entry.name)
        if claim is not None and claim.node_uuid == node_uuid:
            await self.names.delete(entry.name)
        log.info("deployment %s deleted from %s", entry.name, node_uuid)
