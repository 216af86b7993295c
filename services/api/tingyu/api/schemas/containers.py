"""Container request bodies and answers (contract §二)."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tingyu.api.config import get_settings
from tingyu.api.envelope import Absent
from tingyu.common.models.containers import EnvVar, Volume
from tingyu.common.names import is_deployment_name
from tingyu.common.policy import normalised


class ContainerItem(BaseModel):
    """One container of `/container/create` and `/container/updateByName`. cpu in cores, memory in MiB."""

    model_config = ConfigDict(extra="ignore")

    uuid: str = Field(min_length=1, max_length=64, description="machine uuid (tingyu-<32 hex>) or nodename")
    image: str = Field(min_length=1, max_length=512)
    imageversion: str = Field(default="", max_length=128)
    deploymentname: str
    env: list[EnvVar] = Field(default_factory=list)
    volumes: list[Volume] = Field(default_factory=list)
    requestscpu: float = Field(default=0, ge=0, le=1024)
    requestsmemory: int = Field(default=0, ge=0, le=16 * 1024 * 1024)
    limitscpu: float = Field(default=0, ge=0, le=1024)
    limitsmemory: int = Field(default=0, ge=0, le=16 * 1024 * 1024)

    @field_validator("deploymentname")
    @classmethod
    def _dns_name(cls, value: str) -> str:
        if not is_deployment_name(value):
            raise ValueError(
                f"'{value}' is not a valid name: use 1-63 lower-case letters, digits and '-', "
                "starting and ending with a letter or digit"
            )
        return value

    @field_validator("volumes")
    @classmethod
    def _absolute_paths(cls, volumes: list[Volume]) -> list[Volume]:
        settings = get_settings()
        if len(volumes) > settings.max_volumes:
            raise ValueError(f"at most {settings.max_volumes} volumes per container (TINGYU_API_MAX_VOLUMES)")
        for volume in volumes:
            for path in (volume.hostPath, volume.mountPath):
                if len(path.encode()) > settings.max_path_bytes:
                    raise ValueError(f"a volume path is longer than {settings.max_path_bytes} bytes")
                if not path.startswith("/") or normalised(path) != (path.rstrip("/") or "/") or "\0" in path:
                    raise ValueError(f"volume path '{path}' must be an absolute, normalised path")
                if ":" in path:
                    raise ValueError(f"volume path '{path}' must not contain ':' (no mount options)")
        return volumes

    @field_validator("env")
    @classmethod
    def _env_keys(cls, env: list[EnvVar]) -> list[EnvVar]:
        settings = get_settings()
        if len(env) > settings.max_env:
            raise ValueError(
                f"at most {settings.max_env} environment variables per container (TINGYU_API_MAX_ENV)"
            )
        size = sum(len(var.key.encode()) + len(var.value.encode()) for var in env)
        if size > settings.max_env_bytes:
            raise ValueError(
                f"the environment is {size} bytes, over {settings.max_env_bytes} per container "
                "(TINGYU_API_MAX_ENV_BYTES)"
            )
        for var in env:
            if not var.key or "=" in var.key or "\0" in var.key + var.value:
                raise ValueError(f"environment variable name '{var.key[:80]}' is not allowed")
        return env

    @model_validator(mode="after")
    def _limits_cover_requests(self) -> ContainerItem:
        if self.limitscpu and self.requestscpu > self.limitscpu:
            raise ValueError("requestscpu must not exceed limitscpu")
        if self.limitsmemory and self.requestsmemory > self.limitsmemory:
            raise ValueError("requestsmemory must not exceed limitsmemory")
        if 0 < self.limitsmemory < 6:
            raise ValueError("limitsmemory must be at least 6 MiB (Docker's minimum)")
        return self


class InheritUpdate(BaseModel):
    """`/container/inheritUpdate`: a new image for comma-separated deployments."""

    deploymentnames: str = Field(min_length=1)
    image: str = Field(min_length=1, max_length=512)
    imageversion: str = Field(default="", max_length=128)


# --- answers --------------------------------------------------------------------------------------


class ItemResult(BaseModel):
    """What became of one item of a request: code 200 with the `jobid` to follow, or 500 and why not."""

    code: int
    deploymentname: str
    message: str
    jobid: str | Absent = Field(default=None, description="Extension: present once the item is accepted")


class LifecycleAnswer(BaseModel):
    """start/stop/restart: `code` 200 when some name was accepted (`msg` says whether all were);
    500 with `tycode` and `detail` (the reasons) when none was."""

    msg: str
    code: int = Field(description="200, or 500 when no name was accepted")
    tycode: str | Absent = Field(
        default=None, description="Extension, with code 500: TY0017, TY0019 or TY0000"
    )
    detail: str | Absent = Field(default=None, description="Extension, with code 500: each name and why")
    data: list[ItemResult]


class ContainerView(BaseModel):
    """A deployment in the contract's /container/get shape, plus uuid, version and resources."""

    image: str = Field(description="The full reference the machine pulls")
    restart: str
    name: str
    volumes: list[Volume]
    env: list[EnvVar]
    network: str
    uuid: str
    imagename: str
    imageversion: str
    requestscpu: float
    requestsmemory: int
    limitscpu: float
    limitsmemory: int
    desiredstate: str


class PodInfo(BaseModel):
    podname: str
    podstate: str = Field(description="Pending, Running, Failed, Stopped or Deleted")
    message: str | Absent = Field(default=None, description="Extension: present when the machine said why")


class FailedUpdate(BaseModel):
    """The last change of spec that failed and was rolled back (until a later one succeeds)."""

    jobid: str
    imagename: str
    imageversion: str
    image: str = Field(description="The full reference it tried")
    message: str = Field(description="Why it failed")
    time: str


FAILED_UPDATE = "Extension: present after a change of spec failed; the machine runs the spec shown"


class PodView(BaseModel):
    """A deployment in the contract's /container/info shape."""

    createtime: str
    podinfo: list[PodInfo]
    deploymentname: str
    failedupdate: FailedUpdate | Absent = Field(default=None, description=FAILED_UPDATE)


class ContainerListing(ContainerView):
    """One container of a machine (/container/list): its spec and its pod state."""

    createtime: str
    podinfo: list[PodInfo]
    deploymentname: str
    failedupdate: FailedUpdate | Absent = Field(default=None, description=FAILED_UPDATE)


class DeploymentName(BaseModel):
    """The name that was asked for, when no deployment has it."""

    name: str


V = TypeVar("V", bound=BaseModel)


class Found(BaseModel, Generic[V]):
    """One name of a per-name read: code 200 and the deployment, or 500, the name and why."""

    code: int
    data: V | DeploymentName
    message: str
