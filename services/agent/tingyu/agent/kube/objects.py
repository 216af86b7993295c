"""Deployments as containers: the manifest Tingyu writes for one deployment, and how a Deployment
with its Pods reads back as a `RuntimeContainer` (pure functions, no API calls)."""

from __future__ import annotations

import base64
import json
from typing import Any

from tingyu.agent.runtime import LABEL_NODE, CreateRequest, RuntimeContainer

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "tingyu"
DEPLOYMENT = "tingyu.io/deployment"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"  # what `kubectl rollout restart` sets
CONTAINER = "app"
PULL_SECRET = "tingyu-registry"  # the image pull Secret every Deployment names, when there is one


def selector(node_uuid: str = "") -> str:
    """The label selector of Tingyu's own objects (of one machine when given)."""
    own = f"{MANAGED_BY}={MANAGER}"
    return f"{own},{LABEL_NODE}={node_uuid}" if node_uuid else own


def pull_secret(registry: str, user: str, password: str) -> dict[str, Any]:
    """The image pull Secret that lets the kubelets pull from the platform's registry as `user`
    (the kubernetes agent's pull-only credential): a docker config.json, as `docker login` writes it."""
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    config = {"auths": {registry: {"username": user, "password": password, "auth": auth}}}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/dockerconfigjson",
        "metadata": {"name": PULL_SECRET, "labels": {MANAGED_BY: MANAGER}},
        "data": {".dockerconfigjson": base64.b64encode(json.dumps(config).encode()).decode()},
    }


def manifest(
    request: CreateRequest, hostname: str, tolerated: list[str], pull_secret: str = ""
) -> dict[str, Any]:
    """One Deployment of one replica pinned to its Node; created with 0 replicas (Docker's
    `created`): `start` sets 1. `pull_secret` names the image pull Secret, when there is one."""
    spec = request.spec
    pod_labels = {MANAGED_BY: MANAGER, LABEL_NODE: request.labels[LABEL_NODE], DEPLOYMENT: request.name}
    resources: dict[str, dict[str, str]] = {"requests": {}, "limits": {}}
    for kind, cpu, memory in (
        ("requests", spec.requests_cpu, spec.requests_memory),
        ("limits", spec.limits_cpu, spec.limits_memory),
    ):
        if cpu:
            resources[kind]["cpu"] = f"{round(cpu * 1000)}m"
        if memory:
            resources[kind]["memory"] = f"{memory}Mi"
    volumes = [{"name": f"v{i}", "hostPath": {"path": v.hostPath}} for i, v in enumerate(spec.volumes)]
    container = {
        "name": CONTAINER,
        "image": spec.image_ref,
        "env": [{"name": e.key, "value": e.value} for e in spec.env],
        "volumeMounts": [{"name": f"v{i}", "mountPath": v.mountPath} for i, v in enumerate(spec.volumes)],
        "resources": {k: v for k, v in resources.items() if v},
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": request.name,
            "labels": {MANAGED_BY: MANAGER, LABEL_NODE: request.labels[LABEL_NODE]},
            # Tingyu's labels as annotations: a job id is not a valid label value everywhere.
            "annotations": dict(request.labels),
        },
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {DEPLOYMENT: request.name, LABEL_NODE: request.labels[LABEL_NODE]}},
            "strategy": {"type": "Recreate"},  # host network: old and new Pod cannot share the ports
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "hostNetwork": True,
                    "dnsPolicy": "ClusterFirstWithHostNet",
                    "nodeSelector": {"kubernetes.io/hostname": hostname},
                    "tolerations": [{"key": key, "operator": "Exists"} for key in tolerated],
                    "restartPolicy": "Always",
                    "containers": [container],
                    "volumes": volumes,
                    "imagePullSecrets": [{"name": pull_secret}] if pull_secret else [],
                },
            },
        },
    }


def to_container(deployment: Any, pods: list[Any]) -> RuntimeContainer:
    """A Deployment and its Pods in Docker's vocabulary: 0 replicas is `exited`; with 1, the
    newest live Pod says `running`, `restarting` (crash loop), `exited` or, while it is not
    running yet, Kubernetes' own reason (`Pending`, `ContainerCreating`, `ImagePullBackOff` …)."""
    annotations = dict(deployment.metadata.annotations or {})
    containers = deployment.spec.template.spec.containers or []
    base = {
        "id": deployment.metadata.name,
        "name": deployment.metadata.name,
        "labels": {k: v for k, v in annotations.items() if k.startswith("tingyu.")},
        "image_ref": containers[0].image if containers else "",
    }
    if not deployment.spec.replicas:
        return RuntimeContainer(status="exited", **base)
    live = [p for p in pods if p.metadata.deletion_timestamp is None]
    if not live:
        return RuntimeContainer(status="Pending", starting=True, **base)
    pod = max(live, key=lambda p: p.metadata.creation_timestamp)
    state = _pod_state(pod)
    return RuntimeContainer(
        **base, **state, starting=state["status"] not in ("running", "restarting", "exited")
    )


def _pod_state(pod: Any) -> dict[str, Any]:
    status = pod.status
    statuses = (status.container_statuses if status else None) or []
    phase = str(status.phase if status and status.phase else "Pending")
    if not statuses:
        if phase in ("Failed", "Succeeded"):
            return {"status": "exited", "error": str(status.message or status.reason or "")}
        return {"status": phase}
    state, last = statuses[0].state, statuses[0].last_state
    if state and state.running:
        started = state.running.started_at
        return {"status": "running", "started_at": started.timestamp() if started else None}
    if state and state.terminated:
        ended = state.terminated
        return {"status": "exited", "exit_code": int(ended.exit_code or 0), "error": str(ended.message or "")}
    waiting = state.waiting if state else None
    reason = str(waiting.reason if waiting and waiting.reason else phase)
    if reason == "CrashLoopBackOff" and last and last.terminated:
        return {"status": "restarting", "exit_code": int(last.terminated.exit_code or 0)}
    return {"status": reason, "error": str(waiting.message or "") if waiting else ""}
