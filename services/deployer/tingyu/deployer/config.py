"""Deployer settings (`TINGYU_DEPLOYER_*`)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from tingyu.common.settings import PlatformSettings, get_platform_settings


class DeployerSettings(BaseSettings):
    """How long a machine may take to converge, and how much work one replica takes at once."""

    model_config = SettingsConfigDict(env_prefix="TINGYU_DEPLOYER_", extra="ignore")

    job_timeout_s: float = Field(default=600.0, gt=0)  # a dispatched job not converged by then fails
    # A dispatched job with no report this long after its nudge is nudged again, then at twice the
    # interval each time (a nudge is core NATS: at most once); 0: never.
    nudge_again_s: float = Field(default=10.0, ge=0, le=3600)
    batch: int = Field(default=128, ge=1, le=4096)  # messages in hand at once per consumer
    # Agents' reports in hand at once. More drains the deployer's queue sooner but takes NATS from
    # everything else: at 100 000 machines 512 slowed the whole fleet (docs/benchmarks.md).
    reports_batch: int = Field(default=128, ge=1, le=4096)
    file_timeout_s: float = 900.0  # longest copy of one file out of a container
    file_agent_wait_s: float = 30.0  # how long a file job waits for an agent that is away
    metrics_port: int = 0  # Prometheus metrics on this port (0: off)
    platform: PlatformSettings = Field(default_factory=get_platform_settings)
    # Image pre-pull (docs/remote.md).
    prepull_parallel: int = Field(default=10, ge=1)  # machines of one pre-pull pulling at once
    prepull_pull_timeout_s: float = Field(default=900.0, gt=0)  # longest one machine's pull is waited for
    prepull_tick_s: float = Field(default=1.0, gt=0)  # how often NotReady machines are looked at again
    # Canary rollouts (docs/rollouts.md).
    rollout_max_unavailable: int = Field(default=10, ge=1)  # upgrade jobs of one rollout in flight at once
    rollout_failure_threshold: float = Field(default=0.2, ge=0, le=1)  # abort above failed/executed
    rollout_min_executed: int = Field(default=3, ge=1)  # finished upgrades before the threshold applies
    rollout_tick_s: float = Field(default=1.0, gt=0)
    rollout_lease_s: float = Field(default=5.0, gt=0)
    rollout_prepull_deadline_s: float = Field(default=3600.0, gt=0)  # a rollout's pre-pull (prepull: true)


@lru_cache
def get_settings() -> DeployerSettings:
    return DeployerSettings()
