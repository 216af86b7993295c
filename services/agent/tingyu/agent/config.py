"""Agent settings (`TINGYU_AGENT_*`)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, BeforeValidator, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tingyu.agent.agent import FULL_READ_S
from tingyu.agent.throttle import parse_rate
from tingyu.common.models.nodes import OPERATORS
from tingyu.common.settings import PlatformSettings, get_platform_settings


class AgentSettings(BaseSettings):
    """How often the agent beats and resyncs, what it says about its machine, where it keeps state.

    Every number is bounded: a value outside its range stops the agent at start, naming it."""

    model_config = SettingsConfigDict(env_prefix="TINGYU_AGENT_", extra="ignore")

    heartbeat_s: float = Field(default=10.0, ge=0.1, le=3600)
    # Docker is reconciled against the desired state this often without a nudge.
    resync_s: float = Field(default=30.0, ge=0.1, le=86400)
    # Every key of the machine is listed again this often when one changed (nudges lost).
    full_read_s: float = Field(default=FULL_READ_S, ge=1, le=7 * 86400)
    facts_every: int = Field(default=30, ge=1, le=100_000)  # heartbeats between two that carry the full facts
    area: str = ""
    operator: str = ""  # one of 移动/联通/电信 when set
    bandwidth_mbps: int = Field(default=0, ge=0, le=10_000_000)
    state_dir: Path = Path()  # default: <TINGYU_STATE_DIR>/agent
    docker_host: str = ""  # empty: DOCKER_HOST or the local socket
    docker_timeout_s: float = Field(default=60.0, gt=0, le=3600)
    pull_timeout_s: float = Field(default=600.0, gt=0, le=86400)
    # Grace period before a stopped container is killed.
    stop_timeout_s: float = Field(default=10.0, ge=0, le=3600)
    # During a change of spec, a new container that exits this soon did not start.
    start_settle_s: float = Field(default=2.0, ge=0, le=600)
    parallel: int = Field(default=4, ge=1, le=256)  # deployments reconciled at the same time
    max_file_bytes: int = Field(default=1024**3, ge=1, le=1024**4)  # largest file copied out of a container
    file_parallel: int = Field(default=2, ge=1, le=64)  # file copies at the same time
    # Enrollment (only while the machine holds no credential): the API and a one-time token.
    enroll_url: str = "http://127.0.0.1:8080/tingyu"
    enroll_token: str = ""
    enroll_ca: str = ""  # the CA of an API served over HTTPS with a private certificate
    metrics_port: int = Field(default=0, ge=0, le=65535)  # Prometheus metrics on this port (0: off)
    # Remote operations (docs/remote.md).
    logs_max_lines: int = Field(default=10_000, ge=1, le=1_000_000)  # most lines one logs answer carries
    # Most bytes one logs answer carries (the newest are kept).
    logs_max_bytes: int = Field(default=512 * 1024, ge=1024, le=512 * 1024)
    logs_follow_max_s: float = Field(default=3600.0, gt=0, le=86400)  # longest a followed log stream lasts
    # Commands (interactive or not) running at once on this machine.
    exec_max_sessions: int = Field(default=4, ge=1, le=64)
    # An interactive session with no input or output this long is closed.
    exec_idle_s: float = Field(default=900.0, gt=0, le=86400)
    exec_timeout_s: float = Field(default=60.0, gt=0, le=86400)  # longest a non-interactive command may run
    # Most output a non-interactive command answers.
    exec_max_output_bytes: int = Field(default=256 * 1024, ge=1024, le=512 * 1024)
    pull_parallel: int = Field(default=1, ge=1, le=16)  # image pre-pulls at the same time on this machine
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
