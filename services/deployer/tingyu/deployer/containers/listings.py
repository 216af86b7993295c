"""Machines' listings of their own desired state (`ty.rpc.desired.<uuid>`).

A machine lists its keys when it may have missed a nudge (at start, after a reconnect, when its
newest write moved since its last listing). Made by the machine itself, a listing is a consumer
created and removed: two requests queued on JetStream's API with every other one of the platform,
and a walk of the stream's blocks on the server. After a change to most of a large fleet, every
machine lists within its check period, and the queue is what the whole platform waits on. The
deployer reads the same keys in one batched direct get instead, answered by the stream itself in
one cut of its writes; the machine falls back to its own consumer when no deployer answers.
"""

from __future__ import annotations

from tingyu.common import subjects
from tingyu.common.bus import Bus
from tingyu.common.desired import DesiredStore
from tingyu.common.errors import InvalidParameter
from tingyu.common.models.containers import DesiredListing, DesiredListingRequest
from tingyu.common.names import is_node_uuid


class Listings:
    """Answers `subjects.DESIRED_LISTING_ALL`; the subject names the machine (its credential allows
    its own alone), never the request."""

    def __init__(self, bus: Bus) -> None:
        self.desired = DesiredStore(bus)

    async def answer(self, subject: str, _: DesiredListingRequest) -> DesiredListing:
        node_uuid = subjects.listing_machine(subject)
        if not is_node_uuid(node_uuid):
            raise InvalidParameter(detail=f"not a machine's listing subject: {subject[:120]!r}")
        return await self.desired.snapshot(node_uuid)
