"""API settings (`TINGYU_API_*`)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tingyu.common.auth.registry_tokens import ISSUER, SERVICE
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
    max_uploads: int = 8  # uploads in flight in one API process; one more answers TY0010 at once
    max_range_days: int = 93  # longest metering time range
    # Request limits (docs/api.md "Limits"); each refusal is an envelope the application writes.
    max_url_bytes: int = 128 * 1024  # path and query string, as sent
    max_query_value_bytes: int = 64 * 1024  # one query parameter, as sent
    max_body_bytes: int = 4 * 1024**2  # a JSON body, counted while it is read
    drain_bytes: int = 16 * 1024**2  # read (and dropped) past a refused body so the client reads the answer
    body_idle_timeout_s: float = 60.0  # longest wait for the next piece of a body
    head_timeout_s: float = 30.0  # longest wait for a request's line and headers
    keep_alive_s: int = 5  # an idle connection is closed after this long
    max_env: int = 256  # environment variables per container
    max_env_bytes: int = 64 * 1024  # names and values of one container's environment, UTF-8
    max_volumes: int = 32  # binds per container
    max_path_bytes: int = 4096  # one hostPath or mountPath
    max_detail_bytes: int = 4096  # an image's detail and image_url
    # The bootstrap admin token (16 characters or more); `tingyu up` makes one in var/api/admin.token.
    admin_token: SecretStr = SecretStr("")
    token_cache_s: float = 1.0  # how old a token record may be; a revocation reaches every replica within it
    auth_max_failures: int = 20  # failed authentications per client address within the window (0: no limit)
    auth_failure_window_s: float = 60.0
    tls_cert: str = ""  # HTTPS from these files; empty: plain HTTP (loopback or behind a proxy)
    tls_key: str = ""
    # The registry's token service (`GET /tingyu/registry/token`, docs/security.md): the key that signs
    # and the certificate the registry trusts (default: var/registry/token/, made by `tingyu up`), the
    # names the registry's `auth.token` expects, the imager's secret (the one caller that may push) and
    # the kubernetes agent's (pull only).
    registry_token_key: Path | None = None
    registry_token_cert: Path | None = None
    registry_service: str = SERVICE
    registry_issuer: str = ISSUER
    registry_token_ttl_s: int = 300
    registry_imager_password: SecretStr = SecretStr("")
    registry_kube_password: SecretStr = SecretStr("")  # the kubernetes agent's pull-only secret
    console_dir: Path | None = None  # the built console (default: console/dist of this source tree)
    # Remote operations (docs/remote.md).
    logs_max_tail: int = 10_000  # largest `tail` a logs request may ask for
    logs_follow_max_s: float = 600.0  # longest a followed log stream lasts
    exec_timeout_s: float = 60.0  # longest a non-interactive exec is waited for
    exec_idle_s: float = 900.0  # an exec WebSocket with nothing from either side this long is closed
    prepull_deadline_s: float = 3600.0  # a pre-pull's machines that have not pulled by then fail
    # Most recently written jobs, claimed names and machines' reports each API process holds (0:
    # all; about 0.4 KiB a job, 0.23 KiB a name, 1.2 KiB a report of ten containers).
    jobs_view_size: int = Field(20_000, ge=0)
    names_view_size: int = Field(100_000, ge=0)
    reports_view_size: int = Field(20_000, ge=0)
    node_page_max: int = 1000  # largest `pageSize` of /node/list
    # API worker processes `tingyu up` runs on the one port (0: as many as the machine has cores).
    workers: int = 0
    platform: PlatformSettings = Field(default_factory=get_platform_settings)

    @property
    def max_head_bytes(self) -> int:
        """What the HTTP server itself reads of a request head: above the URL limit, so that an
        over-long URL reaches the application and is answered with an envelope."""
        return self.max_url_bytes + 64 * 1024

    @property
    def registry_token_files(self) -> tuple[Path, Path]:
        """(key, certificate) of the registry token service."""
        folder = self.platform.state_dir / "registry" / "token"
        return self.registry_token_key or folder / "key.pem", self.registry_token_cert or folder / "cert.pem"

    @field_validator("admin_token")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if value.get_secret_value() and len(value.get_secret_value()) < 16:
            raise ValueError("TINGYU_API_ADMIN_TOKEN must be 16 characters or more")
        return value


@lru_cache
def get_settings() -> ApiSettings:
    return ApiSettings()
