"""Every NATS subject, JetStream stream, KV bucket and object store, declared once.

A service never spells a subject string itself: it calls one of these.
Subjects are dot-separated; the last tokens carry ids so that consumers can
filter and JetStream can keep one subject per entity where that helps.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from tingyu.common.models.base import Message
from tingyu.common.models.containers import (
    ContainerCommand,
    DesiredContainer,
    NameClaim,
    NodeDesired,
    NodeReport,
)
from tingyu.common.models.enroll import EnrollRecord
from tingyu.common.models.files import FileFetchCommand
from tingyu.common.models.images import ImagePushCommand, ImageRecord, ImageVersion
from tingyu.common.models.jobs import Command, Job, JobDeadline, JobKind
from tingyu.common.models.leases import LeaseRecord
from tingyu.common.models.metering import SampleBatch
from tingyu.common.models.nodes import NodeRecord
from tingyu.common.models.remote import PrepullCommand
from tingyu.common.models.rollouts import Rollout, RolloutCommand
from tingyu.common.models.tokens import TokenRecord

M = TypeVar("M", bound=Message)

GIB = 1 << 30
# Every stream, bucket and object store has a size limit (overridable per name with
# TINGYU_STORE_MAX_BYTES); a full one refuses the write to its writer and never drops what it holds
# (TY_JOBLOG alone drops its oldest lines: a log line is never worth refusing work for).

# --- Streams (durable commands and events) -------------------------------------------------------


@dataclass(frozen=True)
class StreamSpec:
    """A JetStream stream the platform owns; `retention` is `workqueue`, `limits` or `interest`."""

    name: str
    subjects: list[str]
    retention: str = "limits"
    max_age_s: float = 0.0  # 0: keep until removed by retention
    max_bytes: int = -1
    duplicate_window_s: float = 120.0
    description: str = ""
    max_msgs_per_subject: int = -1
    max_msg_size: int = -1
    discard: str = "new"  # `new`: a full stream refuses the write; `old`: it drops its oldest
    allow_direct: bool = False


COMMANDS = StreamSpec(
    name="TY_COMMANDS",
    subjects=["ty.cmd.>"],
    retention="workqueue",
    max_bytes=GIB // 2,
    duplicate_window_s=600.0,
    description="Accepted operator commands; one consumer per owning service; deduplicated by job id.",
)

REPORTS = StreamSpec(
    name="TY_OBSERVED",
    subjects=["ty.evt.observed.>"],
    retention="workqueue",
    max_bytes=GIB // 4,
    description="What agents saw on their machines; the deployer turns it into job results.",
)

SAMPLES = StreamSpec(
    name="TY_SAMPLES",
    subjects=["ty.samples.>"],
    retention="workqueue",
    max_age_s=7 * 24 * 3600.0,
    max_bytes=GIB,
    description="Metering samples from agents, kept until metering has stored them.",
)

JOB_DEADLINES = StreamSpec(
    name="TY_JOB_DEADLINES",
    subjects=["ty.jobdeadline.>"],
    retention="workqueue",
    max_bytes=GIB // 8,
    description="One timer per dispatched job: fails the job when its machine does not converge in time.",
)

DEAD = StreamSpec(
    name="TY_DEAD",
    subjects=["ty.dead.>"],
    max_age_s=30 * 24 * 3600.0,
    max_bytes=GIB // 8,
    description="Messages a consumer gave up on, with the reason; `tingyu dead ls|replay`.",
)
DEAD_MAX_DATA = 512 * 1024  # bytes of a dead message's body kept (a dead letter stays under max payload)

AUDIT = StreamSpec(
    name="TY_AUDIT",
    subjects=["ty.audit.>"],
    max_age_s=90 * 24 * 3600.0,
    max_bytes=GIB // 2,
    description="Every change, file download and refused call made to the API (docs/security.md).",
)

JOBLOG_LINES = 200  # lines kept per job: the newest
JOBLOG_LINE_MAX = 2048  # bytes of one line's message; a longer one is cut and marked
JOBLOG = StreamSpec(
    name="TY_JOBLOG",
    subjects=["ty.joblog.>"],
    max_age_s=7 * 24 * 3600.0,
    max_bytes=GIB // 8,
    max_msgs_per_subject=JOBLOG_LINES,
    max_msg_size=JOBLOG_LINE_MAX + 1024,  # the line's message and its other fields
    # Log lines are the one thing the platform drops on purpose: the oldest go when it is full.
    discard="old",
    allow_direct=True,
    description="Log lines the platform services wrote while working on a job; one subject per job.",
)

ALL_STREAMS: tuple[StreamSpec, ...] = (COMMANDS, REPORTS, SAMPLES, JOB_DEADLINES, DEAD, AUDIT, JOBLOG)


@dataclass(frozen=True)
class Family:
    """Subjects `<prefix>.<id>`, one per entity (a job, a machine, a consumer): call it with the id;
    `all` is the wildcard a consumer filters on."""

    prefix: str
    wildcard: str = ">"

    def __call__(self, token: str) -> str:
        return f"{self.prefix}.{token}"

    @property
    def all(self) -> str:
        return f"{self.prefix}.{self.wildcard}"


container_command = Family("ty.cmd.container")
"""A container command (create/update/start/stop/restart/delete) for the deployer; id = job id."""
image_command = Family("ty.cmd.image")
"""An image push for the imager; id = job id."""
rollout_command = Family("ty.cmd.rollout")
"""A canary rollout (updateByInherit) for the deployer; id = job id."""
file_command = Family("ty.cmd.file")
"""A file fetch out of a container, for the deployer to route to the agent; id = job id."""
prepull_command = Family("ty.cmd.prepull")
"""An image pre-pull onto many machines, for the deployer; id = job id."""
report = Family("ty.evt.observed")
"""An agent's report of its containers; id = machine uuid."""
samples = Family("ty.samples")
"""A batch of metering samples from one machine; id = machine uuid."""
job_deadline = Family("ty.jobdeadline")
"""The timer message of one job; id = job id."""
dead = Family("ty.dead")
"""A dead letter of one consumer; id = the consumer's durable name."""
audit = Family("ty.audit")
"""An audit event; id = its action (`container.create`), so a subscriber filters by action or area."""
joblog = Family("ty.joblog")
"""A log line written by a platform service while working on a job; id = job id."""

CONTAINER_COMMANDS = container_command.all
IMAGE_COMMANDS = image_command.all
ROLLOUT_COMMANDS = rollout_command.all
FILE_COMMANDS = file_command.all
PREPULL_COMMANDS = prepull_command.all
REPORTS_ALL = report.all
SAMPLES_ALL = samples.all
JOB_DEADLINES_ALL = job_deadline.all
DEAD_ALL = dead.all
AUDIT_ALL = audit.all
JOBLOG_ALL = joblog.all

_COMMAND_SUBJECTS = {
    JobKind.CONTAINER: container_command,
    JobKind.IMAGE: image_command,
    JobKind.ROLLOUT: rollout_command,
    JobKind.FILE: file_command,
    JobKind.PREPULL: prepull_command,
}


def command_subject(command: Command) -> str:
    """The subject a command is published on, by the kind of its job."""
    return _COMMAND_SUBJECTS[command.kind](command.job_id)


# --- Core NATS (fire-and-forget or request/reply) ------------------------------------------------


heartbeat = Family("ty.hb", wildcard="*")
"""A machine's heartbeat as the machine publishes it; core NATS, never stored as such; id =
machine uuid. nats-server maps it onto its partition subject (`heartbeat_mapping`)."""
HEARTBEATS_ALL = heartbeat.all

# Heartbeats are split over partitions by nats-server's deterministic subject mapping (in the
# account JWT, so a machine still publishes only `ty.hb.<uuid>`); each nodes replica subscribes
# to the partitions it holds. TINGYU_HEARTBEAT_PARTITIONS changes the count: the account JWT and
# every nodes replica must agree, which the launcher sees to.
HEARTBEAT_PARTITIONS = 16


def heartbeat_mapping(partitions: int) -> dict[str, str]:
    """The subject mapping of heartbeats: `ty.hb.<uuid>` -> `ty.hb.<partition>.<uuid>`."""
    return {HEARTBEATS_ALL: f"{heartbeat.prefix}.{{{{partition({partitions},1)}}}}.{{{{wildcard(1)}}}}"}


HEARTBEATS_DELIVERED = f"{heartbeat.prefix}.*.*"
"""Every heartbeat as subscribers get it (on its partition subject): probes and tests."""


def heartbeat_partition(partition: int) -> str:
    """The heartbeats of one partition, as a nodes replica subscribes to them."""
    return f"{heartbeat.prefix}.{partition}.*"


def heartbeat_partitions(node_uuid: str) -> str:
    """A machine's heartbeat on any partition subject, as its publish permission names it: the
    mapped subject is what nats-server checks. Whatever partition it names, nodes replicas take
    a beat only on the machine's own (`partition_of`)."""
    return f"{heartbeat.prefix}.*.{node_uuid}"


def partition_of(node_uuid: str, partitions: int) -> int:
    """The partition nats-server maps a machine's heartbeat to: FNV-1a (32 bits) of the uuid
    modulo the count, as its `partition()` transform computes it."""
    digest = 0x811C9DC5
    for byte in node_uuid.encode():
        digest = ((digest ^ byte) * 0x01000193) & 0xFFFFFFFF
    return digest % partitions


nodes_heard = Family("ty.nodes.heard", wildcard="*")
"""When a nodes replica last heard the machines of one heartbeat partition (`NodesHeard`); core
NATS, read by every API process; id = partition."""
NODES_HEARD_ALL = nodes_heard.all


def agent_nudge(node_uuid: str) -> str:
    """Tells one agent that its desired state changed: a `DesiredNudge` names the key and its new
    revision (the agent reads that key alone); an empty message asks for a full read."""
    return f"ty.agent.{node_uuid}.nudge"


def agent_request(node_uuid: str, verb: str) -> str:
    """A request/reply addressed to one agent (e.g. `file`)."""
    return f"ty.agent.{node_uuid}.req.{verb}"


def agent_all(node_uuid: str) -> str:
    """Everything addressed to one agent: its nudges and its requests."""
    return f"ty.agent.{node_uuid}.>"


def agent_exec_input(node_uuid: str, session: str) -> str:
    """The input (keystrokes, resizes, keep-alives) of one interactive exec session on one agent."""
    return f"ty.agent.{node_uuid}.req.exec.{session}"


AGENT_NUDGE_ALL = "ty.agent.*.nudge"
AGENT_REQUEST_ALL = "ty.agent.*.req.*"

METERING_QUERY = "ty.rpc.metering.query"
"""Request/reply: the API asks metering for a time-range aggregation."""

IMAGER_QUERY = "ty.rpc.imager.query"
"""Request/reply: catalog search and deletes."""

DESIRED_LISTING_ALL = "ty.rpc.desired.*"


def desired_listing(node_uuid: str) -> str:
    """Request/reply: one agent asks the deployer for its own desired state (`DesiredListing`);
    the subject names the machine, which its credential allows alone."""
    return f"ty.rpc.desired.{node_uuid}"


def listing_machine(subject: str) -> str:
    """The machine a `desired_listing` subject names ('' when it is not one)."""
    head, _, node_uuid = subject.rpartition(".")
    return node_uuid if head == "ty.rpc.desired" else ""


# Queue groups: replicas of one service share the work of a core-NATS subject.
QUEUE_NODES = "tingyu-nodes"
QUEUE_METERING = "tingyu-metering"
QUEUE_IMAGER = "tingyu-imager"
QUEUE_DEPLOYER = "tingyu-deployer"

# --- Durable consumers, declared next to their streams ------------------------------------------


@dataclass(frozen=True)
class ConsumerSpec(Generic[M]):
    """A durable pull consumer shared by a service's replicas.

    `max_deliver` is always bounded: a message that exhausts it is dead-lettered (see
    `tingyu.common.bus.consumers`). `order_by` keeps messages with the same key in stream order.
    `sent_at` is when an item was sent (epoch seconds, its sender's clock): its first delivery
    observes the item's wait in the stream (`tingyu_command_wait_seconds`).
    """

    stream: StreamSpec
    durable: str
    subject: str
    model: type[M]
    batch: int = 64
    ack_wait_s: float = 60.0
    max_deliver: int = 20
    max_ack_pending: int = 256
    order_by: Callable[[M], Hashable] | None = None
    sent_at: Callable[[M], float] | None = None

    @property
    def max_deliveries_advisory(self) -> str:
        return f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{self.stream.name}.{self.durable}"


DEPLOYER_COMMANDS = ConsumerSpec(
    COMMANDS,
    "deployer-commands",
    CONTAINER_COMMANDS,
    ContainerCommand,
    order_by=lambda c: c.node_uuid,  # one machine's desired state is written in command order
    sent_at=lambda c: c.issued_at,
)
DEPLOYER_ROLLOUTS = ConsumerSpec(
    COMMANDS,
    "deployer-rollouts",
    ROLLOUT_COMMANDS,
    RolloutCommand,
    # Calls on one rollout are applied in stream order (a later percent extends an earlier one).
    order_by=lambda c: (c.area, c.operator, c.image),
    sent_at=lambda c: c.issued_at,
)
DEPLOYER_FILES = ConsumerSpec(
    COMMANDS,
    "deployer-files",
    FILE_COMMANDS,
    FileFetchCommand,
    sent_at=lambda c: c.issued_at,
    ack_wait_s=30.0,  # a copy in progress keeps its message with in-progress acks
    max_deliver=1000,  # retries end at the command's agent wait (about one a second), well before this
)
DEPLOYER_REPORTS = ConsumerSpec(
    REPORTS,
    "deployer-observed",
    REPORTS_ALL,
    NodeReport,
    order_by=lambda r: r.node_uuid,
    sent_at=lambda r: r.reported_at,
)
DEPLOYER_DEADLINES = ConsumerSpec(
    JOB_DEADLINES,
    "deployer-deadlines",
    JOB_DEADLINES_ALL,
    JobDeadline,
    ack_wait_s=30.0,
    max_deliver=100,  # an early timer comes back once, when due; the rest is room for failures
)
DEPLOYER_PREPULL = ConsumerSpec(
    COMMANDS,
    "deployer-prepull",
    PREPULL_COMMANDS,
    PrepullCommand,
    sent_at=lambda c: c.issued_at,
    batch=16,
    ack_wait_s=30.0,  # a pre-pull keeps its message with in-progress acks until every machine is done
    max_deliver=50,  # a redelivery (a replica died) carries on: machines that pulled answer at once
)
IMAGER_COMMANDS = ConsumerSpec(
    COMMANDS, "imager-commands", IMAGE_COMMANDS, ImagePushCommand, batch=2, sent_at=lambda c: c.issued_at
)
METERING_SAMPLES = ConsumerSpec(
    SAMPLES, "metering-samples", SAMPLES_ALL, SampleBatch, batch=512, max_ack_pending=1024
)

ALL_CONSUMERS: tuple[ConsumerSpec[Any], ...] = (
    DEPLOYER_COMMANDS,
    DEPLOYER_ROLLOUTS,
    DEPLOYER_FILES,
    DEPLOYER_REPORTS,
    DEPLOYER_DEADLINES,
    DEPLOYER_PREPULL,
    IMAGER_COMMANDS,
    METERING_SAMPLES,
)

# --- Key/value buckets and object stores ---------------------------------------------------------


@dataclass(frozen=True)
class BucketSpec(Generic[M]):
    """A JetStream KV bucket holding one model; `history` is how many revisions per key are kept.

    `max_value_bytes` bounds one value (checked before every write, so a write over it fails with
    a reason instead of reaching the server); `max_bytes` bounds the bucket (a full bucket refuses
    writes, it never drops a value).
    """

    name: str
    model: type[M]
    history: int = 1
    ttl_s: float = 0.0
    max_bytes: int = -1
    max_value_bytes: int = 1 << 20
    description: str = ""

    @property
    def stream(self) -> str:
        return f"KV_{self.name}"

    @property
    def prefix(self) -> str:
        return f"$KV.{self.name}."


NODES = BucketSpec(
    "ty_nodes",
    NodeRecord,
    max_bytes=GIB // 8,
    description="Node registry: facts, heartbeat time, Ready/NotReady; key = uuid.",
)
DESIRED = BucketSpec(
    "ty_desired",
    DesiredContainer,
    history=5,
    max_bytes=GIB // 2,
    description="Desired state of one deployment; key = <node uuid>.<deployment name>.",
)
LEGACY_DESIRED = BucketSpec(
    DESIRED.name,
    NodeDesired,
    history=DESIRED.history,
    max_bytes=DESIRED.max_bytes,
    description="Before one key per deployment: a whole machine's desired state, key = node uuid "
    "(the deployer splits it at start; never written).",
)


def desired_key(node_uuid: str, name: str) -> str:
    """The `ty_desired` key of one deployment."""
    return f"{node_uuid}.{name}"


def desired_keys(node_uuid: str) -> str:
    """The `ty_desired` key pattern of every deployment of one machine."""
    return f"{node_uuid}.*"


def desired_lister(node_uuid: str) -> str:
    """The name of the short-lived consumer with which a machine lists its own `ty_desired` keys
    (its credential allows this consumer, with that filter, and no other)."""
    return f"desired_{node_uuid}"


NAMES = BucketSpec(
    "ty_names",
    NameClaim,
    max_bytes=GIB // 8,
    description="Deployment name -> node uuid; creating a key claims the name.",
)
REPORTED = BucketSpec(
    "ty_observed",
    NodeReport,
    max_bytes=GIB // 4,
    description="The last report of one machine's containers (the deployer stores it); key = node uuid.",
)
JOBS = BucketSpec(
    "ty_jobs",
    Job,
    ttl_s=7 * 24 * 3600.0,
    max_bytes=GIB // 2,
    description="Asynchronous operations; key = job id.",
)
IMAGES = BucketSpec(
    "ty_images",
    ImageRecord,
    max_bytes=GIB // 16,
    description="Image catalog: one key per image (its index: name, created_at) and one per version; "
    "keys `<image>` and `<image>.<version>`, each with '.' written '=2E'.",
)
IMAGE_VERSIONS = BucketSpec(
    IMAGES.name,
    ImageVersion,
    max_bytes=IMAGES.max_bytes,
    description="The version records of `ty_images` (keys `<image>.<version>`).",
)
ROLLOUTS = BucketSpec(
    "ty_rollouts", Rollout, max_bytes=GIB // 8, description="Canary rollouts; key = rollout id."
)
LEASES = BucketSpec(
    "ty_leases",
    LeaseRecord,
    max_bytes=GIB // 64,
    description="Leader leases of singleton loops; key = loop name.",
)
TOKENS = BucketSpec(
    "ty_tokens",
    TokenRecord,
    max_bytes=GIB // 64,
    max_value_bytes=64 * 1024,
    description="API tokens: role, areas and the sha256 of the secret (never the secret); key = token id.",
)
ENROLL = BucketSpec(
    "ty_enroll",
    EnrollRecord,
    max_bytes=GIB // 16,
    description="Enrollment tokens (key = token.<sha256>) and machine keys (key = machine.<uuid>).",
)


def enroll_token_key(token_hash: str) -> str:
    """The `ty_enroll` key of an enrollment token, by the sha256 hex of the token."""
    return f"token.{token_hash}"


def machine_key(node_uuid: str) -> str:
    """The `ty_enroll` key of one machine's enrolled public key."""
    return f"machine.{node_uuid}"


def record_model(spec: BucketSpec[Any], key: str) -> type[Message]:
    """The model of one record of `spec`: `ty_images` holds image index records (one-token keys)
    and version records (`<image>.<version>`); every other bucket holds its one model."""
    if spec.name == IMAGES.name and "." in key:
        return IMAGE_VERSIONS.model
    return spec.model


ALL_BUCKETS: tuple[BucketSpec[Any], ...] = (
    NODES,
    DESIRED,
    NAMES,
    REPORTED,
    JOBS,
    IMAGES,
    ROLLOUTS,
    LEASES,
    TOKENS,
    ENROLL,
)


@dataclass(frozen=True)
class ObjectStoreSpec:
    """A JetStream object store bucket (stream `OBJ_<name>`)."""

    name: str
    ttl_s: float = 0.0
    max_bytes: int = -1
    description: str = ""

    @property
    def stream(self) -> str:
        return f"OBJ_{self.name}"


UPLOADS = ObjectStoreSpec(
    "ty_uploads",
    ttl_s=24 * 3600.0,
    max_bytes=4 * GIB,
    description="Image tars on their way to the registry.",
)
FILES = ObjectStoreSpec(
    "ty_files", ttl_s=24 * 3600.0, max_bytes=GIB, description="Files copied out of containers."
)

ALL_OBJECT_STORES: tuple[ObjectStoreSpec, ...] = (UPLOADS, FILES)
