"""Job transitions in the `ty_jobs` bucket. A final job (succeeded or failed) never changes again."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from tingyu.common import subjects, timefmt
from tingyu.common.bus import Bus, kv_mutate
from tingyu.common.models.jobs import Job, JobState


class Jobs:
    """Updates jobs with compare-and-set and remembers recently finished ones to skip re-reads."""

    def __init__(self, bus: Bus, remember: int = 100_000) -> None:
        self.bus = bus
        self.finished: OrderedDict[str, None] = OrderedDict()
        self.remember = remember

    def is_finished(self, job_id: str) -> bool:
        return job_id in self.finished

    async def move(self, job_id: str, state: JobState, message: str = "", **fields: Any) -> Job | None:
        """Move a job forward (never backward, never out of a final state); returns the stored job."""
        if job_id in self.finished:
            return None
        kv = await self.bus.kv(subjects.JOBS)

        def change(job: Job | None) -> Job | None:
            if job is None or job.state.final or (state < job.state and not state.final):
                return None
            update: dict[str, Any] = {"state": state, "updated_at": timefmt.now(), **fields}
            if message:
                update["message"] = message
            return job.model_copy(update=update)

        stored = await kv_mutate(kv, job_id, Job, change)
        if stored is not None and stored.state.final:
            self.finished[job_id] = None
            if len(self.finished) > self.remember:
                self.finished.popitem(last=False)
        return stored
