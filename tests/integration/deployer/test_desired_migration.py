"""A machine's desired state in the layout before one key per deployment (one document under the
bare uuid) is split by the deployer when it starts, and its deployments go on as any other."""

from __future__ import annotations

import signal

import httpx

from tests.integration.api.test_containers_api import ready_peer, wait_job
from tests.support import eventually, unique
from tests.support.factories import spec
from tingyu.cli.launcher import Platform
from tingyu.common import subjects
from tingyu.common.bus import Bus
from tingyu.common.desired import DesiredStore, migrate
from tingyu.common.models.containers import DesiredContainer, NameClaim, NodeDesired, PodPhase
from tingyu.common.names import new_job_id, new_node_identity


async def test_a_legacy_document_is_split_at_deployer_start(
    api: httpx.AsyncClient, bus: Bus, platform: Platform
) -> None:
    peer = await ready_peer(api, bus)
    try:
        names = sorted(unique("old") for _ in range(3))
        doc = NodeDesired(
            node_uuid=peer.uuid,
            containers={
                name: DesiredContainer(name=name, spec=spec(), job_id=new_job_id(), created_at=1.0)
                for name in names
            },
        )
        legacy = bus.store(subjects.LEGACY_DESIRED)
        platform.kill("deployer", signal.SIGKILL)
        await legacy.put(peer.uuid, doc)
        for name in names:
            await bus.store(subjects.NAMES).put(
                name, NameClaim(node_uuid=peer.uuid, job_id=doc.containers[name].job_id)
            )
        platform.start_service("deployer")

        async def split() -> bool:
            return await legacy.get(peer.uuid) is None

        await eventually(split, timeout=30)
        migrated = await DesiredStore(bus).node(peer.uuid)
        assert sorted(migrated.containers) == names
        assert all(entry.node_uuid == peer.uuid for entry in migrated.containers.values())
        assert migrated.containers[names[0]].model_copy(update={"node_uuid": ""}) == doc.containers[names[0]]

        # A migrated deployment is like any other: the API finds it and it can be deleted.
        got = (await api.get("/container/get", params={"name": names[0]})).json()
        assert got["code"] == 200, got
        jobid = (await api.delete("/container/delete", params={"name": names[0]})).json()["data"][0]["jobid"]
        await wait_job(api, jobid, 1)
        await peer.report({names[0]: PodPhase.DELETED})
        await wait_job(api, jobid, 3)
        assert sorted((await DesiredStore(bus).node(peer.uuid)).containers) == names[1:]
        assert await migrate(bus) == 0  # nothing left to split
    finally:
        if "deployer" not in platform.procs:
            platform.start_service("deployer")
        await peer.stop()


async def test_migration_keeps_a_deployment_already_in_the_new_layout(bus: Bus) -> None:
    (node, _), name = new_node_identity(), unique("web")
    older = DesiredContainer(name=name, spec=spec(version="1"), job_id=new_job_id(), created_at=1.0)
    newer = older.model_copy(update={"spec": spec(version="2"), "revision": 2})
    await DesiredStore(bus).put(node, newer)
    await bus.store(subjects.LEGACY_DESIRED).put(node, NodeDesired(node_uuid=node, containers={name: older}))
    assert await migrate(bus) >= 1
    kept = await DesiredStore(bus).get(node, name)
    assert kept is not None
    assert kept.spec.imageversion == "2"
    assert await bus.store(subjects.LEGACY_DESIRED).get(node) is None
    await DesiredStore(bus).remove(node, name)
