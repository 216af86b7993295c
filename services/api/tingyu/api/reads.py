"""Typed reads of the state stores the API answers from (each a `Store` of its model)."""

from __future__ import annotations

from tingyu.common import imagecatalog, subjects
from tingyu.common.bus import Bus
from tingyu.common.desired import DesiredStore
from tingyu.common.errors import NodeNotFound
from tingyu.common.models.containers import NameClaim, NodeDesired, NodeReport
from tingyu.common.models.images import ImageRecord
from tingyu.common.models.jobs import Job
from tingyu.common.models.nodes import NodeRecord
from tingyu.common.names import is_deployment_name, is_image_name, is_job_id, is_node_uuid


def node_key(name: str) -> str:
    """A machine named by its uuid (`tingyu-<32 hex>`) or its nodename (`<32 hex>`) -> its uuid.
    Nothing is trimmed: `tingyu-<32 hex>\n` is no machine's name."""
    return name if name.startswith("tingyu-") else f"tingyu-{name}"


async def node(bus: Bus, name: str) -> NodeRecord:
    """The machine named by uuid or nodename; TY0015 when unknown (or not a machine name at all)."""
    uuid = node_key(name)
    record = await bus.store(subjects.NODES).get(uuid) if is_node_uuid(uuid) else None
    if record is None:
        raise NodeNotFound()
    return record


async def find_node(bus: Bus, name: str) -> NodeRecord | None:
    try:
        return await node(bus, name)
    except NodeNotFound:
        return None


async def all_nodes(bus: Bus) -> list[NodeRecord]:
    return await bus.store(subjects.NODES).values()


async def claim(bus: Bus, name: str) -> NameClaim | None:
    """Which machine the deployment `name` lives on (None for a name that cannot exist)."""
    return await bus.store(subjects.NAMES).get(name) if is_deployment_name(name) else None


async def desired(bus: Bus, node_uuid: str) -> NodeDesired:
    """Every deployment of one machine, gathered from its keys `<uuid>.*`."""
    return await DesiredStore(bus).node(node_uuid)


async def observed(bus: Bus, node_uuid: str) -> NodeReport | None:
    return await bus.store(subjects.REPORTED).get(node_uuid)


async def job(bus: Bus, job_id: str) -> Job | None:
    """The job `job_id` (None for an id that is not of the form `new_job_id` makes)."""
    return await bus.store(subjects.JOBS).get(job_id) if is_job_id(job_id) else None


async def image(bus: Bus, name: str) -> ImageRecord | None:
    """The image with its versions (its index key and its version keys)."""
    return await imagecatalog.read_image(bus, name) if is_image_name(name) else None


async def all_images(bus: Bus) -> list[ImageRecord]:
    return await imagecatalog.read_all(bus)
