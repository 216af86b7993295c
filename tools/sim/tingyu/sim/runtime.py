"""A simulated container engine: the `Runtime` the reconciler drives, with no engine behind it.

One `SimRuntime` serves every simulated machine of a process (containers are keyed by the node
label, as Docker's are). Starts take a configurable time; a configurable share of creates fail,
chosen by a hash of machine, name and spec so that the same deployment fails the same way again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import secrets
from collections.abc import Callable

from tingyu.agent.runtime import (
    LABEL_NODE,
    CreateRequest,
    NameTaken,
    RuntimeContainer,
    RuntimeFailure,
    RuntimeFile,
)
from tingyu.common.timefmt import now


def _unit(*parts: str) -> float:
    """A deterministic number in [0, 1) from the given strings."""
    digest = hashlib.sha256("\x00".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class SimRuntime:
    """In-memory containers of many simulated machines; honours create/start/stop/restart/remove."""

    def __init__(self, start_latency_s: float = 0.0, failure_rate: float = 0.0) -> None:
        self.start_latency_s = start_latency_s
        self.failure_rate = failure_rate
        self._by_node: dict[str, dict[str, str]] = {}  # node -> name -> container id
        self._containers: dict[str, RuntimeContainer] = {}
        self._images: set[str] = set()
        self._changes: dict[str, int] = {}  # node -> changes made to its containers so far
        self.counts = {"create": 0, "start": 0, "stop": 0, "restart": 0, "remove": 0, "failed": 0}

    @property
    def containers(self) -> int:
        return len(self._containers)

    def changes(self, node_uuid: str) -> int:
        """How many times this node's containers changed (a simulated engine changes only when asked)."""
        return self._changes.get(node_uuid, 0)

    def _changed(self, container: RuntimeContainer) -> None:
        node = container.labels.get(LABEL_NODE, "")
        self._changes[node] = self._changes.get(node, 0) + 1

    async def list_node(self, node_uuid: str) -> list[RuntimeContainer]:
        ids = self._by_node.get(node_uuid, {})
        return [self._containers[cid] for cid in ids.values()]

    async def find(self, node_uuid: str, name: str) -> RuntimeContainer | None:
        found = self._by_node.get(node_uuid, {}).get(name)
        return self._containers[found] if found is not None else None

    async def has_image(self, image_ref: str) -> bool:
        return image_ref in self._images

    async def pull(self, image_ref: str, rate: int = 0) -> None:
        self._images.add(image_ref)  # every image "exists": nothing is downloaded

    async def create(self, request: CreateRequest) -> RuntimeContainer:
        node = request.labels.get(LABEL_NODE, "")
        if self.failure_rate > 0 and _unit(node, request.name, str(request.labels)) < self.failure_rate:
            self.counts["failed"] += 1
            raise RuntimeFailure(
                f"simulated failure: the simulated engine refused to create {request.name} "
                f"(failure rate {self.failure_rate:g})"
            )
        names = self._by_node.setdefault(node, {})
        if request.name in names:
            raise NameTaken(f"simulated engine: container name {request.name} is already in use")
        container = RuntimeContainer(
            id=secrets.token_hex(32),
            name=request.name,
            status="created",
            labels=dict(request.labels),
            image_ref=request.spec.image_ref,
        )
        names[request.name] = container.id
        self._containers[container.id] = container
        self._changed(container)
        self.counts["create"] += 1
        return container

    async def inspect(self, container_id: str) -> RuntimeContainer | None:
        return self._containers.get(container_id)

    async def start(self, container_id: str) -> None:
        if self.start_latency_s > 0:
            await asyncio.sleep(self.start_latency_s)
        self._set(container_id, status="running", started_at=now(), exit_code=0)
        self.counts["start"] += 1

    async def stop(self, container_id: str) -> None:
        self._set(container_id, status="exited", exit_code=0)
        self.counts["stop"] += 1

    async def restart(self, container_id: str) -> None:
        await self.start(container_id)
        self.counts["restart"] += 1

    async def replace(self, container_id: str, request: CreateRequest) -> RuntimeContainer:
        await self.remove(container_id)
        return await self.create(request)

    async def settle(self, container_id: str) -> None:
        """A simulated container never crashes on its own."""

    async def remove(self, container_id: str) -> None:
        container = self._containers.pop(container_id, None)
        if container is None:
            return
        names = self._by_node.get(container.labels.get(LABEL_NODE, ""), {})
        names.pop(container.name, None)
        self._changed(container)
        self.counts["remove"] += 1

    async def watch(self, node_uuid: str, notify: Callable[[], None], stop: asyncio.Event) -> None:
        """Simulated containers never die behind the agent's back: nothing to watch."""
        await stop.wait()

    async def open_file(self, container_id: str, path: str, limit: int) -> RuntimeFile:
        raise RuntimeFailure("files are not simulated")

    def _set(self, container_id: str, **changes: object) -> None:
        container = self._containers.get(container_id)
        if container is None:
            raise RuntimeFailure(f"simulated engine: no such container: {container_id}")
        self._containers[container_id] = dataclasses.replace(container, **changes)  # type: ignore[arg-type]
        self._changed(container)
