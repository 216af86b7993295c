"""The containers a rollout may move: the image's deployments on the area's and operator's machines."""

from __future__ import annotations

from tingyu.common import subjects
from tingyu.common.bus import Bus
from tingyu.common.desired import DesiredStore
from tingyu.common.models.containers import DesiredState
from tingyu.deployer.rollouts.plan import Candidate


async def candidates(bus: Bus, area: str, operator: str, image: str) -> list[Candidate]:
    """Every deployment whose spec runs `image` (any version), except those being deleted."""
    desired = DesiredStore(bus)
    found: list[Candidate] = []
    for node in await bus.store(subjects.NODES).values():
        if node.facts.area != area or node.facts.operator != operator:
            continue
        doc = await desired.node(node.facts.uuid)
        found.extend(
            Candidate(entry.name, node.facts.uuid, entry.spec.imageversion)
            for entry in doc.containers.values()
            if entry.spec.image == image and entry.state != DesiredState.ABSENT
        )
    return found
