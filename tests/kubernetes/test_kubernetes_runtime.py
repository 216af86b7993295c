"""The Kubernetes runtime end to end: the HTTP API, NATS and the deployer on one side, a real
kube-apiserver with its controller-manager and scheduler on the other, and the kubernetes agent
(`TINGYU_RUNTIME=kubernetes`) in between. There is no kubelet: the tests play its part by
patching Node and Pod status, as a kubelet would report them."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
from kubernetes import client as k8s

from tests.kubernetes.apiserver import ControlPlane
from tests.kubernetes.conftest import NAMESPACE
from tests.support import build_busybox, docker_as, eventually, unique
from tingyu.agent.kube.runtime import KubeCluster
from tingyu.agent.runtime import RuntimeFailure
from tingyu.cli.launcher import Platform

pytestmark = pytest.mark.kubernetes
IMAGE = ("registry.example:5000/tytest/web", "1")


def add_node(kube: k8s.ApiClient, **labels: str) -> Any:
    """A Node as a kubelet would register it: labelled, with capacity and nodeInfo, Ready."""
    core = k8s.CoreV1Api(kube)
    name = unique("node")
    annotations = {"tingyu.io/area": "南京"}
    labels = {"kubernetes.io/hostname": name, "tingyu.io/operator": "cmcc", **labels}
    core.create_node({"metadata": {"name": name, "labels": labels, "annotations": annotations}})
    set_ready(kube, name, True)
    core.patch_node(name, {"spec": {"taints": []}})  # what the admission plugin adds until Ready
    return core.read_node(name)


def set_ready(kube: k8s.ApiClient, name: str, ready: bool) -> None:
    now = datetime.now(UTC).isoformat()
    status = {
        "capacity": {"cpu": "8", "memory": "16318208Ki", "pods": "110"},
        "allocatable": {"cpu": "8", "memory": "16318208Ki", "pods": "110"},
        "nodeInfo": {
            "machineID": "m", "systemUUID": "s", "bootID": "b", "kernelVersion": "6.1.0-edge",
            "osImage": "Debian GNU/Linux 12 (bookworm)", "containerRuntimeVersion": "containerd://1.6",
            "kubeletVersion": "v1.20.2", "kubeProxyVersion": "v1.20.2", "operatingSystem": "linux",
            "architecture": "amd64",
        },
        "addresses": [{"type": "InternalIP", "address": "10.0.0.7"}],
        "conditions": [
            {"type": "Ready", "status": "True" if ready else "False", "reason": "KubeletReady",
             "lastHeartbeatTime": now, "lastTransitionTime": now},
        ],
    }  # fmt: skip
    k8s.CoreV1Api(kube).patch_node_status(name, {"status": status})


def pods_of(kube: k8s.ApiClient, deployment: str) -> list[Any]:
    selector = f"tingyu.io/deployment={deployment}"
    found = k8s.CoreV1Api(kube).list_namespaced_pod(NAMESPACE, label_selector=selector).items
    return [p for p in found if p.metadata.deletion_timestamp is None]


def deployment(kube: k8s.ApiClient, name: str) -> Any:
    return k8s.AppsV1Api(kube).read_namespaced_deployment(name, NAMESPACE)


async def kubelet_runs(kube: k8s.ApiClient, name: str, node: str) -> None:
    """Wait for the scheduler to bind a new Pod of `name` to `node`, then report it running."""

    async def bound() -> Any:
        for gone in (
            k8s.CoreV1Api(kube)
            .list_namespaced_pod(NAMESPACE, label_selector=f"tingyu.io/deployment={name}")
            .items
        ):  # the kubelet confirms that a deleted Pod's containers are gone
            if gone.metadata.deletion_timestamp is not None:
                with contextlib.suppress(k8s.ApiException):
                    k8s.CoreV1Api(kube).delete_namespaced_pod(
                        gone.metadata.name, NAMESPACE, grace_period_seconds=0
                    )
        pods = [p for p in pods_of(kube, name) if p.spec.node_name and p.status.phase != "Running"]
        return pods[0] if pods else None

    pod = await eventually(bound, timeout=60)
    assert pod.spec.node_name == node
    now = datetime.now(UTC).isoformat()
    status = {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True"}],
        "containerStatuses": [
            {"name": "app", "ready": True, "restartCount": 0, "image": pod.spec.containers[0].image,
             "imageID": "", "containerID": f"containerd://{secrets.token_hex(8)}",
             "state": {"running": {"startedAt": now}}},
        ],
    }  # fmt: skip
    k8s.CoreV1Api(kube).patch_namespaced_pod_status(pod.metadata.name, NAMESPACE, {"status": status})


def check_spec(made: Any, node: str) -> None:
    """One replica pinned to its Node, host network, env, hostPath volume, resources, our label."""
    assert made.spec.replicas == 1
    pod = made.spec.template.spec
    assert pod.host_network is True
    assert pod.node_selector == {"kubernetes.io/hostname": node}
    assert {t.key for t in pod.tolerations} >= {"node-role.kubernetes.io/edge"}
    [container] = pod.containers
    assert container.image == f"{IMAGE[0]}:{IMAGE[1]}"
    assert [(e.name, e.value) for e in container.env] == [("port", "6555")]
    assert [(v.host_path.path) for v in pod.volumes] == ["/data/web"]
    assert [(m.mount_path) for m in container.volume_mounts] == ["/storage"]
    assert container.resources.limits == {"cpu": "500m", "memory": "64Mi"}
    assert container.resources.requests == {"cpu": "250m", "memory": "16Mi"}
    assert made.metadata.labels["app.kubernetes.io/managed-by"] == "tingyu"
    assert [s.name for s in pod.image_pull_secrets] == ["tingyu-registry"]


async def machine(api: httpx.AsyncClient, node: Any) -> dict[str, Any]:
    uuid = "tingyu-" + node.metadata.uid.replace("-", "")

    async def listed() -> dict[str, Any] | None:
        body = (await api.get("/node/get", params={"name": uuid})).json()
        return body["data"][0] if body["code"] == 200 else None

    found: dict[str, Any] = await eventually(listed, timeout=60)
    return found


async def finished(api: httpx.AsyncClient, jobid: str) -> dict[str, Any]:
    async def final() -> dict[str, Any] | None:
        info: dict[str, Any] = (await api.get("/task/status", params={"jobid": jobid})).json()["info"][0]
        return info if info.get("state") in (3, 4) else None

    return await eventually(final, timeout=60)


async def test_nodes_are_machines_with_facts_from_labels_and_status(
    kube: k8s.ApiClient, kube_api: httpx.AsyncClient
) -> None:
    node = add_node(kube)
    found = await machine(kube_api, node)
    assert (found["area"], found["operator"], found["cpu"], found["memory"]) == ("南京", "移动", 8, 15935)
    assert found["nodename"] == node.metadata.uid.replace("-", "")
    listed = (await kube_api.get("/node/list")).json()
    assert found["uuid"] in {n["uuid"] for n in listed["data"]}


async def test_a_not_ready_node_becomes_a_not_ready_machine(
    kube: k8s.ApiClient, kube_api: httpx.AsyncClient
) -> None:
    node = add_node(kube)
    uuid = (await machine(kube_api, node))["uuid"]
    set_ready(kube, node.metadata.name, False)

    async def not_ready() -> bool:
        body = (await kube_api.get("/node/get", params={"name": uuid})).json()
        return body["data"][0]["status"] != "Ready"

    await eventually(not_ready, timeout=30)
    item = {"uuid": uuid, "image": IMAGE[0], "imageversion": IMAGE[1], "deploymentname": unique("nr")}
    refused = (await kube_api.post("/container/create", json=[item])).json()["data"][0]
    assert refused["code"] != 200


async def test_container_lifecycle_as_a_deployment(kube: k8s.ApiClient, kube_api: httpx.AsyncClient) -> None:
    node = add_node(kube)
    uuid = (await machine(kube_api, node))["uuid"]
    name = unique("web")
    item = {
        "uuid": uuid, "image": IMAGE[0], "imageversion": IMAGE[1], "deploymentname": name,
        "env": [{"key": "port", "value": "6555"}],
        "volumes": [{"hostPath": "/data/web", "mountPath": "/storage"}],
        "requestscpu": 0.25, "requestsmemory": 16, "limitscpu": 0.5, "limitsmemory": 64,
    }  # fmt: skip
    answer = (await kube_api.post("/container/create", json=[item])).json()["data"][0]
    assert answer["code"] == 200, answer
    await kubelet_runs(kube, name, node.metadata.name)
    assert (await finished(kube_api, answer["jobid"]))["state"] == 3

    check_spec(deployment(kube, name), node.metadata.name)
    info = (await kube_api.post("/container/info", params={"name": name})).json()["data"][0]["data"]
    assert info["podinfo"][0]["podstate"] == "Running"

    async def op(path: str, method: str = "POST") -> dict[str, Any]:
        body = (await kube_api.request(method, path, params={"name": name})).json()["data"][0]
        assert body["code"] == 200, body
        return body

    stopped = await op("/container/stop")
    assert (await finished(kube_api, stopped["jobid"]))["state"] == 3
    assert deployment(kube, name).spec.replicas == 0

    started = await op("/container/start")
    await eventually(lambda: _async(deployment(kube, name).spec.replicas == 1), timeout=30)
    await kubelet_runs(kube, name, node.metadata.name)
    assert (await finished(kube_api, started["jobid"]))["state"] == 3

    restarted = await op("/container/restart")
    annotated = await eventually(
        lambda: _async((deployment(kube, name).spec.template.metadata.annotations or {}).get(
            "kubectl.kubernetes.io/restartedAt")), timeout=30,
    )  # fmt: skip
    assert annotated
    await kubelet_runs(kube, name, node.metadata.name)
    assert (await finished(kube_api, restarted["jobid"]))["state"] == 3

    uid = deployment(kube, name).metadata.uid
    changed = {**item, "env": [{"key": "port", "value": "7000"}]}
    updated = (await kube_api.put("/container/updateByName", json=[changed])).json()["data"][0]
    assert updated["code"] == 200, updated

    async def new_env() -> bool:
        env = deployment(kube, name).spec.template.spec.containers[0].env
        return [(e.name, e.value) for e in env] == [("port", "7000")]

    await eventually(new_env, timeout=30)
    assert deployment(kube, name).metadata.uid == uid  # the template was patched, not recreated
    await kubelet_runs(kube, name, node.metadata.name)
    assert (await finished(kube_api, updated["jobid"]))["state"] == 3

    deleted = await op("/container/delete", "DELETE")
    assert (await finished(kube_api, deleted["jobid"]))["state"] == 3
    names = [d.metadata.name for d in k8s.AppsV1Api(kube).list_namespaced_deployment(NAMESPACE).items]
    assert name not in names


def test_the_kubelets_pull_secret_pulls_from_the_platform_registry_and_pushes_nothing(
    kube: k8s.ApiClient, kube_platform: tuple[Platform, ControlPlane]
) -> None:
    """The Secret the Deployments name is a docker config.json: used as one (what a kubelet does),
    the real registry lets it pull an image the imager pushed, and refuses its push."""
    platform = kube_platform[0]
    secret = k8s.CoreV1Api(kube).read_namespaced_secret("tingyu-registry", NAMESPACE)
    assert secret.type == "kubernetes.io/dockerconfigjson"
    config = base64.b64decode(secret.data[".dockerconfigjson"])
    assert json.loads(config)["auths"][platform.config.registry]["username"] == "kube"
    client = docker.from_env(timeout=120)
    local = build_busybox(client, unique("kubepull"), "1")
    remote = f"{platform.config.registry}/{local}"
    try:
        client.images.get(local).tag(remote)
        docker_as(platform, "imager", "push", remote)
        client.images.remove(remote)
        with tempfile.TemporaryDirectory() as folder:
            Path(folder, "config.json").write_bytes(config)
            as_kubelet = ["docker", "--config", folder]
            subprocess.run([*as_kubelet, "pull", remote], check=True, capture_output=True)
            assert client.images.get(remote).id == client.images.get(local).id
            client.images.get(local).tag(f"{remote}-pushed")
            refused = subprocess.run(
                [*as_kubelet, "push", f"{remote}-pushed"], check=False, capture_output=True, text=True
            )
            assert refused.returncode != 0
            assert "denied" in refused.stderr or "unauthorized" in refused.stderr, refused.stderr
    finally:
        for reference in (remote, f"{remote}-pushed", local):
            with contextlib.suppress(docker.errors.ImageNotFound):
                client.images.remove(reference, force=True)
        client.close()


async def test_an_unknown_deployment_gets_the_apis_own_not_found(kube: k8s.ApiClient) -> None:
    cluster = KubeCluster(kube, NAMESPACE, [])
    runtime = cluster.runtime("tingyu-" + "0" * 32, "nowhere")
    with pytest.raises(RuntimeFailure, match=r'^deployments\.apps "nosuch" not found$'):
        await runtime.restart("nosuch")
    assert await runtime.inspect("nosuch") is None
    await runtime.remove("nosuch")  # an absent one is fine, as with Docker


async def _async(value: Any) -> Any:
    await asyncio.sleep(0)
    return value
