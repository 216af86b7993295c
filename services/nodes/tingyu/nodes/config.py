"""Nodes settings (`TINGYU_NODES_*`)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from tingyu.common.settings import PlatformSettings, get_platform_settings


class NodesSettings(BaseSettings):
    """When a machine counts as NotReady, how often its heartbeat time reaches storage and how often
    the API is told the times heard."""

    model_config = SettingsConfigDict(env_prefix="TINGYU_NODES_", extra="ignore")

    not_ready_after_s: float = 40.0  # no heartbeat for this long: NotReady
    # heartbeattime in the bucket is refreshed at most this often (100,000 machines: 170 writes/s);
    # the API shows the times heard meanwhile, told every `heard_every_s` (`NodesHeard`)
    lease_s: float = 600.0
    heard_every_s: float = 5.0
    leader_ttl_s: float = 10.0  # the reaper's leader lease
    metrics_port: int = 0  # Prometheus metrics on this port (0: off)
    platform: PlatformSettings = Field(default_factory=get_platform_settings)

    @property
    def tick_s(self) -> float:
        return max(0.2, min(self.not_ready_after_s / 4, 2.0))


@lru_cache
def get_settings() -> NodesSettings:
    return NodesSettings()
