"""The NATS adapter every service uses: connect, declare the topology, typed KV access, consumers.

Delivery rules for consumers (`consume`):
- the handler returns: the message is acked;
- it raises `Retry`: the message is nak'ed and comes back after the delay;
- it raises `Reject`: the message is terminated (logged as dead-lettered, never redelivered);
- anything else: logged, nak'ed with a back-off; after `max_deliver` tries JetStream gives up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from typing import Any, TypeVar

import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js import errors as js_errors
from nats.js.api import ObjectInfo
from nats.js.kv import KeyValue
from nats.js.object_store import OBJ_CHUNKS_PRE_TEMPLATE, OBJ_STREAM_TEMPLATE, ObjectStore

from tingyu.common import subjects
from tingyu.common.models.base import Message
from tingyu.common.settings import PlatformSettings

log = logging.getLogger(__name__)

M = TypeVar("M", bound=Message)


class Retry(Exception):
    """Raised by a handler: try this message again after `delay` seconds."""

    def __init__(self, reason: str, delay: float = 1.0) -> None:
        super().__init__(reason)
        self.delay = delay


class Reject(Exception):
    """Raised by a handler: this message can never succeed; dead-letter it."""


_RETENTION = {
    "workqueue": js_api.RetentionPolicy.WORK_QUEUE,
    "limits": js_api.RetentionPolicy.LIMITS,
    "interest": js_api.RetentionPolicy.INTEREST,
}


class Bus:
    """One NATS connection with its JetStream context and cached bucket handles."""

    def __init__(self, nc: NATS, replicas: int = 1) -> None:
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream(timeout=10.0)
        self.replicas = replicas
        self._kv: dict[str, KeyValue] = {}
        self._obj: dict[str, ObjectStore] = {}

    @classmethod
    async def connect(
        cls, settings: PlatformSettings, name: str, *, ensure: bool = True, attempts: int = 60
    ) -> Bus:
        """Connect (retrying while the server is not up yet) and declare the topology."""
        options: dict[str, Any] = {
            "servers": settings.nats_servers,
            "name": name,
            "max_reconnect_attempts": -1,
            "reconnect_time_wait": 1,
            "connect_timeout": 2,
            "error_cb": _log_error,
            "disconnected_cb": _log_event(f"{name}: disconnected from NATS"),
            "reconnected_cb": _log_event(f"{name}: reconnected to NATS"),
        }
        if settings.nats_creds:
            options["user_credentials"] = settings.nats_creds
        if settings.nats_token:
            options["token"] = settings.nats_token
        for attempt in range(attempts):
            try:
                nc = await nats.connect(**options)
                break
            except (OSError, nats.errors.NoServersError, nats.errors.TimeoutError) as exc:
                if attempt == attempts - 1:
                    raise
                log.warning("%s: NATS not reachable yet (%s); retrying", name, exc)
                await asyncio.sleep(min(0.2 * (attempt + 1), 2.0))
        bus = cls(nc, settings.stream_replicas)
        if ensure:
            await bus.ensure_topology()
        return bus

    async def ensure_topology(self) -> None:
        """Create or update every stream, bucket and object store (idempotent, safe from any replica)."""
        for stream in subjects.ALL_STREAMS:
            await self._ensure_stream(stream)
        for bucket in subjects.ALL_BUCKETS:
            await self.kv(bucket)
        for store in subjects.ALL_OBJECT_STORES:
            await self.objects(store)

    async def _ensure_stream(self, spec: subjects.StreamSpec) -> None:
        config = js_api.StreamConfig(
            name=spec.name,
            subjects=spec.subjects,
            retention=_RETENTION[spec.retention],
            max_age=spec.max_age_s or None,
            max_bytes=spec.max_bytes,
            duplicate_window=spec.duplicate_window_s,
            storage=js_api.StorageType.FILE,
            num_replicas=self.replicas,
            description=spec.description,
        )
        try:
            await self.js.add_stream(config)
        except js_errors.APIError:  # exists with another config, or created concurrently
            await self.js.update_stream(config)

    async def kv(self, spec: subjects.BucketSpec) -> KeyValue:
        """The bucket's handle, created on first use."""
        if spec.name not in self._kv:
            self._kv[spec.name] = await _open_or_create(
                lambda: self.js.key_value(spec.name),
                lambda: self.js.create_key_value(
                    bucket=spec.name,
                    history=spec.history,
                    ttl=spec.ttl_s or None,
                    replicas=self.replicas,
                    description=spec.description,
                    direct=True,
                ),
            )
            if not self._kv[spec.name]._direct:
                await self._allow_direct(f"KV_{spec.name}")
                self._kv[spec.name] = await self.js.key_value(spec.name)
        return self._kv[spec.name]

    async def _allow_direct(self, stream: str) -> None:
        """Direct gets answer a key read from any replica without the JetStream API round trip
        (about eight times faster here); buckets made without them are switched on."""
        info = await self.js.stream_info(stream)
        await self.js.update_stream(info.config.evolve(allow_direct=True))

    async def objects(self, spec: subjects.ObjectStoreSpec) -> ObjectStore:
        """The object store's handle, created on first use."""
        if spec.name not in self._obj:
            config = js_api.ObjectStoreConfig(
                bucket=spec.name, ttl=spec.ttl_s or None, replicas=self.replicas, description=spec.description
            )
            self._obj[spec.name] = await _open_or_create(
                lambda: self.js.object_store(spec.name),
                lambda: self.js.create_object_store(bucket=spec.name, config=config),
            )
        return self._obj[spec.name]

    async def publish(self, subject: str, message: Message, *, msg_id: str | None = None) -> int:
        """Publish durably; `msg_id` makes a second publish of the same command a no-op. Returns the seq."""
        headers = {"Nats-Msg-Id": msg_id} if msg_id else None
        ack = await self.js.publish(subject, message.to_bytes(), headers=headers)
        return ack.seq

    async def emit(self, subject: str, message: Message) -> None:
        """Fire-and-forget on core NATS (heartbeats, nudges)."""
        await self.nc.publish(subject, message.to_bytes())

    async def request(self, subject: str, message: Message, reply: type[M], timeout: float = 5.0) -> M:
        """Core-NATS request/reply with a typed answer."""
        answer = await self.nc.request(subject, message.to_bytes(), timeout=timeout)
        return reply.from_bytes(answer.data)

    async def close(self, timeout: float = 5.0) -> None:
        """Drain (finish in-flight work, flush publishes) and close; give up draining after `timeout`
        (e.g. while NATS is unreachable) so that a stopping service never hangs."""
        if self.nc.is_closed:
            return
        try:
            await asyncio.wait_for(self.nc.drain(), timeout)
        except Exception:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.nc.close(), timeout)


H = TypeVar("H")


async def _open_or_create(open_: Callable[[], Awaitable[H]], create: Callable[[], Awaitable[H]]) -> H:
    """Open a bucket, creating it when missing; another replica creating it at the same moment is fine."""
    try:
        return await open_()
    except js_errors.BucketNotFoundError:
        try:
            return await create()
        except js_errors.APIError:
            return await open_()


# --- Typed KV ------------------------------------------------------------------------------------


async def kv_get(kv: KeyValue, key: str, model: type[M]) -> tuple[M | None, int]:
    """The key's value as `model` and its revision; (None, 0) when absent or deleted."""
    try:
        entry = await kv.get(key)
    except js_errors.KeyNotFoundError:
        return None, 0
    if entry.value is None or entry.operation in ("DEL", "PURGE"):
        return None, 0
    return model.from_bytes(entry.value), entry.revision or 0


async def kv_mutate(
    kv: KeyValue,
    key: str,
    model: type[M],
    change: Callable[[M | None], M | None],
    *,
    attempts: int = 50,
) -> M | None:
    """Read-modify-write with compare-and-set; `change` returns None for 'leave as is'.

    `change` may run several times (when another writer got there first), so it must be pure.
    Returns what is stored afterwards.
    """
    for _ in range(attempts):
        current, revision = await kv_get(kv, key, model)
        new = change(current.model_copy(deep=True) if current is not None else None)
        if new is None:
            return current
        try:
            if revision:
                await kv.update(key, new.to_bytes(), last=revision)
            else:
                await kv.create(key, new.to_bytes())
        except (js_errors.KeyWrongLastSequenceError, js_errors.KeyDeletedError):
            continue
        except js_errors.APIError as exc:
            if exc.err_code in (10071, 10164):  # wrong last sequence: someone else wrote first
                continue
            raise
        return new
    raise RuntimeError(f"too much contention on {kv._name}/{key}")


async def kv_values(kv: KeyValue, model: type[M], pattern: str = ">") -> list[M]:
    """Every current value under `pattern`, read in batches by one short-lived pull consumer.

    Under steady writes (a large fleet's heartbeat times) the scan may never run out of pending
    entries: it stops once it has passed the stream's last message at the start and holds at least
    as many keys as the bucket had then. A key written during the scan comes again, newer; a pull
    consumer (unlike the ordered push consumer of `kv.watch`, which restarts itself on a gap) never
    skips a key.
    """
    bucket = kv._name
    stream, prefix = f"KV_{bucket}", f"$KV.{bucket}."
    state = (await kv.status()).stream_info.state
    sub = await kv._js.pull_subscribe(
        prefix + pattern,
        stream=stream,
        config=js_api.ConsumerConfig(
            deliver_policy=js_api.DeliverPolicy.LAST_PER_SUBJECT,
            ack_policy=js_api.AckPolicy.NONE,
            inactive_threshold=60.0,
            mem_storage=True,
            filter_subject=prefix + pattern,
        ),
    )
    out: dict[str, M] = {}
    try:
        while True:
            try:
                msgs = await sub.fetch(1000, timeout=2.0)
            except TimeoutError:
                break  # nothing pending any more
            for msg in msgs:
                key = msg.subject[len(prefix) :]
                if msg.headers and msg.headers.get("KV-Operation") in ("DEL", "PURGE"):
                    out.pop(key, None)
                elif msg.data:
                    try:
                        out[key] = model.from_bytes(msg.data)
                    except ValueError as exc:  # one corrupt record must not hide (or crash on) the rest
                        log.warning(
                            "%s: key %s does not parse as %s; skipped: %s", bucket, key, model.__name__, exc
                        )
            last = msgs[-1].metadata
            if last.num_pending == 0 or (
                last.sequence.stream >= state.last_seq and len(out) >= state.messages
            ):
                break
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    return list(out.values())


async def kv_delete(kv: KeyValue, key: str) -> None:
    """Delete a key; absent keys are fine."""
    with contextlib.suppress(js_errors.KeyNotFoundError):
        await kv.delete(key)


# --- Consumers -----------------------------------------------------------------------------------


Handler = Callable[[M, Msg], Awaitable[None]]


async def consume(
    bus: Bus,
    *,
    stream: subjects.StreamSpec,
    durable: str,
    subject: str,
    model: type[M],
    handler: Callable[[M, Msg], Awaitable[None]],
    key: Callable[[M], Hashable] | None = None,
    batch: int = 64,
    ack_wait: float = 60.0,
    max_deliver: int = 20,
    stop: asyncio.Event | None = None,
) -> None:
    """Pull messages from a durable consumer shared by all replicas, until `stop` is set.

    Messages of one fetch are handled concurrently, except those with the same `key`
    (e.g. a deployment name), which run in stream order.
    """
    stop = stop or asyncio.Event()
    config = js_api.ConsumerConfig(
        ack_wait=ack_wait,
        max_deliver=max_deliver,
        max_ack_pending=max(batch * 4, 256),
        filter_subject=subject,
    )
    # Subscribing can fail while NATS restarts or another service is still creating the stream:
    # keep trying rather than leave the messages unserved.
    while True:
        try:
            sub = await bus.js.pull_subscribe(subject, durable=durable, stream=stream.name, config=config)
            break
        except Exception:
            log.exception("%s: cannot subscribe yet; trying again", durable)
            if stop.is_set():
                return
            await asyncio.sleep(1.0)

    async def handle_one(msg: Msg) -> None:
        try:
            item = model.from_bytes(msg.data)
        except ValueError as exc:
            log.error("%s: undecodable message on %s dead-lettered: %s", durable, msg.subject, exc)
            await msg.term()
            return
        try:
            await handler(item, msg)
        except Retry as exc:
            log.debug("%s: retry %s in %.1fs: %s", durable, msg.subject, exc.delay, exc)
            await msg.nak(delay=exc.delay)
        except Reject as exc:
            log.error("%s: dead-lettered %s: %s", durable, msg.subject, exc)
            await msg.term()
        except Exception:
            deliveries = msg.metadata.num_delivered or 1
            log.exception("%s: handler failed on %s (delivery %d)", durable, msg.subject, deliveries)
            await msg.nak(delay=min(0.5 * 2**deliveries, 30.0))
        else:
            await msg.ack()

    async def handle_in_order(msgs: list[Msg]) -> None:
        for msg in msgs:
            await handle_one(msg)

    try:
        while not stop.is_set():
            msgs = await _fetch(sub, batch, durable)
            groups: dict[Hashable, list[Msg]] = defaultdict(list)
            for index, msg in enumerate(msgs):
                group = index if key is None else _key_of(msg, model, key, index)
                groups[group].append(msg)
            await asyncio.gather(*(handle_in_order(group) for group in groups.values()))
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


async def _fetch(sub: JetStreamContext.PullSubscription, batch: int, durable: str) -> list[Msg]:
    """The next messages, or none after a transient failure (logged, backed off)."""
    try:
        return await sub.fetch(batch, timeout=1.0)
    except TimeoutError:  # nats.errors.TimeoutError or, from fetch, a bare asyncio one
        return []
    except (nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError):
        await asyncio.sleep(0.5)
    except js_errors.APIError as exc:
        log.warning("%s: fetch failed: %s", durable, exc)
        await asyncio.sleep(0.5)
    except Exception:  # a consumer must never die quietly: log, back off, go on
        log.exception("%s: fetch failed unexpectedly", durable)
        await asyncio.sleep(1.0)
    return []


def _key_of(msg: Msg, model: type[M], key: Callable[[M], Hashable], fallback: int) -> Hashable:
    try:
        return key(model.from_bytes(msg.data))
    except ValueError:
        return fallback


async def fetch_batches(
    bus: Bus,
    *,
    stream: subjects.StreamSpec,
    durable: str,
    subject: str,
    batch: int,
    ack_wait: float = 60.0,
    max_deliver: int = -1,
) -> JetStreamContext.PullSubscription:
    """A pull subscription for consumers that take whole batches (metering)."""
    return await bus.js.pull_subscribe(
        subject,
        durable=durable,
        stream=stream.name,
        config=js_api.ConsumerConfig(
            ack_wait=ack_wait,
            max_deliver=max_deliver,
            max_ack_pending=max(batch * 4, 1024),
            filter_subject=subject,
        ),
    )


async def _log_error(exc: Exception) -> None:
    log.warning("NATS: %s", exc)


def _log_event(text: str) -> Callable[[], Awaitable[None]]:
    async def callback() -> None:
        log.warning(text)

    return callback


# --- Object stores -------------------------------------------------------------------------------


async def object_chunks(bus: Bus, spec: subjects.ObjectStoreSpec, info: ObjectInfo) -> AsyncIterator[bytes]:
    """The chunks of one stored object, one stream read at a time, so a reader never holds it whole.

    (`ObjectStore.get` gathers the whole object in memory unless given a blocking file to write to.)
    """
    stream = OBJ_STREAM_TEMPLATE.format(bucket=spec.name)
    chunk_subject = OBJ_CHUNKS_PRE_TEMPLATE.format(bucket=spec.name, obj=info.nuid)
    seq = 1
    for _ in range(info.chunks or 0):
        msg = await bus.js.get_msg(stream, seq=seq, subject=chunk_subject, next=True)
        yield msg.data or b""
        seq = (msg.seq or seq) + 1
