"""Container interfaces (contract §二): every change is a job; reads answer from the state stores."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends

from tingyu.api.deps import BusDep, Operator, SettingsDep, caller
from tingyu.api.envelope import Envelope, EnvelopeRoute, ok
from tingyu.api.params import DeploymentNames, MachineUuid
from tingyu.api.schemas.containers import (
    ContainerItem,
    ContainerListing,
    ContainerView,
    Found,
    InheritUpdate,
    ItemResult,
    LifecycleAnswer,
    PodView,
)
from tingyu.api.services import containers
from tingyu.common.models.containers import ContainerOp

router = APIRouter(
    prefix="/container", tags=["containers"], route_class=EnvelopeRoute, dependencies=[Depends(caller)]
)

ItemsBody = Annotated[list[ContainerItem], Body()]
Results = Envelope[list[ItemResult]]


@router.post("/create", response_model=Results)
async def create(who: Operator, bus: BusDep, settings: SettingsDep, items: ItemsBody) -> Results:
    """Create containers on machines; each accepted item answers a jobid to follow in /task/status."""
    return ok(await containers.write(bus, settings, items, ContainerOp.CREATE, caller=who))


@router.put("/updateByName", response_model=Results)
async def update_by_name(who: Operator, bus: BusDep, settings: SettingsDep, items: ItemsBody) -> Results:
    """Replace the spec of existing containers by deploymentname (the container is recreated)."""
    return ok(await containers.write(bus, settings, items, ContainerOp.UPDATE, caller=who))


@router.post("/inheritUpdate", response_model=Results)
async def inherit_update(who: Operator, bus: BusDep, settings: SettingsDep, body: InheritUpdate) -> Results:
    """Move the named containers to another image version, keeping the rest of their spec; names are
    judged before the image. A failed upgrade is rolled back to the spec that ran."""
    return ok(await containers.inherit_update(bus, settings, body, caller=who))


@router.delete("/delete", response_model=Results)
async def delete(who: Operator, bus: BusDep, names: DeploymentNames) -> Results:
    """Delete containers by name (comma-separated); each accepted name answers a jobid."""
    return ok(await containers.lifecycle(bus, names, ContainerOp.DELETE, caller=who))


@router.post("/start", response_model=LifecycleAnswer)
async def start(who: Operator, bus: BusDep, names: DeploymentNames) -> LifecycleAnswer:
    """Start stopped containers; `data` (an extension) carries a jobid per name."""
    return await containers.operate(bus, names, ContainerOp.START, caller=who)


@router.post("/stop", response_model=LifecycleAnswer)
async def stop(who: Operator, bus: BusDep, names: DeploymentNames) -> LifecycleAnswer:
    """Stop containers; they stay stopped until started (restart policy does not revive them)."""
    return await containers.operate(bus, names, ContainerOp.STOP, caller=who)


@router.post("/restart", response_model=LifecycleAnswer)
async def restart(who: Operator, bus: BusDep, names: DeploymentNames) -> LifecycleAnswer:
    """Restart containers (a stopped one is started)."""
    return await containers.operate(bus, names, ContainerOp.RESTART, caller=who)


@router.post("/get", response_model=Envelope[list[Found[ContainerView]]])
@router.get("/get", response_model=Envelope[list[Found[ContainerView]]])
async def get(bus: BusDep, names: DeploymentNames) -> Envelope[list[Found[ContainerView]]]:
    """The spec of containers by name (comma-separated)."""
    return ok(await containers.specs(bus, names))


@router.post("/info", response_model=Envelope[list[Found[PodView]]])
@router.get("/info", response_model=Envelope[list[Found[PodView]]])
async def info(bus: BusDep, settings: SettingsDep, names: DeploymentNames) -> Envelope[list[Found[PodView]]]:
    """Creation time and pod state of containers by name (comma-separated)."""
    return ok(await containers.pods(bus, settings, names))


@router.post("/list", response_model=Envelope[list[ContainerListing]])
@router.get("/list", response_model=Envelope[list[ContainerListing]])
async def list_by_node(
    bus: BusDep, settings: SettingsDep, uuid: MachineUuid
) -> Envelope[list[ContainerListing]]:
    """Every container of one machine (by uuid or nodename), with its spec and pod state."""
    return ok(await containers.of_machine(bus, settings, uuid))
