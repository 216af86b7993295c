"""Containers (contract §二): every change is a job; reads answer from the state stores."""

from __future__ import annotations

from tingyu.api import params, reads, texts
from tingyu.api.auth import Principal
from tingyu.api.concurrency import gather_bounded
from tingyu.api.config import ApiSettings
from tingyu.api.images_ref import UnknownImage, resolve
from tingyu.api.schemas.containers import (
    ContainerItem,
    ContainerListing,
    ContainerView,
    DeploymentName,
    Found,
    InheritUpdate,
    ItemResult,
    PodInfo,
    PodView,
)
from tingyu.common import timefmt
from tingyu.common.bus import Bus
from tingyu.common.claims import claim_name
from tingyu.common.jobs import JobStore, Refused, job_id
from tingyu.common.models.containers import (
    ContainerCommand,
    ContainerOp,
    ContainerSpec,
    DesiredContainer,
    DesiredState,
    NameClaim,
    NodeObserved,
    PodPhase,
)
from tingyu.common.models.nodes import NodeRecord, NodeStatus
from tingyu.common.policy import Policy


def accepted(name: str, jobid: str) -> ItemResult:
    return ItemResult(code=200, deploymentname=name, message="success", jobid=jobid)


def refused(name: str, message: str) -> ItemResult:
    return ItemResult(code=500, deploymentname=name, message=message)


def all_accepted(results: list[ItemResult]) -> bool:
    return all(result.code == 200 for result in results)


async def submit(bus: Bus, command: ContainerCommand) -> ItemResult:
    """One job for one command; a create first claims its name (a taken name refuses the item)."""

    async def claim() -> str:
        return await claim_name(bus, command.name, command.node_uuid, command.job_id)

    try:
        await JobStore(bus).submit(command, guard=claim if command.op == ContainerOp.CREATE else None)
    except Refused as refusal:
        return refused(command.name, str(refusal))
    return accepted(command.name, command.job_id)


def check_items(items: list[ContainerItem], limit: int) -> None:
    if not items:
        raise texts.missing("the body must list at least one container")
    if len(items) > limit:
        raise texts.too_many(limit, "containers")


async def nodes_of(bus: Bus, uuids: set[str]) -> dict[str, NodeRecord]:
    """Every named machine, or TY0015 for the whole request before anything changes."""
    return {uuid: await reads.node(bus, uuid) for uuid in sorted(uuids)}


def spec_of(item: ContainerItem, image_ref: str) -> ContainerSpec:
    return ContainerSpec(
        image=item.image,
        imageversion=item.imageversion,
        image_ref=image_ref,
        env=item.env,
        volumes=item.volumes,
        requests_cpu=item.requestscpu,
        requests_memory=item.requestsmemory,
        limits_cpu=item.limitscpu,
        limits_memory=item.limitsmemory,
    )


def update_refusal(name: str, uuid: str, owner: NameClaim | None) -> str:
    """Why an update of `name` on machine `uuid` is refused, or ''."""
    if owner is None:
        return texts.not_found(name)
    if owner.node_uuid != uuid:
        return texts.cannot_move(name, owner.node_uuid)
    return ""


def elsewhere(caller: Principal, node: NodeRecord) -> str:
    """Why `caller` may not act on `node` (a machine outside its areas), or ''."""
    area = node.facts.area
    return "" if caller.covers(area) else texts.outside_areas(node.facts.uuid, area, caller.areas)


async def write(
    bus: Bus, settings: ApiSettings, items: list[ContainerItem], op: ContainerOp, *, caller: Principal
) -> list[ItemResult]:
    """Create or update (by name): per-item checks (the edge policy's among them), then one job per
    accepted item."""
    check_items(items, settings.max_items)
    nodes = await nodes_of(bus, {item.uuid for item in items})
    policy = Policy.from_settings(own_registry=settings.platform.registry)
    seen: set[str] = set()
    twice: set[int] = set()
    for index, item in enumerate(items):
        if item.deploymentname in seen:
            twice.add(index)
        seen.add(item.deploymentname)

    async def one(index: int, item: ContainerItem) -> ItemResult:
        name = item.deploymentname
        node = nodes[item.uuid]
        first = (
            (texts.appears_twice(name) if index in twice else "")
            or elsewhere(caller, node)
            or ("" if node.status == NodeStatus.READY else texts.not_ready())
        )
        if first:
            return refused(name, first)
        if op == ContainerOp.UPDATE:  # a create claims its name when it is submitted
            refusal = update_refusal(name, item.uuid, await reads.claim(bus, name))
            if refusal:
                return refused(name, refusal)
        try:
            patch = await resolve(bus, settings.platform.registry, item.image, item.imageversion)
        except UnknownImage as exc:
            return refused(name, str(exc))
        spec = spec_of(item, patch.image_ref)
        refusal = policy.spec_refusal(spec)
        if refusal:
            return refused(name, refusal)
        command = ContainerCommand(
            job_id=job_id(),
            op=op,
            name=name,
            node_uuid=item.uuid,
            spec=spec,
            issued_at=timefmt.now(),
        )
        return await submit(bus, command)

    return await gather_bounded([one(i, item) for i, item in enumerate(items)])


async def inherit_update(
    bus: Bus, settings: ApiSettings, body: InheritUpdate, *, caller: Principal
) -> list[ItemResult]:
    """Move the named deployments to another image version, keeping the rest of their spec."""
    names = params.deployment_list(body.deploymentnames, settings.max_items)
    try:
        patch = await resolve(bus, settings.platform.registry, body.image, body.imageversion)
    except UnknownImage as exc:
        raise texts.invalid(str(exc)) from exc
    results = []
    for name in names:
        owner = await reads.claim(bus, name)
        node = await reads.find_node(bus, owner.node_uuid) if owner else None
        if owner is None or node is None:
            results.append(refused(name, texts.name_unknown()))
            continue
        if outside := elsewhere(caller, node):
            results.append(refused(name, outside))
            continue
        if node.status != NodeStatus.READY:
            results.append(refused(name, texts.not_ready()))
            continue
        command = ContainerCommand(
            job_id=job_id(),
            op=ContainerOp.UPGRADE,
            name=name,
            node_uuid=owner.node_uuid,
            patch=patch,
            issued_at=timefmt.now(),
        )
        results.append(await submit(bus, command))
    return results


async def lifecycle(bus: Bus, names: list[str], op: ContainerOp, *, caller: Principal) -> list[ItemResult]:
    """start/stop/restart/delete: per-name checks and one job each."""

    async def one(name: str) -> ItemResult:
        owner = await reads.claim(bus, name)
        if owner is None:
            return refused(name, texts.not_found(name))
        node = await reads.find_node(bus, owner.node_uuid)
        if node is not None and (outside := elsewhere(caller, node)):
            return refused(name, outside)
        if node is None or node.status != NodeStatus.READY:
            return refused(name, texts.not_ready())
        command = ContainerCommand(
            job_id=job_id(), op=op, name=name, node_uuid=owner.node_uuid, issued_at=timefmt.now()
        )
        return await submit(bus, command)

    return await gather_bounded([one(name) for name in names])


# --- reads ------------------------------------------------------------------------------------------


def container_view(desired: DesiredContainer, node_uuid: str) -> ContainerView:
    spec = desired.spec
    return ContainerView(
        image=spec.image_ref,
        restart="Always",
        name=desired.name,
        volumes=spec.volumes,
        env=spec.env,
        network="host",
        uuid=node_uuid,
        imagename=spec.image,
        imageversion=spec.imageversion,
        requestscpu=spec.requests_cpu,
        requestsmemory=spec.requests_memory,
        limitscpu=spec.limits_cpu,
        limitsmemory=spec.limits_memory,
        desiredstate=desired.state.value,
    )


def pod_info(desired: DesiredContainer, observed: NodeObserved | None) -> PodInfo:
    """What the machine last reported of the deployment (Pending until it has)."""
    seen = observed.containers.get(desired.name) if observed else None
    if seen is None:
        return PodInfo(podname=f"{desired.name}-{desired.revision}", podstate=PodPhase.PENDING.value)
    if seen.message:
        return PodInfo(podname=seen.podname, podstate=seen.phase.value, message=seen.message)
    return PodInfo(podname=seen.podname, podstate=seen.phase.value)


def pod_view(desired: DesiredContainer, observed: NodeObserved | None, timezone: str) -> PodView:
    return PodView(
        createtime=timefmt.to_wire(desired.created_at, timezone),
        podinfo=[pod_info(desired, observed)],
        deploymentname=desired.name,
    )


async def _live(bus: Bus, name: str) -> tuple[str, DesiredContainer] | None:
    """The machine and desired container of a deployment that exists."""
    owner = await reads.claim(bus, name)
    desired = (await reads.desired(bus, owner.node_uuid)).containers.get(name) if owner else None
    if owner is None or desired is None or desired.state == DesiredState.ABSENT:
        return None
    return owner.node_uuid, desired


async def specs(bus: Bus, names: list[str]) -> list[Found[ContainerView]]:
    """The spec of each named deployment."""

    async def one(name: str) -> Found[ContainerView]:
        live = await _live(bus, name)
        if live is None:
            return Found[ContainerView](
                code=500, data=DeploymentName(name=name), message=texts.not_found(name)
            )
        node_uuid, desired = live
        return Found[ContainerView](code=200, data=container_view(desired, node_uuid), message="success")

    return await gather_bounded([one(name) for name in names])


async def pods(bus: Bus, settings: ApiSettings, names: list[str]) -> list[Found[PodView]]:
    """Creation time and pod state of each named deployment."""

    async def one(name: str) -> Found[PodView]:
        live = await _live(bus, name)
        if live is None:
            return Found[PodView](code=500, data=DeploymentName(name=name), message=texts.not_found(name))
        node_uuid, desired = live
        view = pod_view(desired, await reads.observed(bus, node_uuid), settings.platform.timezone)
        return Found[PodView](code=200, data=view, message="success")

    return await gather_bounded([one(name) for name in names])


async def of_machine(bus: Bus, settings: ApiSettings, uuid: str) -> list[ContainerListing]:
    """Every container of one machine, oldest first, with its spec and pod state."""
    await reads.node(bus, uuid)
    desired = await reads.desired(bus, uuid)
    observed = await reads.observed(bus, uuid)
    tz = settings.platform.timezone
    return [
        ContainerListing(**dict(container_view(container, uuid)), **dict(pod_view(container, observed, tz)))
        for container in sorted(desired.containers.values(), key=lambda c: c.created_at)
        if container.state != DesiredState.ABSENT
    ]
