"""One NATS connection per process, with its JetStream context and typed handles.

A connection that nats-py gives up on (a server error such as an oversized subject closes it for
good) is never left behind as a live but useless process: `lost` is set, and `run_service` (or the
API's lifespan) exits non-zero so that the supervisor starts a fresh process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import nats
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.object_store import ObjectStore
from prometheus_client import Counter

from tingyu.common import metrics, subjects
from tingyu.common.errors import InvalidParameter, PayloadTooLarge
from tingyu.common.models.base import Message
from tingyu.common.settings import PlatformSettings

if TYPE_CHECKING:
    from tingyu.common.bus.stores import Store

log = logging.getLogger(__name__)

M = TypeVar("M", bound=Message)

MAX_SUBJECT = 512  # bytes; far above any subject the platform makes, far below the server's limit
_SUBJECT = re.compile(r"[^\s.*>]+(\.[^\s.*>]+)*")
HEADROOM = 1024  # bytes kept free under max_payload for the protocol's own header lines


class RoundTrips:
    """Counts round trips to the server: a stretch of time in which at least one request awaits
    its answer is one, however many requests overlap in it (so pipelined requests count once)."""

    def __init__(self) -> None:
        self.count = 0
        self._open = 0

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        if self._open == 0:
            self.count += 1
        self._open += 1
        try:
            yield
        finally:
            self._open -= 1


class Bus:
    """A connected client: publish, request, and the handles of stores, objects and consumers."""

    def __init__(
        self, nc: NATS, replicas: int = 1, max_bytes: dict[str, int] | None = None, domain: str = ""
    ) -> None:
        self.nc = nc
        # A JetStream domain reaches the cluster's JetStream through a leaf node as well.
        self.js: JetStreamContext = nc.jetstream(timeout=10.0, domain=domain or None)
        self.api_prefix = f"$JS.{domain}.API" if domain else "$JS.API"  # JetStream's API subjects
        self.replicas = replicas
        self.max_bytes = max_bytes or {}  # per store name, over the declared defaults
        self.lost = asyncio.Event()  # set when nats-py closed the connection on its own
        self.closing = False
        self._stores: dict[tuple[str, type[Any]], Any] = {}
        self._objects: dict[str, ObjectStore] = {}
        # Wrap a request in `with bus.trip():` to count it; the accept path is held to two.
        self.trip = RoundTrips()

    @classmethod
    async def connect(
        cls,
        settings: PlatformSettings,
        name: str,
        *,
        ensure: bool = True,
        attempts: int = 60,
    ) -> Bus:
        """Connect (retrying while the server is not up yet) and, unless `ensure` is off, declare
        the topology."""
        holder: list[Bus] = []

        async def closed() -> None:
            if holder and not holder[0].closing:
                log.critical("%s: the NATS connection closed for good; the process must restart", name)
                holder[0].lost.set()

        options: dict[str, Any] = {
            "servers": settings.nats_servers,
            "name": name,
            "max_reconnect_attempts": -1,
            "reconnect_time_wait": 1,
            "connect_timeout": 2,
            "error_cb": _log_error,
            "disconnected_cb": _log_event(f"{name}: disconnected from NATS", metrics.NATS_DISCONNECTS),
            "reconnected_cb": _log_event(f"{name}: reconnected to NATS", metrics.NATS_RECONNECTS),
            "closed_cb": closed,
        }
        options |= connect_options(settings)
        options["inbox_prefix"] = settings.nats_inbox_prefix
        for attempt in range(attempts):
            try:
                nc = await nats.connect(**options)
                break
            except (OSError, nats.errors.NoServersError, nats.errors.TimeoutError) as exc:
                if attempt == attempts - 1:
                    raise
                log.warning("%s: NATS not reachable yet (%s); retrying", name, exc)
                await asyncio.sleep(min(0.2 * (attempt + 1), 2.0))
        bus = cls(nc, settings.stream_replicas, settings.store_max_bytes, settings.nats_domain)
        holder.append(bus)
        if ensure:
            from tingyu.common.bus.topology import ensure_topology

            await ensure_topology(bus)
        return bus

    @property
    def connected(self) -> bool:
        return self.nc.is_connected and not self.lost.is_set()

    def store(self, spec: subjects.BucketSpec[M]) -> Store[M]:
        """The bucket as a typed store (made once per connection)."""
        from tingyu.common.bus.stores import Store

        # By name and model: a bucket may be read as an older layout of its records (a migration).
        key = (spec.name, spec.model)
        if key not in self._stores:
            self._stores[key] = Store(self, spec)
        found: Store[M] = self._stores[key]
        return found

    async def objects(self, spec: subjects.ObjectStoreSpec) -> ObjectStore:
        """The object store's handle (made once per connection; the topology declared it)."""
        if spec.name not in self._objects:
            self._objects[spec.name] = await self.js.object_store(spec.name)
        return self._objects[spec.name]

    def check(self, subject: str, size: int, headers: dict[str, str] | None = None) -> None:
        """Refuse, before it reaches the server, what would make it close the connection: a subject
        that is too long or malformed, or a message over the server's max payload (headers count)."""
        if len(subject) > MAX_SUBJECT or not _SUBJECT.fullmatch(subject):
            raise InvalidParameter(detail=f"not a valid NATS subject: {subject[:80]!r}")
        header_bytes = sum(len(k) + len(v) + 4 for k, v in (headers or {}).items())
        if size + header_bytes + HEADROOM > self.nc.max_payload:
            raise PayloadTooLarge(
                detail=f"message of {size} bytes is over the bus limit of "
                f"{self.nc.max_payload - HEADROOM - header_bytes} bytes"
            )

    async def publish(self, subject: str, message: Message, *, msg_id: str | None = None) -> int:
        """Publish durably; `msg_id` makes a second publish of the same command a no-op. Returns the seq."""
        data = message.to_bytes()
        headers = {"Nats-Msg-Id": msg_id} if msg_id else None
        self.check(subject, len(data), headers)
        with self.trip():
            ack = await self.js.publish(subject, data, headers=headers)
        return ack.seq

    async def emit(self, subject: str, message: Message, *, reply: str = "") -> None:
        """Fire-and-forget on core NATS (heartbeats, nudges); `reply` names the inbox the receiver
        may answer on."""
        data = message.to_bytes()
        self.check(subject, len(data))
        await self.nc.publish(subject, data, reply=reply)

    async def close(self, timeout: float = 5.0) -> None:
        """Drain (finish in-flight work, flush publishes) and close; give up draining after `timeout`
        (e.g. while NATS is unreachable) so that a stopping service never hangs."""
        self.closing = True
        if self.nc.is_closed:
            return
        try:
            await asyncio.wait_for(self.nc.drain(), timeout)
        except Exception:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.nc.close(), timeout)


def connect_options(settings: PlatformSettings) -> dict[str, Any]:
    """The credential and TLS options of a nats-py connection: the `.creds` file, and a TLS
    context that verifies the server against the configured CA (or the system's CAs)."""
    options: dict[str, Any] = {}
    if settings.creds_file:
        options["user_credentials"] = settings.creds_file
    if settings.ca_file:
        options["tls"] = ssl.create_default_context(cafile=settings.ca_file)
    return options


async def _log_error(exc: Exception) -> None:
    log.warning("NATS: %s", exc)


def _log_event(text: str, counter: Counter) -> Callable[[], Awaitable[None]]:
    async def callback() -> None:
        counter.inc()
        log.warning(text)

    return callback
