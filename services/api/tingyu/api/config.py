"""API settings (`TINGYU_API_*`)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from tingyu.common.settings import PlatformSettings, get_platform_settings


class ApiSettings(BaseSettings):
    """How the API listens and how long it waits on the bus."""

    model_config = SettingsConfigDict(env_prefix="TINGYU_API_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8080
    root_path: str = "/tingyu"
    bus_timeout_s: float = 10.0  # a request to a worker that takes longer answers TY0010
    max_items: int = 1000  # items in one create/update/delete request
    max_upload_bytes: int = 8 * 1024**3
    max_range_days: int = 93  # longest metering time range
    console_dir: Path | None = None  # the built console (default: console/dist of this source tree)
    platform: PlatformSettings = Field(default_factory=get_platform_settings)


@lru_cache
def get_settings() -> ApiSettings:
    return ApiSettings()
