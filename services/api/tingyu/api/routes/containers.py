"""Container interfaces (contract §二): every change is a job; reads answer from the state stores."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query

from tingyu.api import envelope, state
from tingyu.api.concurrency import gather_bounded
from tingyu.api.deps import BusDep, SettingsDep
from tingyu.api.images_ref import UnknownImage, resolve
from tingyu.api.schemas.containers import ContainerItem, InheritUpdate
from tingyu.common import jobs, subjects, timefmt
from tingyu.common.bus import Bus
from tingyu.common.claims import claim_name
from tingyu.common.errors import (
    DeploymentNotFound,
    InternalError,
    InvalidParameter,
    MissingParameter,
    NodeNotReady,
)
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
from tingyu.common.models.jobs import JobKind
from tingyu.common.models.nodes import NodeRecord, NodeStatus
from tingyu.common.names import split_csv

router = APIRouter(prefix="/container", tags=["containers"])

ItemsBody = Annotated[list[ContainerItem], Body()]

NOT_READY = "Node is not ready"


def not_found(name: str) -> str:
    """The contract's message for an unknown deployment name."""
    return f'deployments.apps "{name}" not found'


def _names(name: str, limit: int, field: str = "name") -> list[str]:
    names = split_csv(name)
    if not names:
        raise MissingParameter(detail=f"{field} is required (comma-separated deployment names)")
    if len(names) > limit:
        raise InvalidParameter(detail=f"at most {limit} names per request")
    return list(dict.fromkeys(names))


def _items(items: list[ContainerItem], limit: int) -> None:
    if not items:
        raise MissingParameter(detail="the body must list at least one container")
    if len(items) > limit:
        raise InvalidParameter(detail=f"at most {limit} containers per request")


async def _nodes_of(bus: Bus, names: set[str]) -> dict[str, NodeRecord]:
    """Every named machine (by uuid or nodename), or TY0015 for the whole request before anything changes."""
    return {name: await state.node(bus, name) for name in sorted(names)}


async def _submit(bus: Bus, command: ContainerCommand) -> dict[str, Any]:
    async def claim() -> str:
        return await claim_name(bus, command.name, command.node_uuid, command.job_id)

    try:
        await jobs.submit_job(
            bus,
            kind=JobKind.CONTAINER,
            op=command.op.value,
            subject_of=subjects.container_command,
            command=command,
            job_id=command.job_id,
            deploymentname=command.name,
            node_uuid=command.node_uuid,
            guard=claim if command.op == ContainerOp.CREATE else None,
        )
    except jobs.Refused as refusal:
        return envelope.item(command.name, str(refusal), 500)
    return envelope.item(command.name, jobid=command.job_id)


def _spec(item: ContainerItem, image_ref: str) -> ContainerSpec:
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


async def _write(
    bus: BusDep, settings: SettingsDep, items: list[ContainerItem], op: ContainerOp
) -> dict[str, Any]:
    """Shared by create and updateByName: per-item checks, then one job per accepted item."""
    _items(items, settings.max_items)
    nodes = await _nodes_of(bus, {item.uuid for item in items})
    seen: set[str] = set()
    twice: set[int] = set()
    for index, item in enumerate(items):
        if item.deploymentname in seen:
            twice.add(index)
        seen.add(item.deploymentname)

    async def one(index: int, item: ContainerItem) -> dict[str, Any]:
        name = item.deploymentname
        if index in twice:
            return envelope.item(name, f"deployment {name} appears twice in this request", 500)
        node = nodes[item.uuid]
        if node.status != NodeStatus.READY:
            return envelope.item(name, NOT_READY, 500)
        uuid = node.facts.uuid
        if op == ContainerOp.UPDATE:  # a create claims its name when it is submitted
            refusal = _update_refusal(name, uuid, await state.claim(bus, name))
            if refusal:
                return envelope.item(name, refusal, 500)
        try:
            patch = await resolve(bus, settings.platform.registry, item.image, item.imageversion)
        except UnknownImage as exc:
            return envelope.item(name, str(exc), 500)
        command = ContainerCommand(
            job_id=jobs.job_id(),
            op=op,
            name=name,
            node_uuid=uuid,
            spec=_spec(item, patch.image_ref),
            issued_at=timefmt.now(),
        )
        return await _submit(bus, command)

    return envelope.ok(await gather_bounded([one(i, item) for i, item in enumerate(items)]))


def _update_refusal(name: str, uuid: str, owner: NameClaim | None) -> str:
    """Why an update of `name` on machine `uuid` is refused, or ''."""
    if owner is None:
        return not_found(name)
    if owner.node_uuid != uuid:
        return f"deployment {name} runs on {owner.node_uuid}; it cannot move machines"
    return ""


@router.post("/create")
async def create(bus: BusDep, settings: SettingsDep, items: ItemsBody) -> dict[str, Any]:
    """Create containers on machines; each accepted item answers a jobid to follow in /task/status."""
    return await _write(bus, settings, items, ContainerOp.CREATE)


@router.put("/updateByName")
async def update_by_name(
    bus: BusDep,
    settings: SettingsDep,
    items: ItemsBody,
) -> dict[str, Any]:
    """Replace the spec of existing containers by deploymentname (the container is recreated)."""
    return await _write(bus, settings, items, ContainerOp.UPDATE)


@router.post("/inheritUpdate")
async def inherit_update(bus: BusDep, settings: SettingsDep, body: InheritUpdate) -> dict[str, Any]:
    """Move the named containers to another image version, keeping the rest of their spec.

    Names are judged before the image (as the contract's example shows): unknown names answer
    `Get Deploymentname Fail` per item; an unknown image refuses the request only when some name exists.
    """
    names = _names(body.deploymentnames, settings.max_items, "deploymentnames")
    results: dict[str, dict[str, Any]] = {}
    owners: dict[str, NameClaim] = {}
    for name in names:
        owner = await state.claim(bus, name)
        node = await state.find_node(bus, owner.node_uuid) if owner else None
        if owner is None or node is None:
            results[name] = envelope.item(name, "Get Deploymentname Fail", 500)
        elif node.status != NodeStatus.READY:
            results[name] = envelope.item(name, NOT_READY, 500)
        else:
            owners[name] = owner
    if owners:
        try:
            patch = await resolve(bus, settings.platform.registry, body.image, body.imageversion)
        except UnknownImage as exc:
            raise InvalidParameter(detail=str(exc)) from exc
    for name, owner in owners.items():
        command = ContainerCommand(
            job_id=jobs.job_id(),
            op=ContainerOp.UPGRADE,
            name=name,
            node_uuid=owner.node_uuid,
            patch=patch,
            issued_at=timefmt.now(),
        )
        results[name] = await _submit(bus, command)
    return envelope.ok([results[name] for name in names])


async def _lifecycle(bus: Bus, settings: SettingsDep, name: str, op: ContainerOp) -> list[dict[str, Any]]:
    """start/stop/restart/delete: per-name checks and one job each."""

    async def one(deployment: str) -> dict[str, Any]:
        owner = await state.claim(bus, deployment)
        if owner is None:
            return envelope.item(deployment, not_found(deployment), 500)
        node = await state.find_node(bus, owner.node_uuid)
        if node is None or node.status != NodeStatus.READY:
            return envelope.item(deployment, NOT_READY, 500)
        command = ContainerCommand(
            job_id=jobs.job_id(), op=op, name=deployment, node_uuid=owner.node_uuid, issued_at=timefmt.now()
        )
        return await _submit(bus, command)

    return await gather_bounded([one(deployment) for deployment in _names(name, settings.max_items)])


# The contract's msg per operation: every name accepted, some accepted, none accepted.
VERDICTS = {
    ContainerOp.START: ("启动成功!", "部分容器启动失败,详见data", "容器启动失败!"),
    ContainerOp.STOP: ("停止成功!", "部分容器停止失败,详见data", "容器停止失败!"),
    ContainerOp.RESTART: ("重启成功!", "部分容器重启失败,详见data", "容器重启失败!"),
}


def _verdict(results: list[dict[str, Any]], op: ContainerOp) -> dict[str, Any]:
    """200 when at least one name was accepted; `code: 500` with the reasons when none was."""
    success, partial, failure = VERDICTS[op]
    accepted = sum(1 for result in results if result["code"] == 200)
    if accepted:
        return envelope.ok(results, success if accepted == len(results) else partial)
    reasons = [result["message"] for result in results]
    if all(r == not_found(result["deploymentname"]) for r, result in zip(reasons, results, strict=True)):
        tycode = DeploymentNotFound.code
    elif all(r == NOT_READY or "not found" in r for r in reasons):
        tycode = NodeNotReady.code
    else:
        tycode = InternalError.code
    detail = "; ".join(f"{result['deploymentname']}: {result['message']}" for result in results)
    return {"msg": failure, "code": 500, "tycode": tycode, "detail": detail, "data": results}


@router.delete("/delete")
async def delete(bus: BusDep, settings: SettingsDep, name: str = Query("")) -> dict[str, Any]:
    """Delete containers by name (comma-separated); each accepted name answers a jobid."""
    return envelope.ok(await _lifecycle(bus, settings, name, ContainerOp.DELETE))


@router.post("/start")
async def start(bus: BusDep, settings: SettingsDep, name: str = Query("")) -> dict[str, Any]:
    """Start stopped containers; `data` (an extension) carries a jobid per name."""
    return _verdict(await _lifecycle(bus, settings, name, ContainerOp.START), ContainerOp.START)


@router.post("/stop")
async def stop(bus: BusDep, settings: SettingsDep, name: str = Query("")) -> dict[str, Any]:
    """Stop containers; they stay stopped until started (restart policy does not revive them)."""
    return _verdict(await _lifecycle(bus, settings, name, ContainerOp.STOP), ContainerOp.STOP)


@router.post("/restart")
async def restart(bus: BusDep, settings: SettingsDep, name: str = Query("")) -> dict[str, Any]:
    """Restart containers (a stopped one is started)."""
    return _verdict(await _lifecycle(bus, settings, name, ContainerOp.RESTART), ContainerOp.RESTART)


def container_view(desired: DesiredContainer, node_uuid: str) -> dict[str, Any]:
    """A deployment in the contract's /container/get shape, plus uuid, version and resources.

    While a change of spec is in flight, the spec shown is the one the machine still runs.
    """
    spec = desired.running_spec
    return {
        "image": spec.image_ref,
        "restart": "Always",
        "name": desired.name,
        "volumes": [v.model_dump() for v in spec.volumes],
        "env": [e.model_dump() for e in spec.env],
        "network": "host",
        "uuid": node_uuid,
        "imagename": spec.image,
        "imageversion": spec.imageversion,
        "requestscpu": spec.requests_cpu,
        "requestsmemory": spec.requests_memory,
        "limitscpu": spec.limits_cpu,
        "limitsmemory": spec.limits_memory,
        "desiredstate": desired.state.value,
    }


def pod_view(
    desired: DesiredContainer, observed: NodeObserved | None, settings: SettingsDep
) -> dict[str, Any]:
    """A deployment in the contract's /container/info shape."""
    seen = observed.containers.get(desired.name) if observed else None
    pod = {
        "podname": seen.podname if seen else f"{desired.name}-{desired.revision}",
        "podstate": seen.phase.value if seen else PodPhase.PENDING.value,
    }
    if seen and seen.message:
        pod["message"] = seen.message
    view: dict[str, Any] = {
        "createtime": timefmt.to_wire(desired.created_at, settings.platform.timezone),
        "podinfo": [pod],
        "deploymentname": desired.name,
    }
    if desired.failed is not None:
        failed = desired.failed
        view["failedupdate"] = {
            "jobid": failed.job_id,
            "imagename": failed.image,
            "imageversion": failed.imageversion,
            "image": failed.image_ref,
            "message": failed.reason,
            "time": timefmt.to_wire(failed.at, settings.platform.timezone),
        }
    return view


async def _per_name(bus: Bus, settings: SettingsDep, name: str, info: bool) -> list[dict[str, Any]]:
    async def one(deployment: str) -> dict[str, Any]:
        owner = await state.claim(bus, deployment)
        desired = (await state.desired(bus, owner.node_uuid)).containers.get(deployment) if owner else None
        if owner is None or desired is None or desired.state == DesiredState.ABSENT:
            return {"code": 500, "data": {"name": deployment}, "message": not_found(deployment)}
        if info:
            data = pod_view(desired, await state.observed(bus, owner.node_uuid), settings)
        else:
            data = container_view(desired, owner.node_uuid)
        return {"code": 200, "data": data, "message": "success"}

    return await gather_bounded([one(deployment) for deployment in _names(name, settings.max_items)])


@router.api_route("/get", methods=["POST", "GET"])
async def get(bus: BusDep, settings: SettingsDep, name: str = Query("")) -> dict[str, Any]:
    """The spec of containers by name (comma-separated)."""
    return envelope.ok(await _per_name(bus, settings, name, info=False))


@router.api_route("/info", methods=["POST", "GET"])
async def info(bus: BusDep, settings: SettingsDep, name: str = Query("")) -> dict[str, Any]:
    """Creation time and pod state of containers by name (comma-separated)."""
    return envelope.ok(await _per_name(bus, settings, name, info=True))


@router.api_route("/list", methods=["POST", "GET"])
async def list_by_node(bus: BusDep, settings: SettingsDep, uuid: str = Query("")) -> dict[str, Any]:
    """Every container of one machine, with its spec and pod state."""
    if not uuid:
        raise MissingParameter(detail="uuid is required (a machine uuid or nodename)")
    uuid = (await state.node(bus, uuid)).facts.uuid
    desired = await state.desired(bus, uuid)
    observed = await state.observed(bus, uuid)
    data = []
    for container in sorted(desired.containers.values(), key=lambda c: c.created_at):
        if container.state == DesiredState.ABSENT:
            continue
        data.append({**container_view(container, uuid), **pod_view(container, observed, settings)})
    return envelope.ok(data)
