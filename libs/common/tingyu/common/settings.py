"""Settings every service shares (`TINGYU_*`); each service adds its own class with its own prefix."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_REGISTRY_PASSWORD = ""


class PlatformSettings(BaseSettings):
    """Where the platform's shared parts are and how it presents times."""

    model_config = SettingsConfigDict(env_prefix="TINGYU_", extra="ignore")

    mode: Literal["local", "production"] = "local"
    state_dir: Path = Path("./var")
    nats_url: str = "nats://127.0.0.1:4222"  # comma-separated for a cluster
    nats_creds: str = ""  # a .creds file (JWT + nkey) in production
    nats_token: str = ""
    stream_replicas: int = 1  # 3 on a NATS cluster
    nats_domain: str = (
        ""  # the cluster's JetStream domain (deploy/nats/cluster.conf); needed behind leaf nodes
    )
    # Bytes per stream, bucket or object store by name (`{"TY_SAMPLES": 21474836480}`), over the
    # defaults declared in `subjects` (docs/operations.md sizes them for 100,000 machines).
    store_max_bytes: dict[str, int] = {}
    timezone: str = "Asia/Shanghai"
    log_level: str = "INFO"
    # The registry every catalog image lives in, as seen by agents (the host part of image refs).
    registry: str = "127.0.0.1:5000"
    registry_url: str = "http://127.0.0.1:5000"  # how services reach its HTTP API
    registry_user: str = ""
    registry_password: str = DEFAULT_REGISTRY_PASSWORD
    registry_ca: str = ""  # a CA bundle for a registry with a private certificate
    registry_insecure: bool = False  # skip TLS verification (never in production)

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> PlatformSettings:
        if self.mode == "production":
            if not (self.nats_creds or self.nats_token):
                raise ValueError("TINGYU_MODE=production needs TINGYU_NATS_CREDS or TINGYU_NATS_TOKEN")
            if self.registry_insecure:
                raise ValueError("TINGYU_REGISTRY_INSECURE is refused when TINGYU_MODE=production")
        return self

    @property
    def nats_servers(self) -> list[str]:
        return [s.strip() for s in self.nats_url.split(",") if s.strip()]


@lru_cache
def get_platform_settings() -> PlatformSettings:
    """The process-wide platform settings; tests call `get_platform_settings.cache_clear()`."""
    return PlatformSettings()
