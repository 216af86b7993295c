"""API settings (`TINGYU_API_*`)."""

from __future__ import annotations

from functools import lru_cache

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
    # Remote operations (docs/remote.md).
    logs_max_tail: int = 10_000  # largest `tail` a logs request may ask for
    logs_follow_max_s: float = 600.0  # longest a followed log stream lasts
    exec_timeout_s: float = 60.0  # longest a non-interactive exec is waited for
    exec_idle_s: float = 900.0  # an exec WebSocket with nothing from either side this long is closed
    prepull_deadline_s: float = 3600.0  # a pre-pull's machines that have not pulled by then fail
    platform: PlatformSettings = Field(default_factory=get_platform_settings)


@lru_cache
def get_settings() -> ApiSettings:
    return ApiSettings()
