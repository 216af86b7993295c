"""Image pre-pulls for the platform: `ty.agent.<uuid>.req.pull` (docs/remote.md).

The deployer's pre-pull job asks each machine to have an image; an image already there answers at
once without a pull. At most `parallel` pulls run at once on the machine, each at most at the job's
`ratelimit` (and the machine's own cap, docs/remote.md#bandwidth-cap).
"""

from __future__ import annotations

import asyncio
import logging

from tingyu.agent.runtime import Runtime, RuntimeFailure
from tingyu.common.errors import PullFailed
from tingyu.common.models.remote import PullReply, PullRequest

log = logging.getLogger(__name__)


class Puller:
    """Answers pull requests against this machine's engine."""

    def __init__(self, runtime: Runtime, parallel: int = 1) -> None:
        self.runtime = runtime
        self.slots = asyncio.Semaphore(max(parallel, 1))

    async def handle(self, request: PullRequest) -> PullReply:
        try:
            if await self.runtime.has_image(request.image_ref):
                return PullReply(image_ref=request.image_ref, already_present=True)
            async with self.slots:
                log.info("pre-pulling %s (job %s)", request.image_ref, request.job_id)
                await self.runtime.pull(request.image_ref, request.ratelimit)
        except RuntimeFailure as exc:
            raise PullFailed(detail=f"cannot pull {request.image_ref}: {exc}") from exc
        return PullReply(image_ref=request.image_ref, already_present=False)
