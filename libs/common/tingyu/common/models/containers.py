"""Containers: the commands the API accepts, the desired state the deployer owns and what agents see."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

from pydantic import Field

from tingyu.common.models.base import Message
from tingyu.common.models.jobs import Command, JobKind


class EnvVar(Message):
    """One environment variable (contract field names)."""

    key: str
    value: str


class Volume(Message):
    """A hostPath bind (contract field names)."""

    hostPath: str
    mountPath: str


class ContainerSpec(Message):
    """What one deployment runs. cpu in cores, memory in MiB; 0 means no request/limit."""

    image: str
    imageversion: str
    image_ref: str = Field(description="The full reference the agent pulls, e.g. 127.0.0.1:5000/pcdn:v1")
    env: list[EnvVar] = Field(default_factory=list)
    volumes: list[Volume] = Field(default_factory=list)
    requests_cpu: float = 0.0
    requests_memory: int = 0
    limits_cpu: float = 0.0
    limits_memory: int = 0


class ContainerOp(StrEnum):
    """An operation on one deployment."""

    CREATE = "create"
    UPDATE = "update"
    START = "start"
    STOP = "stop"
    RESTART = "restart"
    DELETE = "delete"
    UPGRADE = "upgrade"  # only the image changes (inheritUpdate, canary rollouts)


class ImagePatch(Message):
    """The new image of an upgrade; everything else in the spec stays."""

    image: str
    imageversion: str
    image_ref: str


class ContainerCommand(Command):
    """A container operation accepted by the API; its job id is also its JetStream message id."""

    kind: ClassVar[JobKind] = JobKind.CONTAINER

    job_id: str
    op: ContainerOp
    name: str
    node_uuid: str
    spec: ContainerSpec | None = None  # create, update
    patch: ImagePatch | None = None  # upgrade
    issued_at: float
    rollout_id: str | None = None

    @property
    def job_op(self) -> str:
        return self.op.value

    @property
    def job_target(self) -> tuple[str, str]:
        return self.name, self.node_uuid


class DesiredState(StrEnum):
    """What the agent must make of a container."""

    RUNNING = "running"
    STOPPED = "stopped"
    ABSENT = "absent"


class FailedAttempt(Message):
    """A change of spec that did not take and was rolled back: what it tried and why it failed."""

    job_id: str
    image: str
    imageversion: str
    image_ref: str
    reason: str
    at: float


class DesiredContainer(Message):
    """One deployment as the deployer wants it; bucket `ty_desired`, key `<node uuid>.<name>`.

    `revision` grows with every accepted operation and is what jobs complete on. The bucket's own
    revision of the key (its stream sequence) is what agents compare to drop stale reads.

    A change of spec (update, upgrade) is a transaction: `fallback` keeps the last spec that ran
    until the change's job succeeds; if it fails, the spec goes back to `fallback` and the attempt
    is kept in `failed`.
    """

    name: str
    node_uuid: str = ""  # the machine it runs on ('' in records written before one key per deployment)
    spec: ContainerSpec
    state: DesiredState = DesiredState.RUNNING
    revision: int = 1
    restarts: int = 0
    job_id: str
    created_at: float
    fallback: ContainerSpec | None = None
    failed: FailedAttempt | None = None

    @property
    def running_spec(self) -> ContainerSpec:
        """The spec the machine runs while a change is in flight (else the desired one)."""
        return self.fallback or self.spec


class NodeDesired(Message):
    """Every desired container of one machine, gathered from its keys `<node uuid>.*` of
    `ty_desired` (and the legacy whole-machine record, key = node uuid, that the deployer splits
    at start). The agent keeps it in memory and on disk."""

    node_uuid: str
    containers: dict[str, DesiredContainer] = Field(default_factory=dict)


class DesiredNudge(Message):
    """Tells an agent that one deployment's desired state changed: the key's name and the bucket
    revision it now has (read that key alone). An empty nudge asks for a full read."""

    name: str
    revision: int


class DesiredListingRequest(Message):
    """An agent asks for its own desired state; the subject names the machine (its credential
    allows its own alone), so the request carries nothing."""


class ListedDeployment(Message):
    """One deployment of a listing: its desired state and the bucket revision of its key."""

    revision: int
    value: DesiredContainer


class DesiredListing(Message):
    """One machine's deployments as one cut of `ty_desired`, and `newest`: the sequence of the
    newest write under its keys in that cut (removals included), which the machine compares
    later to know whether anything changed since."""

    deployments: dict[str, ListedDeployment] = Field(default_factory=dict)
    newest: int = 0


class PodPhase(StrEnum):
    """Observed state of a container, in the contract's pod vocabulary."""

    PENDING = "Pending"
    RUNNING = "Running"
    FAILED = "Failed"
    STOPPED = "Stopped"
    DELETED = "Deleted"


class ContainerReport(Message):
    """What an agent last saw of one deployment, and which desired revision it applied."""

    name: str
    revision: int
    job_id: str
    phase: PodPhase
    podname: str
    message: str = ""
    container_id: str = ""
    image_ref: str = ""
    started_at: float | None = None


class NodeReport(Message):
    """An agent's full report of its deployments (stream `TY_OBSERVED`, bucket `ty_observed`)."""

    node_uuid: str
    containers: dict[str, ContainerReport] = Field(default_factory=dict)
    reported_at: float
    seq: int = 0


class NameClaim(Message):
    """Bucket `ty_names`: which machine a deployment name lives on, and which job claimed it."""

    node_uuid: str
    job_id: str
