"""`TINGYU_RUNTIME=kubernetes tingyu-agent`: one process is the agent of every Node of a cluster.

Opened here: the Kubernetes client (kubeconfig or in-cluster), the namespace, the bus; declared:
the Node list sync (one `NodeAgent` per Node) and the watch of Tingyu's Pods and Deployments."""

from __future__ import annotations

import functools
import logging

from kubernetes import client as k8s
from kubernetes import config as k8s_config

from tingyu.agent.config import AgentSettings
from tingyu.agent.config import get_settings as get_agent_settings
from tingyu.agent.kube.config import KubeSettings, get_settings
from tingyu.agent.kube.fleet import Fleet
from tingyu.agent.kube.runtime import KubeCluster
from tingyu.common.service import Service, run_service, settings_checked

log = logging.getLogger(__name__)


def api_client(settings: KubeSettings) -> k8s.ApiClient:
    """A client from the kubeconfig named in settings, in-cluster config, or ~/.kube/config."""
    client: k8s.ApiClient
    if settings.kubeconfig:
        client = k8s_config.new_client_from_config(settings.kubeconfig, context=settings.context or None)
        return client
    try:
        k8s_config.load_incluster_config()
        return k8s.ApiClient()
    except k8s_config.ConfigException:
        client = k8s_config.new_client_from_config(context=settings.context or None)
        return client


async def setup(
    service: Service, settings: KubeSettings | None = None, agent: AgentSettings | None = None
) -> None:
    settings = settings or get_settings()
    agent = agent or get_agent_settings()
    api = api_client(settings)
    service.stack.callback(api.close)
    cluster = KubeCluster(api, settings.namespace, settings.tolerated, settings.request_timeout_s)
    await cluster.ensure_namespace()
    registry = settings.platform
    if registry.registry_user:  # the kubelets pull with the kubernetes agent's pull-only credential
        await cluster.ensure_pull_secret(
            registry.registry, registry.registry_user, registry.registry_password
        )
    bus = await service.connect(settings.platform, ensure=False)
    fleet = Fleet(bus, cluster, settings, agent)
    service.loop("nodes", fleet.sync_nodes)
    service.loop("watch", cluster.follow)
    log.info("kubernetes agent for namespace %s starting", settings.namespace)


def run() -> None:
    with settings_checked("kube-agent"):
        settings = get_settings()
    run_service(
        "kube-agent", functools.partial(setup, settings=settings), settings.platform.log_level, job_logs=False
    )


if __name__ == "__main__":
    run()
