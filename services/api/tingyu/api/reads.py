"""Typed reads of the state stores the API answers from.

Machines, name claims, reports and jobs come from the process's views (`views.py`) once they are
ready; a key a view does not hold is read through to its bucket, so a client that has just created
something (on any API process) finds it. A job that reads as final is answered only once the views
of the buckets it touched reflect its effect. Desired state and images are read from their buckets.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TypeVar

from tingyu.api import views
from tingyu.common import imagecatalog, subjects
from tingyu.common.bus import Bus
from tingyu.common.desired import DesiredStore
from tingyu.common.errors import NodeNotFound
from tingyu.common.models.base import Message
from tingyu.common.models.containers import NameClaim, NodeDesired, NodeReport
from tingyu.common.models.images import ImageRecord
from tingyu.common.models.jobs import Job, JobKind
from tingyu.common.models.nodes import NodeRecord, NodeStatus
from tingyu.common.names import is_deployment_name, is_image_name, is_job_id, is_node_uuid

M = TypeVar("M", bound=Message)


def node_key(name: str) -> str:
    """A machine named by its uuid (`tingyu-<32 hex>`) or its nodename (`<32 hex>`) -> its uuid.
    Nothing is trimmed: `tingyu-<32 hex>\n` is no machine's name."""
    return name if name.startswith("tingyu-") else f"tingyu-{name}"


@dataclass(frozen=True, slots=True)
class Node:
    """What a request checks of a machine: its uuid, area and status."""

    uuid: str
    area: str
    status: NodeStatus

    @classmethod
    def held(cls, machine: views.Machine) -> Node:
        return cls(machine[views.UUID], machine[views.AREA], NodeStatus(machine[views.STATUS]))

    @classmethod
    def of(cls, record: NodeRecord) -> Node:
        return cls(record.facts.uuid, record.facts.area, record.status)


async def node(bus: Bus, name: str) -> Node:
    """The machine named by uuid or nodename; TY0015 when unknown (or not a machine name at all)."""
    uuid = node_key(name)
    held = views.of(bus)
    found = held.nodes.machine(uuid) if held and is_node_uuid(uuid) else None
    if found is not None:
        return Node.held(found)
    record = await _node_record(bus, uuid)
    return Node.of(record)


async def find_node(bus: Bus, name: str) -> Node | None:
    try:
        return await node(bus, name)
    except NodeNotFound:
        return None


async def node_entry(bus: Bus, name: str, timezone: str) -> bytes:
    """The machine named by uuid or nodename as its `/node/list` entry encoded in `timezone`; TY0015
    when unknown."""
    uuid = node_key(name)
    held = views.of(bus)
    if held and held.nodes.timezone == timezone and is_node_uuid(uuid):
        found = held.nodes.machine(uuid)
        if found is not None:
            return held.nodes.entry(found)
    return views.machine(await _node_record(bus, uuid), timezone)[views.ENTRY]


async def _node_record(bus: Bus, uuid: str) -> NodeRecord:
    """The machine's record from its bucket (one the view does not hold yet, or any while the
    view loads); TY0015 when unknown."""
    record = await bus.store(subjects.NODES).get(uuid) if is_node_uuid(uuid) else None
    if record is None:
        raise NodeNotFound()
    return record


async def machines_in_order(bus: Bus, timezone: str, window: slice = views.EVERY) -> list[views.Machine]:
    """The machines in `window` of all of them oldest first (by creation time, then uuid), each
    with its `/node/list` entry encoded in `timezone`: from the view when it is ready (and holds
    that time zone), else from a scan."""
    held = views.of(bus)
    if held and held.nodes.timezone == timezone:
        return held.nodes.machines(window)
    found = sorted(await bus.store(subjects.NODES).values(), key=views.node_order)[window]
    return [views.machine(record, timezone) for record in found]


def node_entries(bus: Bus, timezone: str, machines: list[views.Machine]) -> list[bytes]:
    """The `/node/list` entries of `machines` (from `machines_in_order` with the same time zone):
    with the heartbeat times the nodes view heard since their records were stored, when it holds
    them."""
    held = views.of(bus)
    if held and held.nodes.timezone == timezone:
        return [held.nodes.entry(machine) for machine in machines]
    return [machine[views.ENTRY] for machine in machines]


async def claim(bus: Bus, name: str) -> NameClaim | None:
    """Which machine the deployment `name` lives on (None for a name that cannot exist)."""
    return await _read(bus, subjects.NAMES, name) if is_deployment_name(name) else None


async def desired(bus: Bus, node_uuid: str) -> NodeDesired:
    """Every deployment of one machine, gathered from its keys `<uuid>.*`."""
    return await DesiredStore(bus).node(node_uuid)


async def observed(bus: Bus, node_uuid: str) -> NodeReport | None:
    return await _read(bus, subjects.REPORTED, node_uuid)


async def job(bus: Bus, job_id: str) -> Job | None:
    """The job `job_id` (None for an id that is not of the form `new_job_id` makes). A final job is
    answered once the views of what it changed hold their last writes (`View.caught_up`)."""
    found = await _read(bus, subjects.JOBS, job_id) if is_job_id(job_id) else None
    held = views.of(bus)
    if found is not None and found.state.final and held is not None:
        touched = dict(touches(found))
        await asyncio.gather(
            *(view.caught_up(touched[view.name]) for view in held.all if view.name in touched)
        )
    return found


def touches(job: Job) -> list[tuple[str, str]]:
    """The viewed keys a job changes, as (bucket, key): a container job's name claim and its
    machine's report (the one that completed it, or a later one); the desired state is read from
    its bucket."""
    if job.kind != JobKind.CONTAINER:
        return []
    keys = [(subjects.NAMES.name, job.deploymentname), (subjects.REPORTED.name, job.node_uuid)]
    return [(bucket, key) for bucket, key in keys if key]


async def _read(bus: Bus, spec: subjects.BucketSpec[M], key: str) -> M | None:
    """From the view when it holds the key, else from the bucket (a write the view has not yet
    applied, or a key no view holds)."""
    held = views.of(bus)
    view = held.view(spec) if held else None
    found = view.get(key) if view is not None else None
    if found is not None:
        return found
    return await bus.store(spec).get(key)


async def image(bus: Bus, name: str) -> ImageRecord | None:
    """The image with its versions (its index key and its version keys)."""
    return await imagecatalog.read_image(bus, name) if is_image_name(name) else None


async def all_images(bus: Bus) -> list[ImageRecord]:
    return await imagecatalog.read_all(bus)
