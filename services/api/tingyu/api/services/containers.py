"""Containers (contract §二): every change is a job; reads answer from the state stores.

A machine is named by its uuid or its nodename. While a change of spec is in flight, reads show
the spec the machine still runs; a change that failed and was rolled back shows in `failedupdate`.
"""

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
    FailedUpdate,
    Found,
    InheritUpdate,
    ItemResult,
    LifecycleAnswer,
    PodInfo,
    PodView,
)
from tingyu.common import timefmt
from tingyu.common.bus import Bus
from tingyu.common.claims import claim_name
from tingyu.common.errors import DeploymentNotFound, Forbidden, InternalError, NodeNotReady
from tingyu.common.jobs import JobStore, Refused, job_id
from tingyu.common.models.containers import (
    ContainerCommand,
    ContainerOp,
    ContainerSpec,
    DesiredContainer,
    DesiredState,
    NameClaim,
    NodeReport,
    PodPhase,
)
from tingyu.common.models.nodes import NodeStatus
from tingyu.common.policy import Policy


def accepted(name: str, jobid: str) -> ItemResult:
    return ItemResult(code=200, deploymentname=name, message="success", jobid=jobid)


def refused(name: str, message: str) -> ItemResult:
    return ItemResult(code=500, deploymentname=name, message=message)


# The contract's msg per operation: every name accepted, some accepted, none accepted.
VERDICTS = {
    ContainerOp.START: ("启动成功!", "部分容器启动失败,详见data", "容器启动失败!"),
    ContainerOp.STOP: ("停止成功!", "部分容器停止失败,详见data", "容器停止失败!"),
    ContainerOp.RESTART: ("重启成功!", "部分容器重启失败,详见data", "容器重启失败!"),
}


def verdict(results: list[ItemResult], op: ContainerOp) -> LifecycleAnswer:
    """start/stop/restart: 200 when at least one name was accepted; `code: 500` with the reasons
    (`tycode`, `detail`) when none was, so a client checking `code == 200` never takes it for success."""
    success, partial, failure = VERDICTS[op]
    accepted = sum(1 for result in results if result.code == 200)
    if accepted:
        return LifecycleAnswer(msg=success if accepted == len(results) else partial, code=200, data=results)
    reasons = [result.message for result in results]
    if all(result.message == texts.not_found(result.deploymentname) for result in results):
        tycode = DeploymentNotFound.code
    elif all(r == texts.not_ready() or "not found" in r for r in reasons):
        tycode = NodeNotReady.code
    elif all(texts.is_outside_areas(r) for r in reasons):
        tycode = Forbidden.code
    else:
        tycode = InternalError.code
    detail = "; ".join(f"{result.deploymentname}: {result.message}" for result in results)
    return LifecycleAnswer(msg=failure, code=500, tycode=tycode, detail=detail, data=results)


async def submit(bus: Bus, command: ContainerCommand) -> ItemResult:
    """One job for one command; a create first claims its name (a taken name refuses the item)."""

    async def claim() -> str:
        return await claim_name(bus, command.name, command.node_uuid, command.job_id, new=True)

    try:
        await JobStore(bus).submit(command, guard=claim if command.op == ContainerOp.CREATE else None)
    except Refused as refusal:
        return refused(command.name, str(refusal))
    return accepted(command.name, command.job_id)


def check_items(items: list[ContainerItem], limit: int) -> None:
    if not items:
        raise texts.empty_body("container")
    if len(items) > limit:
        raise texts.over_limit(limit, "containers")


async def nodes_of(bus: Bus, names: set[str]) -> dict[str, reads.Node]:
    """Every named machine (by uuid or nodename), or TY0015 for the whole request before anything changes."""
    return {name: await reads.node(bus, name) for name in sorted(names)}


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


def elsewhere(caller: Principal, node: reads.Node) -> str:
    """Why `caller` may not act on `node` (a machine outside its areas), or ''."""
    return "" if caller.covers(node.area) else texts.outside_areas(node.uuid, node.area, caller.areas)


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
        uuid = node.uuid
        first = (
            (texts.appears_twice(name) if index in twice else "")
            or elsewhere(caller, node)
            or ("" if node.status == NodeStatus.READY else texts.not_ready())
        )
        if first:
            return refused(name, first)
        if op == ContainerOp.UPDATE:  # a create claims its name when it is submitted
            refusal = update_refusal(name, uuid, await reads.claim(bus, name))
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
            node_uuid=uuid,
            spec=spec,
            issued_at=timefmt.now(),
        )
        return await submit(bus, command)

    return await gather_bounded([one(i, item) for i, item in enumerate(items)])


async def inherit_update(
    bus: Bus, settings: ApiSettings, body: InheritUpdate, *, caller: Principal
) -> list[ItemResult]:
    """Move the named deployments to another image version, keeping the rest of their spec.

    Names are judged before the image (as the contract's example shows): unknown names answer
    `Get Deploymentname Fail` per item; an unknown image refuses the request only when some name exists.
    """
    names = params.deployment_list(body.deploymentnames, settings.max_items, "deploymentnames")
    results: dict[str, ItemResult] = {}
    owners: dict[str, NameClaim] = {}
    for name in names:
        owner = await reads.claim(bus, name)
        node = await reads.find_node(bus, owner.node_uuid) if owner else None
        if owner is None or node is None:
            results[name] = refused(name, texts.name_unknown())
        elif outside := elsewhere(caller, node):
            results[name] = refused(name, outside)
        elif node.status != NodeStatus.READY:
            results[name] = refused(name, texts.not_ready())
        else:
            owners[name] = owner
    if owners:
        try:
            patch = await resolve(bus, settings.platform.registry, body.image, body.imageversion)
        except UnknownImage as exc:
            raise texts.not_allowed(str(exc)) from exc
    for name, owner in owners.items():
        command = ContainerCommand(
            job_id=job_id(),
            op=ContainerOp.UPGRADE,
            name=name,
            node_uuid=owner.node_uuid,
            patch=patch,
            issued_at=timefmt.now(),
        )
        results[name] = await submit(bus, command)
    return [results[name] for name in names]


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


async def operate(bus: Bus, names: list[str], op: ContainerOp, *, caller: Principal) -> LifecycleAnswer:
    """start/stop/restart: one job per accepted name, and the verdict over all of them."""
    return verdict(await lifecycle(bus, names, op, caller=caller), op)


# --- reads ------------------------------------------------------------------------------------------


def container_view(desired: DesiredContainer, node_uuid: str) -> ContainerView:
    """The spec the machine runs (while a change is in flight, the one it runs until that succeeds)."""
    spec = desired.running_spec
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


def pod_info(desired: DesiredContainer, observed: NodeReport | None) -> PodInfo:
    """What the machine last reported of the deployment (Pending until it has)."""
    seen = observed.containers.get(desired.name) if observed else None
    if seen is None:
        return PodInfo(podname=f"{desired.name}-{desired.revision}", podstate=PodPhase.PENDING.value)
    if seen.message:
        return PodInfo(podname=seen.podname, podstate=seen.phase.value, message=seen.message)
    return PodInfo(podname=seen.podname, podstate=seen.phase.value)


def failed_update(desired: DesiredContainer, timezone: str) -> FailedUpdate | None:
    """The last change of spec that failed and was rolled back, until a later one succeeds."""
    failed = desired.failed
    if failed is None:
        return None
    return FailedUpdate(
        jobid=failed.job_id,
        imagename=failed.image,
        imageversion=failed.imageversion,
        image=failed.image_ref,
        message=failed.reason,
        time=timefmt.to_wire(failed.at, timezone),
    )


def pod_view(desired: DesiredContainer, observed: NodeReport | None, timezone: str) -> PodView:
    view = PodView(
        createtime=timefmt.to_wire(desired.created_at, timezone),
        podinfo=[pod_info(desired, observed)],
        deploymentname=desired.name,
    )
    failed = failed_update(desired, timezone)
    if failed is not None:
        view.failedupdate = failed
    return view


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


def listing(view: ContainerView, pod: PodView) -> ContainerListing:
    """A container's spec and pod state in one object (a key the pod view leaves out stays out)."""
    return ContainerListing(**dict(view), **{key: getattr(pod, key) for key in pod.model_fields_set})


async def of_machine(bus: Bus, settings: ApiSettings, name: str) -> list[ContainerListing]:
    """Every container of one machine (by uuid or nodename), oldest first, with its spec and pod state."""
    uuid = (await reads.node(bus, name)).uuid
    desired = await reads.desired(bus, uuid)
    observed = await reads.observed(bus, uuid)
    tz = settings.platform.timezone
    return [
        listing(container_view(container, uuid), pod_view(container, observed, tz))
        for container in sorted(desired.containers.values(), key=lambda c: c.created_at)
        if container.state != DesiredState.ABSENT
    ]
