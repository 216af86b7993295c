"""Reads of the state stores (JetStream KV) the API answers from."""

from __future__ import annotations

from tingyu.common import subjects
from tingyu.common.bus import Bus, kv_get, kv_values
from tingyu.common.errors import NodeNotFound
from tingyu.common.models.containers import DesiredContainer, NameClaim, NodeDesired, NodeObserved
from tingyu.common.models.images import ImageRecord
from tingyu.common.models.jobs import Job
from tingyu.common.models.nodes import NodeRecord
from tingyu.common.names import is_deployment_name, is_image_name, is_node_uuid


def node_key(name: str) -> str:
    """A machine named by its uuid (`tingyu-<32 hex>`) or its nodename (`<32 hex>`) -> its uuid."""
    name = name.strip()
    return name if name.startswith("tingyu-") else f"tingyu-{name}"


async def node(bus: Bus, name: str) -> NodeRecord:
    """The machine named by uuid or nodename; TY0015 when unknown (or not a machine name at all)."""
    record = None
    uuid = node_key(name)
    if is_node_uuid(uuid):
        record, _ = await kv_get(await bus.kv(subjects.NODES), uuid, NodeRecord)
    if record is None:
        raise NodeNotFound()
    return record


async def find_node(bus: Bus, name: str) -> NodeRecord | None:
    try:
        return await node(bus, name)
    except NodeNotFound:
        return None


async def all_nodes(bus: Bus) -> list[NodeRecord]:
    return await kv_values(await bus.kv(subjects.NODES), NodeRecord)


async def claim(bus: Bus, name: str) -> NameClaim | None:
    if not is_deployment_name(name):
        return None
    found, _ = await kv_get(await bus.kv(subjects.NAMES), name, NameClaim)
    return found


async def desired(bus: Bus, node_uuid: str) -> NodeDesired:
    found, _ = await kv_get(await bus.kv(subjects.DESIRED), node_uuid, NodeDesired)
    return found or NodeDesired(node_uuid=node_uuid)


async def deployment(bus: Bus, name: str) -> DesiredContainer | None:
    """The desired container named `name`, wherever it lives."""
    owner = await claim(bus, name)
    if owner is None:
        return None
    return (await desired(bus, owner.node_uuid)).containers.get(name)


async def observed(bus: Bus, node_uuid: str) -> NodeObserved | None:
    found, _ = await kv_get(await bus.kv(subjects.OBSERVED_STATE), node_uuid, NodeObserved)
    return found


async def job(bus: Bus, job_id: str) -> Job | None:
    found, _ = await kv_get(await bus.kv(subjects.JOBS), job_id, Job)
    return found


async def image(bus: Bus, name: str) -> ImageRecord | None:
    if not is_image_name(name):
        return None
    found, _ = await kv_get(await bus.kv(subjects.IMAGES), name, ImageRecord)
    return found
