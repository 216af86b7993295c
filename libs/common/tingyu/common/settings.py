"""Settings every service shares (`TINGYU_*`); each service adds its own class with its own prefix."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tingyu.common import subjects

DEFAULT_REGISTRY_PASSWORD = ""


class PlatformSettings(BaseSettings):
    """Where the platform's shared parts are and how it presents times."""

    model_config = SettingsConfigDict(env_prefix="TINGYU_", extra="ignore")

    mode: Literal["local", "production"] = "local"
    state_dir: Path = Path("./var")
    nats_url: str = "nats://127.0.0.1:4222"  # comma-separated for a cluster
    nats_creds: str = ""  # this process's .creds file (JWT + nkey); see `creds_file`
    nats_ca: str = ""  # the CA that signed the NATS server's certificate; see `ca_file`
    nats_tls_cert: str = ""  # the NATS server's certificate and key (where the launcher runs it)
    nats_tls_key: str = ""
    nats_inbox_prefix: str = "_INBOX"  # a machine's agent uses its own (its permissions allow no other)
    nats_auth_dir: Path = Path()  # operator/account keys and service users; default <state_dir>/nats/auth
    stream_replicas: int = 1  # 3 on a NATS cluster
    # Heartbeat partitions (subjects.heartbeat_mapping): the account JWT and every nodes replica
    # must use the same count; the launcher signs the account with this one.
    heartbeat_partitions: int = Field(default=subjects.HEARTBEAT_PARTITIONS, ge=1, le=1024)
    # The cluster's JetStream domain (`tingyu` in deploy/nats/cluster.conf); needed behind leaf nodes.
    nats_domain: str = ""
    # Bytes per stream, bucket or object store by name (`{"TY_SAMPLES": 21474836480}`), over the
    # defaults declared in `subjects` (docs/operations.md sizes them for 100,000 machines).
    store_max_bytes: dict[str, int] = {}
    timezone: str = "Asia/Shanghai"
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"  # json: one object per line for a log stack
    metrics_host: str = "127.0.0.1"  # where each service's metrics port listens (0.0.0.0 to scrape)
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
            if not self.nats_creds:
                raise ValueError("TINGYU_MODE=production needs TINGYU_NATS_CREDS")
            if self.registry_insecure:
                raise ValueError("TINGYU_REGISTRY_INSECURE is refused when TINGYU_MODE=production")
        return self

    @property
    def auth_dir(self) -> Path:
        return self.nats_auth_dir if self.nats_auth_dir != Path() else self.state_dir / "nats" / "auth"

    @property
    def creds_file(self) -> str:
        """TINGYU_NATS_CREDS, or on the host `tingyu up` runs on, its admin user (for the CLI)."""
        if self.nats_creds:
            return self.nats_creds
        local = self.auth_dir / "users" / "admin.creds"
        return str(local) if local.exists() else ""

    @property
    def ca_file(self) -> str:
        """TINGYU_NATS_CA, or on the host `tingyu up` runs on, its local CA."""
        if self.nats_ca:
            return self.nats_ca
        local = self.state_dir / "nats" / "tls" / "ca.pem"
        return str(local) if local.exists() else ""

    @property
    def nats_servers(self) -> list[str]:
        return [s.strip() for s in self.nats_url.split(",") if s.strip()]


@lru_cache
def get_platform_settings() -> PlatformSettings:
    """The process-wide platform settings; tests call `get_platform_settings.cache_clear()`."""
    return PlatformSettings()
