"""API settings (`TINGYU_API_*`)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, SecretStr, field_validator
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
    # The bootstrap admin token (16 characters or more); `tingyu up` makes one in var/api/admin.token.
    admin_token: SecretStr = SecretStr("")
    token_cache_s: float = 1.0  # how old a token record may be; a revocation reaches every replica within it
    auth_max_failures: int = 20  # failed authentications per client address within the window (0: no limit)
    auth_failure_window_s: float = 60.0
    platform: PlatformSettings = Field(default_factory=get_platform_settings)

    @field_validator("admin_token")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if value.get_secret_value() and len(value.get_secret_value()) < 16:
            raise ValueError("TINGYU_API_ADMIN_TOKEN must be 16 characters or more")
        return value


@lru_cache
def get_settings() -> ApiSettings:
    return ApiSettings()
