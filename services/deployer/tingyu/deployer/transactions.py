"""Changes of spec as transactions: committed when their job succeeds, rolled back when it fails.

The decisions are the pure `commit` and `roll_back` of `desired`; this module only stores them
and nudges the machine, so that it converges back to the spec that ran.
"""

from __future__ import annotations

import logging

from tingyu.common import subjects, timefmt
from tingyu.common.bus import Bus, kv_mutate
from tingyu.common.models.containers import NodeDesired
from tingyu.deployer.desired import commit, roll_back

log = logging.getLogger(__name__)


async def commit_change(bus: Bus, node_uuid: str, name: str, job_id: str) -> None:
    """The change made by `job_id` ran: forget the fallback (before the job reads succeeded)."""

    def change(doc: NodeDesired | None) -> NodeDesired | None:
        return doc if doc is not None and commit(doc, name, job_id) else None

    await kv_mutate(await bus.kv(subjects.DESIRED), node_uuid, NodeDesired, change)


async def roll_back_change(bus: Bus, node_uuid: str, name: str, job_id: str, reason: str) -> bool:
    """The change made by `job_id` failed: the machine goes back to the last spec that ran."""
    rolled = False

    def change(doc: NodeDesired | None) -> NodeDesired | None:
        nonlocal rolled
        rolled = doc is not None and roll_back(doc, name, job_id, reason, timefmt.now())
        return doc if rolled else None

    await kv_mutate(await bus.kv(subjects.DESIRED), node_uuid, NodeDesired, change)
    if rolled:
        log.info("deployment %s on %s rolled back after job %s failed: %s", name, node_uuid, job_id, reason)
        await bus.nc.publish(subjects.agent_nudge(node_uuid), b"")
    return rolled
