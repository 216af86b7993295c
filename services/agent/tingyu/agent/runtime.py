"""What the reconciler needs from a container engine; Docker implements it, a fleet simulator can too.

Every method is a coroutine so that an implementation decides how it waits (Docker's blocking
client runs in threads, a simulated engine answers at once).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from tingyu.common.models.containers import ContainerSpec

LABEL_NODE = "tingyu.node"
LABEL_SPEC = "tingyu.spec"
LABEL_REVISION = "tingyu.revision"
LABEL_JOB = "tingyu.job"


class RuntimeFailure(Exception):
    """The engine refused an operation; the text is the engine's own and ends up in the report."""


class PullFailure(RuntimeFailure):
    """An image could not be fetched; `permanent` when waiting cannot help (no such tag or repository)."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


# Registry answers that say the image is not there (or not ours to take): retrying cannot help.
_PERMANENT_PULL_ERRORS = (
    "manifest unknown",
    "not found",
    "unknown tag",
    "does not exist",
    "name unknown",
    "invalid reference format",
    "pull access denied",
    "unauthorized",
    "denied",
)


def pull_failure(image_ref: str, engine_text: str) -> PullFailure:
    """The engine's pull error, judged permanent (fail the change now) or transient (wait and retry)."""
    lowered = engine_text.lower()
    permanent = any(marker in lowered for marker in _PERMANENT_PULL_ERRORS)
    return PullFailure(f"cannot pull image {image_ref}: {engine_text}", permanent=permanent)


class ImageMissing(RuntimeFailure):
    """A create found no such image on the machine (it was removed since it was last seen)."""


class NameTaken(RuntimeFailure):
    """A create found the name in use by a container already there."""


class FileTooLarge(RuntimeFailure):
    """A file asked for is bigger than the limit; the text gives both sizes."""


@dataclass(frozen=True)
class RuntimeContainer:
    """One container as the engine sees it."""

    id: str
    name: str
    status: str  # Docker's vocabulary: created, running, restarting, paused, exited, dead
    labels: dict[str, str] = field(default_factory=dict)
    image_ref: str = ""
    exit_code: int = 0
    error: str = ""
    started_at: float | None = None
    # Told to run and on its way, though not running yet (Kubernetes: 1 replica, its Pod pending).
    starting: bool = False

    @property
    def spec_hash(self) -> str:
        return self.labels.get(LABEL_SPEC, "")

    @property
    def alive(self) -> bool:
        """Running, or about to run again by its restart policy."""
        return self.starting or self.status in ("running", "restarting", "paused")


@dataclass
class RuntimeFile:
    """A regular file being read out of a container; `reader` blocks (read it in a thread) and
    refuses to go past `limit` bytes even if the file grew after it was opened."""

    name: str
    size: int  # as the engine reported it when the file was opened
    reader: io.RawIOBase

    def close(self) -> None:
        self.reader.close()


@dataclass(frozen=True)
class CreateRequest:
    """Everything needed to create one deployment's container."""

    name: str
    spec: ContainerSpec
    labels: dict[str, str]


class Runtime(Protocol):
    """A container engine as the reconciler uses it."""

    async def list_node(self, node_uuid: str) -> list[RuntimeContainer]:
        """Every container labelled `tingyu.node=<node_uuid>`, running or not."""
        ...

    async def find(self, node_uuid: str, name: str) -> RuntimeContainer | None:
        """The container named `name` if it is labelled `tingyu.node=<node_uuid>` (one look, not a
        listing: a pass about one deployment needs no other)."""
        ...

    async def has_image(self, image_ref: str) -> bool: ...

    async def pull(self, image_ref: str, rate: int = 0) -> None:
        """Fetch the image, at most `rate` bytes per second when above 0 (an engine that cannot cap
        pulls ignores it); RuntimeFailure with the engine's text when it cannot."""
        ...

    async def create(self, request: CreateRequest) -> RuntimeContainer:
        """The new container (not started). `ImageMissing` when the engine does not have the image,
        `NameTaken` when a container of that name is already there."""
        ...

    async def inspect(self, container_id: str) -> RuntimeContainer | None: ...

    async def start(self, container_id: str) -> None: ...

    async def stop(self, container_id: str) -> None: ...

    async def restart(self, container_id: str) -> None: ...

    async def replace(self, container_id: str, request: CreateRequest) -> RuntimeContainer:
        """The container with a new spec (an update): Docker removes it and creates the new one;
        Kubernetes patches its Deployment's template, so the Deployment itself stays."""
        ...

    async def settle(self, container_id: str) -> None:
        """Raise `RuntimeFailure` when the container exits right after its start (asked only while a
        change of spec is in flight, so that a crashing new version rolls back)."""
        ...

    async def remove(self, container_id: str) -> None:
        """Remove by force (a running container is killed); an absent one is fine."""
        ...

    async def watch(self, node_uuid: str, notify: Callable[[], None], stop: asyncio.Event) -> None:
        """Call `notify` whenever one of this node's containers dies or vanishes, until `stop` is set."""
        ...

    async def open_file(self, container_id: str, path: str, limit: int) -> RuntimeFile:
        """Open the regular file at the absolute `path` (symlinks followed inside the container).

        RuntimeFailure when it is missing or not a regular file, FileTooLarge when over `limit`.
        """
        ...


def spec_hash(spec: ContainerSpec) -> str:
    """A stable hash of what a container runs: a new one means the container must be recreated.

    Defaults are left out so that a field added to ContainerSpec later does not change the hash
    of every existing spec (which would recreate every container of the fleet on upgrade).
    """
    canonical = json.dumps(spec.model_dump(mode="json", exclude_defaults=True), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def podname(name: str, spec_digest: str, container_id: str = "") -> str:
    """`<name>-<spec hash 10>-<container id 5>`, in the shape of a Kubernetes pod name."""
    base = f"{name}-{spec_digest[:10]}"
    return f"{base}-{container_id[:5]}" if container_id else base
