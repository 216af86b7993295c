"""Metering samples of this machine: NIC bytes, and per container CPU, memory and traffic.

Every `sample_s` the sampler reads cumulative counters (NIC bytes from the kernel, container
CPU time, memory and own-namespace traffic from Docker) and turns the change since the last
reading into one sample per container plus one for the machine (`deploymentname == ""`).

Traffic attribution: a container with its own network namespace is credited with its own
interfaces' bytes. Host-network containers share the machine's NICs and cannot be told apart,
so the machine's counted NIC bytes, minus what own-namespace containers moved, are split evenly
among the host-network containers running at that reading (all of it when there is one).

The sampler runs from the agent's start, before its first connection to NATS: a machine rebooted
during an outage is metered too. Several readings go out as one batch (`TINGYU_AGENT_SAMPLE_READINGS`,
bounded by `MAX_BATCH_BYTES`): metering's cost is mostly per message, not per sample. A batch is
sealed once it is full and never changes after, so publishing it again (same message id) is
deduplicated by JetStream. Batches go to `TY_SAMPLES` with the batch id as message id; until
NATS can take them they wait in a bounded buffer (oldest dropped first when it is full, counted and
logged) and keep their ids and reading times, so metering stores each once and at its own time.
While the platform's desired state cannot be read, images and versions are named from the one the
agent keeps on disk (`autonomy.DesiredMemory`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from tingyu.agent.autonomy import DesiredMemory
from tingyu.common import metrics, subjects
from tingyu.common.bus import Bus
from tingyu.common.models.containers import NodeDesired
from tingyu.common.models.metering import Sample, SampleBatch
from tingyu.common.service import STOP_GRACE_S, wait_or_stop

log = logging.getLogger(__name__)

LABEL_NODE = "tingyu.node"
SYS_NET = Path("/sys/class/net")
# A published batch stays well under NATS's 1 MiB payload limit whatever the names in it.
MAX_BATCH_BYTES = 256 * 1024


class SamplerSettings(BaseSettings):
    """How often the agent samples, which NICs count and how much it keeps while NATS is away."""

    model_config = SettingsConfigDict(env_prefix="TINGYU_AGENT_", extra="ignore")

    sample_s: float = Field(default=10.0, ge=0.1, le=3600)
    # Readings per published batch (one publish a minute at 10 s).
    sample_readings: int = Field(default=6, ge=1, le=360)
    count_nics: str = ""  # comma-separated NIC names; empty: every real NIC (backed by a device)
    # Batches kept while NATS is unreachable (a day of 6 readings at 10 s).
    sample_buffer: int = Field(default=1440, ge=1, le=1_000_000)
    publish_timeout_s: float = Field(default=5.0, gt=0, le=600)
    docker_host: str = ""  # empty: the environment's DOCKER_HOST or the local socket
    docker_timeout_s: float = Field(default=30.0, gt=0, le=3600)


@dataclass
class ContainerReading:
    """Cumulative counters of one running container."""

    name: str
    image_ref: str
    host_network: bool
    cpu_ns: int
    memory_mib: float
    tx_bytes: int
    rx_bytes: int


@dataclass
class Reading:
    """Every counter of the machine at one moment."""

    at: float
    tx_bytes: int
    rx_bytes: int
    containers: dict[str, ContainerReading] = field(default_factory=dict)


def counted_nics(setting: str) -> list[str]:
    """The configured NICs, or every interface backed by a device (physical or virtio)."""
    if setting.strip():
        return [n.strip() for n in setting.split(",") if n.strip()]
    return sorted(n.name for n in SYS_NET.iterdir() if (n / "device").exists()) if SYS_NET.exists() else []


def nic_bytes(nics: list[str]) -> tuple[int, int]:
    """(tx, rx) bytes since boot over `nics`."""
    counters = psutil.net_io_counters(pernic=True)
    tx = sum(counters[n].bytes_sent for n in nics if n in counters)
    rx = sum(counters[n].bytes_recv for n in nics if n in counters)
    return tx, rx


def container_reading(container: Any) -> ContainerReading | None:
    """One container's counters from a one-shot stats call (no second, blocking read)."""
    try:
        stats = container.stats(stream=False, one_shot=True)
    except Exception as exc:  # the container may stop between list and stats
        log.debug("stats of %s failed: %s", container.name, exc)
        return None
    cpu = stats.get("cpu_stats", {}).get("cpu_usage", {}).get("total_usage")
    if cpu is None:
        return None
    memory = stats.get("memory_stats", {})
    detail = memory.get("stats", {})
    # What the kernel could reclaim at once is not use: the same rule `docker stats` applies.
    cache = detail.get("inactive_file", detail.get("total_inactive_file", 0))
    used = max(memory.get("usage", 0) - cache, 0)
    networks = stats.get("networks") or {}
    attrs = container.attrs
    return ContainerReading(
        name=container.name,
        image_ref=attrs.get("Config", {}).get("Image", ""),
        host_network=attrs.get("HostConfig", {}).get("NetworkMode") == "host",
        cpu_ns=int(cpu),
        memory_mib=used / 1024**2,
        tx_bytes=sum(n.get("tx_bytes", 0) for n in networks.values()),
        rx_bytes=sum(n.get("rx_bytes", 0) for n in networks.values()),
    )


def read_counters(client: Any, node_uuid: str, nics: list[str]) -> Reading:
    """Blocking: the machine's NIC counters and those of its running containers."""
    tx, rx = nic_bytes(nics)
    reading = Reading(at=time.time(), tx_bytes=tx, rx_bytes=rx)
    for container in client.containers.list(filters={"label": f"{LABEL_NODE}={node_uuid}"}):
        one = container_reading(container)
        if one is not None:
            reading.containers[one.name] = one
    return reading


def _delta(now: int, before: int) -> int:
    """Counter change; a counter that went back (reset, new namespace) counts from zero."""
    return now - before if now >= before else now


def split_image_ref(ref: str) -> tuple[str, str]:
    """(name, version) of `host:port/name:version`; the tag is after the last colon of the last part."""
    name, sep, tag = ref.rpartition(":")
    if not sep or "/" in tag:
        return ref, "latest"
    return name, tag


def to_samples(
    node_uuid: str, before: Reading, now: Reading, images: dict[str, tuple[str, str]]
) -> list[Sample]:
    """The samples of the interval (before, now]; containers seen only now wait for the next one."""
    interval = now.at - before.at
    if interval <= 0:
        return []
    tick = int(now.at * 1000)
    node_tx, node_rx = _delta(now.tx_bytes, before.tx_bytes), _delta(now.rx_bytes, before.rx_bytes)
    both = [(c, before.containers[name]) for name, c in now.containers.items() if name in before.containers]
    own = [(c, p) for c, p in both if not c.host_network]
    shared = [c for c, _ in both if c.host_network]
    own_tx = sum(_delta(c.tx_bytes, p.tx_bytes) for c, p in own)
    own_rx = sum(_delta(c.rx_bytes, p.rx_bytes) for c, p in own)
    share_tx = max(node_tx - own_tx, 0) // len(shared) if shared else 0
    share_rx = max(node_rx - own_rx, 0) // len(shared) if shared else 0
    samples = [
        Sample(
            sample_id=f"{node_uuid}/{tick}/-",
            node_uuid=node_uuid,
            ts=now.at,
            interval_s=interval,
            tx_bytes=node_tx,
            rx_bytes=node_rx,
        )
    ]
    for current, previous in both:
        image, version = images.get(current.name) or split_image_ref(current.image_ref)
        if current.host_network:
            tx, rx = share_tx, share_rx
        else:
            tx, rx = _delta(current.tx_bytes, previous.tx_bytes), _delta(current.rx_bytes, previous.rx_bytes)
        samples.append(
            Sample(
                sample_id=f"{node_uuid}/{tick}/{current.name}",
                node_uuid=node_uuid,
                deploymentname=current.name,
                image=image,
                version=version,
                ts=now.at,
                interval_s=interval,
                tx_bytes=tx,
                rx_bytes=rx,
                cpu_cores=max(current.cpu_ns - previous.cpu_ns, 0) / 1e9 / interval,
                memory_mib=current.memory_mib,
            )
        )
    return samples


def named_images(desired: NodeDesired | None) -> dict[str, tuple[str, str]]:
    """deploymentname -> (image, version) as the platform named them in `desired`."""
    if desired is None:
        return {}
    return {name: (c.spec.image, c.spec.imageversion) for name, c in desired.containers.items()}


def connected(bus: Bus | None) -> bool:
    """Whether `bus` can carry a request now (not yet made, or reconnecting: no)."""
    return bus is not None and bus.nc.is_connected


class Outbox:
    """Batches not yet accepted by JetStream, oldest first, at most `limit` of them; readings are
    gathered `readings` to a batch (fewer when they would pass `MAX_BATCH_BYTES`)."""

    def __init__(self, limit: int, readings: int = 1) -> None:
        self.batches: deque[SampleBatch] = deque()
        self.limit = max(limit, 1)
        self.readings = max(readings, 1)
        self.open: list[SampleBatch] = []  # readings of the batch being gathered
        self.open_bytes = 0
        self.dropped = 0

    def add_reading(self, batch: SampleBatch) -> None:
        """One reading's samples, into the batch being gathered; a full batch is sealed."""
        size = len(batch.to_bytes())
        if self.open and self.open_bytes + size > MAX_BATCH_BYTES:
            self.seal()
        self.open.append(batch)
        self.open_bytes += size
        if len(self.open) >= self.readings:
            self.seal()

    def seal(self) -> None:
        """The readings gathered so far, as one batch named by the first, queued to publish."""
        if not self.open:
            return
        first = self.open[0]
        samples = [sample for reading in self.open for sample in reading.samples]
        self.open, self.open_bytes = [], 0
        self.add(SampleBatch(batch_id=first.batch_id, node_uuid=first.node_uuid, samples=samples))

    def add(self, batch: SampleBatch) -> None:
        if len(self.batches) >= self.limit:
            self.batches.popleft()
            self.dropped += 1
            metrics.AGENT_SAMPLES_DROPPED.inc()
            log.warning(
                "sample buffer full (%d batches): oldest batch dropped (%d so far)", self.limit, self.dropped
            )
        self.batches.append(batch)
        metrics.AGENT_SAMPLES_BUFFERED.set(len(self.batches))

    async def flush(self, bus: Bus | None, timeout: float) -> None:
        """Publish in order until one fails; a batch published twice is stored once (ids)."""
        while self.batches:
            if bus is None or not connected(bus):
                log.info("samples kept (%d batches) until NATS is reachable", len(self.batches))
                return
            batch = self.batches[0]
            try:
                await asyncio.wait_for(
                    bus.publish(subjects.samples(batch.node_uuid), batch, msg_id=batch.batch_id), timeout
                )
            except Exception as exc:
                log.info("samples kept (%d batches) while NATS is unreachable: %s", len(self.batches), exc)
                return
            self.batches.popleft()
            metrics.AGENT_SAMPLES_BUFFERED.set(len(self.batches))


class Sampler:
    """The agent's sampler, running from `start` to `close`; it publishes once `publish_on` gave it
    a bus, and buffers meanwhile."""

    def __init__(
        self, node_uuid: str, settings: SamplerSettings | None = None, memory: DesiredMemory | None = None
    ) -> None:
        self.node_uuid = node_uuid
        self.settings = settings or SamplerSettings()
        self.memory = memory or DesiredMemory()
        self.outbox = Outbox(self.settings.sample_buffer, self.settings.sample_readings)
        self.bus: Bus | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Sample every `sample_s` from now on (NATS or not)."""
        self._task = asyncio.create_task(self._supervised())

    def publish_on(self, bus: Bus) -> None:
        """The agent's connection: buffered batches go out from the next reading on."""
        self.bus = bus

    async def close(self) -> None:
        """Stop sampling; what is buffered is published once more if NATS is there. A Docker call
        that hangs (a busy engine) holds the agent's stop for `STOP_GRACE_S` at most."""
        self._stop.set()
        if self._task is None or self._task.done():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._task), STOP_GRACE_S)
        if not self._task.done():
            log.warning("sampler did not stop within %.0fs; cancelled", STOP_GRACE_S)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _supervised(self) -> None:
        """`run` until closed; a failure is logged and the sampler starts again, its buffer kept."""
        while not self._stop.is_set():
            try:
                await self.run(self._stop)
            except Exception:
                log.exception("sampler failed; starting again")
                await wait_or_stop(self._stop, self.settings.sample_s)

    async def images(self) -> dict[str, tuple[str, str]]:
        """deploymentname -> (image, version), from the desired state the agent last read (kept in
        memory and on disk): no read of `ty_desired` per sample."""
        return named_images(self.memory.desired)

    async def run(self, stop: asyncio.Event) -> None:
        """Sample every `sample_s` until `stop`, then publish what is left if NATS is there."""
        import docker

        settings = self.settings
        client = (
            docker.DockerClient(base_url=settings.docker_host, timeout=int(settings.docker_timeout_s))
            if settings.docker_host
            else docker.from_env(timeout=int(settings.docker_timeout_s))
        )
        nics = counted_nics(settings.count_nics)
        log.info("sampling every %.0fs; counted NICs: %s", settings.sample_s, ", ".join(nics) or "none")
        before: Reading | None = None
        try:
            while True:
                started = time.monotonic()
                try:
                    now = await asyncio.to_thread(read_counters, client, self.node_uuid, nics)
                except Exception as exc:
                    log.warning("sampling failed: %s", exc)
                else:
                    if before is not None:
                        samples = to_samples(self.node_uuid, before, now, await self.images())
                        batch_id = f"{self.node_uuid}-{int(now.at * 1000)}"
                        self.outbox.add_reading(
                            SampleBatch(batch_id=batch_id, node_uuid=self.node_uuid, samples=samples)
                        )
                    before = now
                await self.outbox.flush(self.bus, settings.publish_timeout_s)
                if await wait_or_stop(stop, max(settings.sample_s - (time.monotonic() - started), 0.0)):
                    break
            self.outbox.seal()  # what was gathered goes out now, not with the next start
            await self.outbox.flush(self.bus, settings.publish_timeout_s)
        finally:
            with contextlib.suppress(Exception):
                client.close()
