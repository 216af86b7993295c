"""A protocol peer for integration tests: speaks the agent's side of NATS (heartbeats, reports)
without running containers, so the API, deployer and nodes can be tested on their own.
End-to-end tests use the real agent instead."""

from __future__ import annotations

import asyncio
import contextlib

from tests.support.factories import facts, heartbeat
from tingyu.common import subjects, timefmt
from tingyu.common.bus import Bus
from tingyu.common.desired import DesiredStore
from tingyu.common.models.containers import ContainerReport, NodeDesired, NodeReport, PodPhase
from tingyu.common.models.nodes import NodeFacts


class PeerMachine:
    """Heartbeats every `every` seconds until stopped; reports whatever phase a test asks for."""

    def __init__(self, bus: Bus, every: float = 0.5, **fact_fields: str) -> None:
        self.bus = bus
        self.facts: NodeFacts = facts(**fact_fields)
        self.every = every
        self._task: asyncio.Task[None] | None = None
        self.seq = 0

    @property
    def uuid(self) -> str:
        return self.facts.uuid

    async def __aenter__(self) -> PeerMachine:
        self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    def start(self) -> None:
        self._task = asyncio.create_task(self._beat())

    async def stop(self) -> None:
        if self._task:
            await cancel(self._task)
            self._task = None

    async def _beat(self) -> None:
        while True:
            await self.bus.emit(subjects.heartbeat(self.uuid), heartbeat(self.facts, at=timefmt.now()))
            await asyncio.sleep(self.every)

    async def desired(self) -> NodeDesired | None:
        """Every deployment of this machine (its keys `<uuid>.*` in `ty_desired`)."""
        return await DesiredStore(self.bus).node(self.uuid)

    async def report(
        self,
        phases: dict[str, PodPhase],
        message: str = "",
        *,
        revision: int | None = None,
        job_id: str | None = None,
        reported_at: float | None = None,
        applied: NodeDesired | None = None,
    ) -> NodeReport:
        """Report that this machine applied its current desired revision of each named deployment;
        `revision`, `job_id` and `reported_at` make it a stale or late report instead. `applied`: the
        desired state the phases were judged from (default: read now). An agent reports the revision
        it acted on: phases judged from one read and revisions from a later one would tell of a spec
        the machine never ran."""
        doc = applied or await self.desired()
        assert doc is not None
        self.seq += 1
        containers = {
            name: ContainerReport(
                name=name,
                revision=doc.containers[name].revision if revision is None else revision,
                job_id=doc.containers[name].job_id if job_id is None else job_id,
                phase=phase,
                podname=f"{name}-peer",
                message=message,
            )
            for name, phase in phases.items()
        }
        report = NodeReport(
            node_uuid=self.uuid,
            containers=containers,
            reported_at=timefmt.now() if reported_at is None else reported_at,
            seq=self.seq,
        )
        await self.bus.publish(subjects.report(self.uuid), report)
        return report


async def cancel(task: asyncio.Task[None]) -> None:
    """Cancel `task` until it has ended: a cancellation that lands while a NATS request completes can
    be swallowed by the client's `wait_for`, and a loop would then go on for ever."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=1.0)
    with contextlib.suppress(asyncio.CancelledError):
        await task
