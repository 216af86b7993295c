"""Typed key/value stores: `bus.store(subjects.NODES)` is a `Store[NodeRecord]`.

Reads use direct gets (answered by any replica of the bucket's stream); listing reads with a
short-lived pull consumer, which never skips a key under concurrent writes. Only nats-py's public
API is used: where its `KeyValue` has no public way, this module speaks the JetStream API itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from nats.aio.msg import Msg
from nats.js import api as js_api
from nats.js import errors as js_errors
from nats.js.kv import KeyValue

from tingyu.common import metrics, subjects
from tingyu.common.bus.connection import Bus
from tingyu.common.bus.consumers import fetch_listed
from tingyu.common.errors import Conflict, InvalidParameter, PayloadTooLarge, Unavailable
from tingyu.common.models.base import Message

log = logging.getLogger(__name__)

M = TypeVar("M", bound=Message)

_WRONG_LAST_SEQUENCE = (10071, 10164)
MAX_KEY = 256  # bytes; every key the platform makes is far shorter
_KEY = re.compile(r"[-/_=.a-zA-Z0-9]+")  # what a JetStream KV key may hold
_PATTERN = re.compile(r"[-/_=a-zA-Z0-9]+(\.[-/_=a-zA-Z0-9]+)*\.(\*|>)")  # keys ending in a wildcard
_DELETED = ("DEL", "PURGE")
_CAS_HEADER = {"Nats-Expected-Last-Subject-Sequence": "18446744073709551615"}  # the longest one


@dataclass(frozen=True, slots=True)
class Change(Generic[M]):
    """One key's latest value as a watch delivers it, with the stream sequence that wrote it;
    `value` is None when the key was deleted or purged, or its value does not parse (logged)."""

    key: str
    value: M | None
    seq: int
    data: bytes = b""  # the stored bytes, undecoded, when the watch was asked for them (`decode=False`)


class Store(Generic[M]):
    """One bucket, read and written as its model; a value that does not parse reads as absent
    (logged), so one corrupt record never takes a reader down."""

    def __init__(self, bus: Bus, spec: subjects.BucketSpec[M]) -> None:
        self.bus = bus
        self.spec = spec
        self.model: type[M] = spec.model
        self._kv: KeyValue | None = None
        self._timers: dict[str, Any] = {}

    @contextlib.contextmanager
    def _timed(self, op: str) -> Iterator[None]:
        """Times what it wraps, failures included, in `tingyu_store_seconds{bucket, op}`."""
        timer = self._timers.get(op)
        if timer is None:
            timer = self._timers[op] = metrics.STORE_SECONDS.labels(self.spec.name, op)
        start = time.perf_counter()
        try:
            yield
        finally:
            timer.observe(time.perf_counter() - start)

    @contextlib.contextmanager
    def _request(self, op: str) -> Iterator[None]:
        """One request to the server: timed, and counted as a round trip."""
        with self._timed(op), self.bus.trip():
            yield

    async def _handle(self) -> KeyValue:
        if self._kv is None:
            self._kv = await self.bus.js.key_value(self.spec.name)
        return self._kv

    # --- reads ---------------------------------------------------------------------------------

    async def entry(self, key: str) -> tuple[M | None, int]:
        """The key's value and its revision; (None, 0) when absent, deleted or unreadable (a key
        that no write can have made, such as one of another form, reads as absent)."""
        msg = await self._last(key)
        data = _held_value(msg)
        if msg is None or data is None:
            return None, 0
        return self._decode(key, data), msg.seq or 0

    async def latest(self, key: str) -> tuple[M | None, int]:
        """The key's value (None when absent, deleted or unreadable) and the sequence of its last
        write, a delete included (0 when it has none): `entry` and `key_seq` in one direct read."""
        msg = await self._last(key)
        if msg is None:
            return None, 0
        data = _held_value(msg)
        return (self._decode(key, data) if data is not None else None), msg.seq or 0

    async def latest_held(self, key: str) -> tuple[bytes | None, int]:
        """`latest` undecoded: the key's stored bytes (None when absent or deleted) and the
        sequence of its last write, a delete included (0 when it has none). One direct read."""
        msg = await self._last(key)
        return (_held_value(msg), msg.seq or 0) if msg is not None else (None, 0)

    async def get(self, key: str) -> M | None:
        """The key's value, or None."""
        value, _ = await self.entry(key)
        return value

    async def key_seq(self, key: str) -> int:
        """The sequence of `key`'s last write, a delete included (0 when it has none): a reader
        following the bucket reflects that key once it has applied this far. One direct read."""
        msg = await self._last(key)
        return (msg.seq or 0) if msg is not None else 0

    async def _last(self, key: str) -> js_api.RawStreamMsg | None:
        """The key's last message, a delete or purge marker included; None when it has none (or
        `key` is of a form no write can have made)."""
        return await self._direct_last(key) if is_key(key) else None

    async def _direct_last(self, key_or_pattern: str) -> js_api.RawStreamMsg | None:
        """The last message under a checked key or pattern, by one direct get (None: there is none)."""
        try:
            with self._request("get"):
                return await self.bus.js.get_msg(
                    self.spec.stream, subject=self.spec.prefix + key_or_pattern, direct=True
                )
        except js_errors.NotFoundError:
            return None

    async def newest_seq(self, pattern: str) -> int:
        """The sequence of the newest write (a delete or purge included) of any key under
        `pattern` (one machine's keys, `<uuid>.*`): one direct get, answered by the stream itself,
        not by JetStream's API queue, and spelled so that a credential can allow one machine's
        pattern alone. 0 when no key under it was ever written."""
        _check_pattern(pattern)
        msg = await self._direct_last(pattern)
        return (msg.seq or 0) if msg is not None else 0

    async def last_of_each(
        self, pattern: str, *, timeout: float = 5.0
    ) -> tuple[dict[str, tuple[M, int]], int]:
        """Every current key under a narrow `pattern` (one machine's keys) with its value and
        revision, and the newest sequence among them (delete and purge markers included, as
        `newest_seq` counts them): one batched direct get, answered by the stream itself in one
        cut of its writes, with no consumer made and nothing queued on JetStream's API. Up to
        1 024 keys and markers (the server's bound): `Conflict` past it, `Unavailable` when the
        server does not know the request (before nats-server 2.11) or does not answer in time."""
        _check_pattern(pattern)
        nc = self.bus.nc
        out: dict[str, tuple[M, int]] = {}
        newest = 0
        ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        # Each message is taken as it arrives (one callback per message; `next_msg` would make two
        # tasks and a timer for each, a large share of a deployer serving a fleet's listings).
        async def take(msg: Msg) -> None:
            nonlocal newest
            if ended.done():
                return
            try:
                item = self._batch_item(pattern, msg)
            except Exception as exc:  # Conflict, Unavailable: the answer, at once
                ended.set_exception(exc)
                return
            if item is None:
                ended.set_result(None)
                return
            key, value, seq = item
            newest = max(newest, seq)
            if value is not None:
                out[key] = (value, seq)

        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox, cb=take)
        try:
            with self._request("snapshot"):
                request = {"multi_last": [self.spec.prefix + pattern]}
                await nc.publish(
                    f"{self.bus.api_prefix}.DIRECT.GET.{self.spec.stream}",
                    json.dumps(request).encode(),
                    reply=inbox,
                )
                async with asyncio.timeout(timeout):
                    await ended
        except TimeoutError as exc:
            raise Unavailable(detail=f"{self.spec.name} did not list {pattern} in {timeout:.0f} s") from exc
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        return out, newest

    def _batch_item(self, pattern: str, msg: Msg) -> tuple[str, M | None, int] | None:
        """One message of a batched direct get: its key, value (None for a marker or a value that
        does not parse) and sequence; None at the end of the batch (or when nothing matched)."""
        headers = msg.headers or {}
        status = headers.get("Status")
        if status in {"204", "404"}:
            return None
        if status == "413":
            raise Conflict(detail=f"over 1 024 keys and markers under {self.spec.name}/{pattern}")
        if status:
            raise Unavailable(detail=f"{self.spec.name} did not list {pattern}: status {status}")
        key = headers.get("Nats-Subject", "")[len(self.spec.prefix) :]
        seq = int(headers.get("Nats-Sequence", "0"))
        if headers.get("KV-Operation") in _DELETED or not msg.data:
            return key, None, seq
        return key, self._decode(key, msg.data), seq

    async def last_seq(self) -> int:
        """The sequence of the bucket's stream's last message: what a reader following the bucket
        has seen every write of once it has applied this far."""
        with self._request("info"):
            info = await self.bus.js.stream_info(self.spec.stream)
        return info.state.last_seq

    async def values(self, pattern: str = ">") -> list[M]:
        """Every current value under `pattern` (keys as their values' own fields name them)."""
        return list((await self.items(pattern)).values())

    async def items(self, pattern: str = ">") -> dict[str, M]:
        """Every current key and value under `pattern`, read in batches by one pull consumer.

        Under steady writes (a large fleet's heartbeat times) the scan may never run out of pending
        entries: it stops once it has passed the stream's last message at the start and holds at
        least as many keys as the bucket had then. A key written during the scan comes again, newer.
        """
        with self._timed("list"):
            return await self._items(pattern)

    async def _items(self, pattern: str) -> dict[str, M]:
        prefix = self.spec.prefix
        state = (await self.bus.js.stream_info(self.spec.stream)).state
        if not state.messages:  # an empty bucket: no consumer to make, no pull to wait out
            return {}
        sub = await self.bus.js.pull_subscribe(
            prefix + pattern,
            stream=self.spec.stream,
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
                    msgs = await fetch_listed(sub, 1000, timeout=2.0)
                except TimeoutError:
                    break  # nothing pending any more
                for msg in msgs:
                    key = msg.subject[len(prefix) :]
                    if msg.headers and msg.headers.get("KV-Operation") in _DELETED:
                        out.pop(key, None)
                    elif msg.data and (value := self._decode(key, msg.data)) is not None:
                        out[key] = value
                last = msgs[-1].metadata
                if last.num_pending == 0 or (
                    last.sequence.stream >= state.last_seq and len(out) >= state.messages
                ):
                    break
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        return out

    async def entries(self, pattern: str, *, consumer: str = "") -> dict[str, tuple[M, int]]:
        """Every current key under `pattern` with its value and revision, for a narrow pattern
        (one machine's keys): the consumer's own count says when it is done, so a pattern with no
        key answers at once. A `consumer` name makes the listing one that a credential allowed only
        that consumer and its filter (spelled in the API subject) can make; without one, a fresh
        name is used. The consumer is removed after the listing."""
        with self._timed("list"):
            return await self._entries(pattern, consumer)

    async def _entries(self, pattern: str, consumer: str) -> dict[str, tuple[M, int]]:
        prefix = self.spec.prefix
        config = js_api.ConsumerConfig(
            name=consumer,
            deliver_policy=js_api.DeliverPolicy.LAST_PER_SUBJECT,
            ack_policy=js_api.AckPolicy.NONE,
            inactive_threshold=60.0,
            mem_storage=True,
            filter_subject=prefix + pattern,
        )
        if not consumer:
            consumer = config.name = f"list_{secrets.token_hex(8)}"
        info = await self._listing_consumer(config)
        out: dict[str, tuple[M, int]] = {}
        sub = await self.bus.js.pull_subscribe_bind(stream=self.spec.stream, name=consumer)
        try:
            pending = info.num_pending or 0
            while pending > 0:
                msgs = await fetch_listed(sub, min(pending, 1000), timeout=5.0)
                for msg in msgs:
                    key = msg.subject[len(prefix) :]
                    deleted = msg.headers and msg.headers.get("KV-Operation") in _DELETED
                    if not deleted and msg.data and (value := self._decode(key, msg.data)) is not None:
                        out[key] = (value, msg.metadata.sequence.stream)
                pending = msgs[-1].metadata.num_pending
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
            with contextlib.suppress(Exception):
                await self.bus.js.delete_consumer(self.spec.stream, consumer)
        return out

    async def _listing_consumer(self, config: js_api.ConsumerConfig) -> js_api.ConsumerInfo:
        """A fresh consumer for one listing, in one JetStream API request when nothing is in the
        way. One of the same name that a crash left behind is answered by the server as it is:
        when it had delivered anything (or has another configuration) it is removed and made anew."""
        stream = self.spec.stream
        try:
            info = await self.bus.js.add_consumer(stream, config)
            if not (info.delivered and info.delivered.consumer_seq):
                return info
        except js_errors.BadRequestError:
            pass  # left behind with another configuration
        with contextlib.suppress(js_errors.NotFoundError):
            await self.bus.js.delete_consumer(stream, config.name or "")
        return await self.bus.js.add_consumer(stream, config)

    async def watch(
        self, pattern: str = ">", wanted: Callable[[str], bool] | None = None
    ) -> AsyncIterator[tuple[str, M | None]]:
        """Every change under `pattern` from now on, as (key, value or None when deleted); a
        change whose key `wanted` refuses is skipped before its value is decoded."""
        async for change in self.follow(pattern, wanted):
            if change is not None:
                yield change.key, change.value

    async def follow(
        self, pattern: str = ">", wanted: Callable[[str], bool] | None = None, *, decode: bool = True
    ) -> AsyncIterator[Change[M] | None]:
        """The latest value of every key under `pattern` (no history), then every change, each with
        its stream sequence; one None once those latest values are all in (at once for no keys).
        Deleted keys come as changes to None, so a reader that starts afresh holds no stale key.
        With `decode` off a change carries the stored bytes (`data`) and no value: for a reader
        that decodes only what it reads (`parse`)."""
        watcher = await (await self._handle()).watch(pattern, include_history=False)
        try:
            while True:
                try:
                    entry = await watcher.updates(timeout=1.0)
                except TimeoutError:
                    continue
                if entry is None:
                    yield None  # the initial 'no more history' marker
                elif wanted is not None and not wanted(entry.key):
                    continue
                elif entry.operation in _DELETED or not entry.value:
                    yield Change(entry.key, None, entry.revision or 0)
                elif not decode:
                    yield Change(entry.key, None, entry.revision or 0, entry.value)
                else:
                    yield Change(entry.key, self._decode(entry.key, entry.value), entry.revision or 0)
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()

    # --- writes --------------------------------------------------------------------------------

    async def put(self, key: str, value: M) -> int:
        """Store unconditionally; returns the new revision."""
        self._check_key(key)
        kv = await self._handle()
        with self._request("put"):
            return await kv.put(key, self._encode(key, value))

    async def put_encoded(self, key: str, data: bytes) -> int:
        """Store a value already encoded (`to_bytes` of this bucket's model) unconditionally: for a
        writer that keeps its values as bytes. Returns the new revision."""
        self._check_key(key)
        self._check_size(key, data)
        kv = await self._handle()
        with self._request("put"):
            return await kv.put(key, data)

    async def create(self, key: str, value: M) -> int:
        """Store only when the key is absent (or deleted); `Conflict` when it exists."""
        self._check_key(key)
        kv = await self._handle()
        try:
            with self._request("create"):
                return await kv.create(key, self._encode(key, value))
        except js_errors.KeyWrongLastSequenceError as exc:
            raise Conflict(detail=f"{self.spec.name}/{key} exists") from exc

    async def update(self, key: str, value: M, expected_revision: int) -> int:
        """Store only when the key is still at `expected_revision`; `Conflict` otherwise."""
        self._check_key(key)
        kv = await self._handle()
        try:
            with self._request("update"):
                return await kv.update(key, self._encode(key, value), last=expected_revision)
        except js_errors.KeyWrongLastSequenceError as exc:
            raise Conflict(detail=f"{self.spec.name}/{key} changed") from exc
        except js_errors.APIError as exc:
            if exc.err_code in _WRONG_LAST_SEQUENCE:
                raise Conflict(detail=f"{self.spec.name}/{key} changed") from exc
            raise

    async def mutate(
        self, key: str, change: Callable[[M | None], M | None], *, attempts: int = 50
    ) -> M | None:
        """Read-modify-write with compare-and-set; `change` returns None for 'leave as is'.

        `change` may run several times (when another writer got there first), so it must be pure.
        Returns what is stored afterwards.
        """
        value, _ = await self.mutate_entry(key, change, attempts=attempts)
        return value

    async def mutate_entry(
        self,
        key: str,
        change: Callable[[M | None], M | None],
        *,
        attempts: int = 50,
        known: tuple[M | None, int] | None = None,
    ) -> tuple[M | None, int]:
        """`mutate`, also returning the revision written (or the one read, when nothing changed).

        `known`: the value and revision this process last wrote there, tried first without a read;
        if the key moved on since, the compare-and-set fails and the key is read as usual."""
        for _ in range(attempts):
            if known is not None:
                (current, revision), known = known, None
            else:
                current, revision = await self.entry(key)
            new = change(current.model_copy(deep=True) if current is not None else None)
            if new is None:
                return current, revision
            try:
                if revision:
                    written = await self.update(key, new, revision)
                else:
                    written = await self.create(key, new)
            except (Conflict, js_errors.KeyDeletedError):
                continue
            return new, written
        raise Conflict(detail=f"too much contention on {self.spec.name}/{key}")

    async def delete(self, key: str) -> None:
        """Delete a key; an absent key is fine."""
        self._check_key(key)
        kv = await self._handle()
        with contextlib.suppress(js_errors.KeyNotFoundError), self._request("delete"):
            await kv.delete(key)

    async def purge(self, key: str) -> None:
        """Remove a key and its history (one purge marker stays); an absent key is fine."""
        self._check_key(key)
        kv = await self._handle()
        with self._request("purge"):
            await kv.purge(key)

    def _check_key(self, key: str) -> None:
        if not is_key(key):
            raise InvalidParameter(detail=f"not a valid key of {self.spec.name}: {key[:80]!r}")

    # --- encoding ------------------------------------------------------------------------------

    def _encode(self, key: str, value: M) -> bytes:
        """The value's bytes, refused when over the bucket's value limit or (with the subject and
        the compare-and-set header an update carries) over the server's max payload."""
        data = value.to_bytes()
        self._check_size(key, data)
        return data

    def _check_size(self, key: str, data: bytes) -> None:
        if len(data) > self.spec.max_value_bytes > 0:
            raise PayloadTooLarge(
                detail=f"a {self.spec.name} record of {len(data)} bytes is over its limit "
                f"of {self.spec.max_value_bytes} bytes"
            )
        self.bus.check(self.spec.prefix + key, len(data), _CAS_HEADER)

    def parse(self, key: str, data: bytes) -> M | None:
        """A stored value of `key` as the model; None (logged) when it does not parse."""
        return self._decode(key, data)

    def _decode(self, key: str, data: bytes) -> M | None:
        try:
            return self.model.from_bytes(data)
        except ValueError as exc:
            log.error("%s/%s does not parse and is skipped: %s", self.spec.name, key, exc)
            return None


def is_key(key: str) -> bool:
    """A key a bucket can hold: its exact form and length (nothing else reaches the server)."""
    return len(key) <= MAX_KEY and _KEY.fullmatch(key) is not None and not key.startswith(".")


def _check_pattern(pattern: str) -> None:
    """Refuse what is not a key pattern ending in a wildcard (one machine's keys, `<uuid>.*`)."""
    if not _PATTERN.fullmatch(pattern) or len(pattern) > MAX_KEY:
        raise ValueError(f"not a key pattern: {pattern[:80]!r}")


def _held_value(msg: js_api.RawStreamMsg | None) -> bytes | None:
    """The value a key's last message holds; None for none, a delete or purge marker, or no data."""
    if msg is None or not msg.data or (msg.headers and msg.headers.get("KV-Operation") in _DELETED):
        return None
    return msg.data
