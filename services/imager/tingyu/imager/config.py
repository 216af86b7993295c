"""Imager settings (`TINGYU_IMAGER_*`)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from tingyu.common.settings import PlatformSettings, get_platform_settings


class ImagerSettings(BaseSettings):
    """Where tars are spooled while they are checked and pushed, and how many at once."""

    model_config = SettingsConfigDict(env_prefix="TINGYU_IMAGER_", extra="ignore")

    spool_dir: Path | None = None  # default: <state_dir>/imager/spool
    concurrency: int = 2  # pushes handled at once by one replica
    chunk_bytes: int = 1024 * 1024  # read size from disk and upload chunk to the registry
    progress_every_s: float = 1.0  # how often a running job's progress is written
    registry_attempts: int = 5  # deliveries of a push before an unreachable registry fails the job
    registry_timeout_s: float = 120.0
    # Longest one push may hold its slot (spool, check, push); then its job fails and the slot is free.
    push_timeout_s: float = 3600.0
    metrics_port: int = 0  # Prometheus metrics on this port (0: off)
    platform: PlatformSettings = Field(default_factory=get_platform_settings)

    @property
    def spool(self) -> Path:
        return self.spool_dir or self.platform.state_dir / "imager" / "spool"


@lru_cache
def get_settings() -> ImagerSettings:
    return ImagerSettings()
