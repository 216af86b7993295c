"""Deployment names are unique across the fleet: creating a key in `ty_names` claims one.

The API claims at accept time (so a duplicate is refused at once, race-free) and the deployer
claims again when it applies the command (a no-op for the same job). A claim whose create failed,
or whose delete crashed half-way, is stale and may be taken over.
"""

from __future__ import annotations

from tingyu.common import subjects
from tingyu.common.bus import Bus
from tingyu.common.desired import DesiredStore
from tingyu.common.errors import Conflict
from tingyu.common.models.containers import NameClaim


def already_exists(name: str) -> str:
    return f'deployments.apps "{name}" already exists'


async def claim_name(
    bus: Bus,
    name: str,
    node_uuid: str,
    job_id: str,
    *,
    new: bool = False,
    known: tuple[NameClaim | None, int] | None = None,
) -> str:
    """Take `name` for the create job `job_id`; '' when it is ours, else why not. `new`: the name
    is most likely free (a create being accepted), so try to take it first: one round trip.
    `known`: the claim and its revision as the caller just read them (judged without a read)."""
    names = bus.store(subjects.NAMES)
    mine = NameClaim(node_uuid=node_uuid, job_id=job_id)
    if new:
        try:
            await names.create(name, mine)
            return ""
        except Conflict:
            pass  # taken, or stale: judged below
    for _ in range(5):
        if known is not None:
            (current, revision), known = known, None
        else:
            current, revision = await names.entry(name)
        try:
            if current is None:
                await names.create(name, mine)
                return ""
            if current.job_id == job_id:
                return ""
            if not await is_stale(bus, name, current):
                return already_exists(name)
            await names.update(name, mine, revision)
        except Conflict:
            continue  # someone else wrote first: look again
        return ""
    return f'deployments.apps "{name}" is being changed by another request'


async def is_stale(bus: Bus, name: str, claim: NameClaim) -> bool:
    """No desired container behind the claim, and its create job is over (or expired)."""
    if await DesiredStore(bus).get(claim.node_uuid, name) is not None:
        return False
    job = await bus.store(subjects.JOBS).get(claim.job_id)
    return job is None or job.state.final
