"""Every NATS subject, JetStream stream, KV bucket and object store, declared once.

A service never spells a subject string itself: it calls one of these.
Subjects are dot-separated; the last tokens carry ids so that consumers can
filter and JetStream can keep one subject per entity where that helps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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


COMMANDS = StreamSpec(
    name="TY_COMMANDS",
    subjects=["ty.cmd.>"],
    retention="workqueue",
    duplicate_window_s=600.0,
    description="Accepted operator commands; one consumer per owning service; deduplicated by job id.",
)

OBSERVED = StreamSpec(
    name="TY_OBSERVED",
    subjects=["ty.evt.observed.>"],
    retention="workqueue",
    description="What agents saw on their machines; the deployer turns it into job results.",
)

SAMPLES = StreamSpec(
    name="TY_SAMPLES",
    subjects=["ty.samples.>"],
    retention="workqueue",
    max_age_s=7 * 24 * 3600.0,
    description="Metering samples from agents, kept until metering has stored them.",
)

JOB_DEADLINES = StreamSpec(
    name="TY_JOB_DEADLINES",
    subjects=["ty.jobdeadline.>"],
    retention="workqueue",
    description="One timer per dispatched job: fails the job when its machine does not converge in time.",
)

ALL_STREAMS: tuple[StreamSpec, ...] = (COMMANDS, OBSERVED, SAMPLES, JOB_DEADLINES)


def container_command(job_id: str) -> str:
    """A container command (create/update/start/stop/restart/delete) for the deployer."""
    return f"ty.cmd.container.{job_id}"


CONTAINER_COMMANDS = "ty.cmd.container.>"


def image_command(job_id: str) -> str:
    """An image push for the imager."""
    return f"ty.cmd.image.{job_id}"


IMAGE_COMMANDS = "ty.cmd.image.>"


def rollout_command(job_id: str) -> str:
    """A canary rollout (updateByInherit) for the deployer."""
    return f"ty.cmd.rollout.{job_id}"


ROLLOUT_COMMANDS = "ty.cmd.rollout.>"


def file_command(job_id: str) -> str:
    """A file fetch out of a container, for the deployer to route to the agent."""
    return f"ty.cmd.file.{job_id}"


FILE_COMMANDS = "ty.cmd.file.>"


def observed(node_uuid: str) -> str:
    """An agent's report of its containers."""
    return f"ty.evt.observed.{node_uuid}"


OBSERVED_ALL = "ty.evt.observed.>"


def samples(node_uuid: str) -> str:
    """A batch of metering samples from one machine."""
    return f"ty.samples.{node_uuid}"


SAMPLES_ALL = "ty.samples.>"


def job_deadline(job_id: str) -> str:
    """The timer message of one job."""
    return f"ty.jobdeadline.{job_id}"


JOB_DEADLINES_ALL = "ty.jobdeadline.>"

# --- Core NATS (fire-and-forget or request/reply) ------------------------------------------------


def heartbeat(node_uuid: str) -> str:
    """A machine's heartbeat; core NATS, never stored as such."""
    return f"ty.hb.{node_uuid}"


HEARTBEATS_ALL = "ty.hb.*"


def agent_nudge(node_uuid: str) -> str:
    """Tells one agent that its desired state changed (it re-reads the bucket)."""
    return f"ty.agent.{node_uuid}.nudge"


def agent_request(node_uuid: str, verb: str) -> str:
    """A request/reply addressed to one agent (e.g. `file`)."""
    return f"ty.agent.{node_uuid}.req.{verb}"


AGENT_NUDGE_ALL = "ty.agent.*.nudge"
AGENT_REQUEST_ALL = "ty.agent.*.req.*"

METERING_QUERY = "ty.rpc.metering.query"
"""Request/reply: the API asks metering for a time-range aggregation."""

IMAGER_QUERY = "ty.rpc.imager.query"
"""Request/reply: catalog search and deletes."""

# Queue groups: replicas of one service share the work of a core-NATS subject.
QUEUE_NODES = "tingyu-nodes"
QUEUE_METERING = "tingyu-metering"
QUEUE_IMAGER = "tingyu-imager"

# Durable consumer names.
DURABLE_DEPLOYER_COMMANDS = "deployer-commands"
DURABLE_DEPLOYER_ROLLOUTS = "deployer-rollouts"
DURABLE_DEPLOYER_FILES = "deployer-files"
DURABLE_DEPLOYER_OBSERVED = "deployer-observed"
DURABLE_DEPLOYER_DEADLINES = "deployer-deadlines"
DURABLE_IMAGER_COMMANDS = "imager-commands"
DURABLE_METERING_SAMPLES = "metering-samples"

# --- Key/value buckets and object stores ---------------------------------------------------------


@dataclass(frozen=True)
class BucketSpec:
    """A JetStream KV bucket; `history` is how many revisions per key are kept."""

    name: str
    history: int = 1
    ttl_s: float = 0.0
    description: str = ""
    extra: dict[str, str] = field(default_factory=dict)


NODES = BucketSpec(
    "ty_nodes", description="Node registry: facts, heartbeat time, Ready/NotReady; key = uuid."
)
DESIRED = BucketSpec(
    "ty_desired", history=5, description="Desired containers of one machine; key = node uuid."
)
NAMES = BucketSpec("ty_names", description="Deployment name -> node uuid; creating a key claims the name.")
OBSERVED_STATE = BucketSpec(
    "ty_observed", description="Last observed containers of one machine; key = node uuid."
)
JOBS = BucketSpec("ty_jobs", ttl_s=7 * 24 * 3600.0, description="Asynchronous operations; key = job id.")
IMAGES = BucketSpec("ty_images", description="Image catalog; key = image name.")
ROLLOUTS = BucketSpec("ty_rollouts", description="Canary rollouts; key = rollout id.")
LEASES = BucketSpec("ty_leases", description="Leader leases of singleton loops; key = loop name.")

ALL_BUCKETS: tuple[BucketSpec, ...] = (NODES, DESIRED, NAMES, OBSERVED_STATE, JOBS, IMAGES, ROLLOUTS, LEASES)


@dataclass(frozen=True)
class ObjectStoreSpec:
    """A JetStream object store bucket."""

    name: str
    ttl_s: float = 0.0
    description: str = ""


UPLOADS = ObjectStoreSpec(
    "ty_uploads", ttl_s=24 * 3600.0, description="Image tars on their way to the registry."
)
FILES = ObjectStoreSpec("ty_files", ttl_s=24 * 3600.0, description="Files copied out of containers.")

ALL_OBJECT_STORES: tuple[ObjectStoreSpec, ...] = (UPLOADS, FILES)
