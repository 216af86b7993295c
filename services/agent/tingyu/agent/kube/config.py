"""Kubernetes runtime settings (`TINGYU_KUBE_*`); the runtime itself is chosen by `TINGYU_RUNTIME`."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from tingyu.common.settings import PlatformSettings, get_platform_settings


class KubeSettings(BaseSettings):
    """Which cluster, which namespace, and how often the Nodes are listed."""

    model_config = SettingsConfigDict(env_prefix="TINGYU_KUBE_", extra="ignore")

    kubeconfig: str = ""  # empty: in-cluster service account, else ~/.kube/config
    context: str = ""  # a kubeconfig context; empty: its current one
    namespace: str = "tingyu"  # every Deployment Tingyu makes lives here (created when missing)
    node_selector: str = ""  # a label selector limiting which Nodes are machines ("" = all)
    # Taints of edge Nodes (KubeEdge, K3s agents) that Tingyu's Pods tolerate, comma-separated keys.
    tolerate: str = "node-role.kubernetes.io/edge,node-role.kubernetes.io/agent"
    node_sync_s: float = 10.0  # Nodes are listed again this often (added and removed machines)
    request_timeout_s: float = 30.0
    platform: PlatformSettings = Field(default_factory=get_platform_settings)

    @property
    def state_dir(self) -> Path:
        return self.platform.state_dir / "kube-agent"

    @property
    def tolerated(self) -> list[str]:
        return [key.strip() for key in self.tolerate.split(",") if key.strip()]


@lru_cache
def get_settings() -> KubeSettings:
    return KubeSettings()
