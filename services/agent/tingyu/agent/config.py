"""Agent settings (`TINGYU_AGENT_*`)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, BeforeValidator, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tingyu.agent.throttle import parse_rate
from tingyu.common.models.nodes import OPERATORS
from tingyu.common.settings import PlatformSettings, get_platform_settings


class AgentSettings(BaseSettings):
    """How often the agent beats and resyncs, what it says about its machine, where it keeps state."""

    model_config = SettingsConfigDict(env_prefix="TINGYU_AGENT_", extra="ignore")

    heartbeat_s: float = 10.0
    resync_s: float = 30.0  # Docker is reconciled against the desired state this often without a nudge
    full_read_s: float = 600.0  # every key of the machine is listed again this often (lost nudges)
    facts_every: int = 30  # heartbeats between two that carry the full facts
    area: str = ""
    operator: str = ""  # one of 移动/联通/电信 when set
    bandwidth_mbps: int = 0
    state_dir: Path = Path()  # default: <TINGYU_STATE_DIR>/agent
    docker_host: str = ""  # empty: DOCKER_HOST or the local socket
    docker_timeout_s: float = 60.0
    pull_timeout_s: float = 600.0
    stop_timeout_s: float = 10.0  # grace period before a stopped container is killed
    start_settle_s: float = 2.0  # during a change of spec, a new container that exits this soon did not start
    parallel: int = 4  # deployments reconciled at the same time
    max_file_bytes: int = 1024**3  # largest file copied out of a container
    file_parallel: int = 2  # file copies at the same time
    # Enrollment (only while the machine holds no credential): the API and a one-time token.
    enroll_url: str = "http://127.0.0.1:8080/tingyu"
    enroll_token: str = ""
    enroll_ca: str = ""  # the CA of an API served over HTTPS with a private certificate
    metrics_port: int = 0  # Prometheus metrics on this port (0: off)
    # Remote operations (docs/remote.md).
    logs_max_lines: int = 10_000  # most lines one logs answer carries
    logs_max_bytes: int = 512 * 1024  # most bytes one logs answer carries (the newest are kept)
    logs_follow_max_s: float = 3600.0  # longest a followed log stream lasts
    exec_max_sessions: int = 4  # commands (interactive or not) running at once on this machine
    exec_idle_s: float = 900.0  # an interactive session with no input or output this long is closed
    exec_timeout_s: float = 60.0  # longest a non-interactive command may run
    exec_max_output_bytes: int = 256 * 1024  # most output a non-interactive command answers
    pull_parallel: int = 1  # image pre-pulls at the same time on this machine
    # Bytes per second all of this machine's pulls share (`5M`, `800k`; 0: no cap), docs/remote.md.
    pull_rate: Annotated[int, BeforeValidator(parse_rate)] = 0
    # `kubernetes`: one process is the agent of every Node of a cluster (docs/kubernetes.md).
    runtime: Literal["docker", "kubernetes"] = Field(
        "docker", validation_alias=AliasChoices("TINGYU_RUNTIME", "TINGYU_AGENT_RUNTIME")
    )
    platform: PlatformSettings = Field(default_factory=get_platform_settings)

    @field_validator("operator")
    @classmethod
    def _known_operator(cls, value: str) -> str:
        if value and value not in OPERATORS:
            raise ValueError(f"operator must be one of {'/'.join(OPERATORS)}, not {value!r}")
        return value

    @model_validator(mode="after")
    def _default_state_dir(self) -> AgentSettings:
        if "state_dir" not in self.model_fields_set:
            self.state_dir = self.platform.state_dir / "agent"
        return self


@lru_cache
def get_settings() -> AgentSettings:
    """The process-wide agent settings; tests call `get_settings.cache_clear()`."""
    return AgentSettings()
