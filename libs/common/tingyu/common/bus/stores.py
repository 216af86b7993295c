"""Typed key/value stores: `bus.store(subjects.NODES)` is a `Store[NodeRecord]`.

Reads use direct gets (answered by any replica of the bucket's stream); listing reads with a
short-lived pull consumer, which never skips a key under concurrent writes. Only nats-py's public
API is used: where its `KeyValue` has no public way, this module speaks the JetStream API itself.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import AsyncIterator, Callable
from typing import Generic, TypeVar

from nats.js import api as js_api
from nats.js import errors as js_errors
from nats.js.kv import KeyValue

from tingyu.common import subjects
from tingyu.common.bus.connection import Bus
from tingyu.common.errors import Conflict, InvalidParameter, PayloadTooLarge
from tingyu.common.models.base import Message

log = logging.getLogger(__name__)

M = TypeVar("M", bound=Message)

_WRONG_LAST_SEQUENCE = (10071, 10164)
MAX_KEY = 256  # bytes; every key the platform makes is far shorter
_KEY = re.compile(r"[-/_=.a-zA-Z0-9]+")  # what a JetStream KV key may hold
_DELETED = ("DEL", "PURGE")


class Store(Generic[M]):
    """One bucket, read and written as its model; a value that does not parse reads as absent
    (logged), so one corrupt record never takes a reader down."""

    def __init__(self, bus: Bus, spec: subjects.BucketSpec[M]) -> None:
        self.bus = bus
        self.spec = spec
        self.model: type[M] = spec.model
        self._kv: KeyValue | None = None

    async def _handle(self) -> KeyValue:
        if self._kv is None:
            self._kv = await self.bus.js.key_value(self.spec.name)
        return self._kv

    # --- reads ---------------------------------------------------------------------------------

    async def entry(self, key: str) -> tuple[M | None, int]:
        """The key's value and its revision; (None, 0) when absent, deleted or unreadable (a key
        that no write can have made, such as one of another form, reads as absent)."""
        if not is_key(key):
            return None, 0
        try:
            msg = await self.bus.js.get_msg(self.spec.stream, subject=self.spec.prefix + key, direct=True)
        except js_errors.NotFoundError:
            return None, 0
        if msg.headers and msg.headers.get("KV-Operation") in _DELETED:
            return None, 0
        if not msg.data:
            return None, 0
        return self._decode(key, msg.data), msg.seq or 0

    async def get(self, key: str) -> M | None:
        """The key's value, or None."""
        value, _ = await self.entry(key)
        return value

    async def values(self, pattern: str = ">") -> list[M]:
        """Every current value under `pattern` (keys as their values' own fields name them)."""
        return list((await self.items(pattern)).values())

    async def items(self, pattern: str = ">") -> dict[str, M]:
        """Every current key and value under `pattern`, read in batches by one pull consumer.

        Under steady writes (a large fleet's heartbeat times) the scan may never run out of pending
        entries: it stops once it has passed the stream's last message at the start and holds at
        least as many keys as the bucket had then. A key written during the scan comes again, newer.
        """
        prefix = self.spec.prefix
        state = (await self.bus.js.stream_info(self.spec.stream)).state
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
                    msgs = await sub.fetch(1000, timeout=2.0)
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

    async def watch(
        self, pattern: str = ">", wanted: Callable[[str], bool] | None = None
    ) -> AsyncIterator[tuple[str, M | None]]:
        """Every change under `pattern` from now on, as (key, value or None when deleted); a
        change whose key `wanted` refuses is skipped before its value is decoded."""
        watcher = await (await self._handle()).watch(pattern, include_history=False)
        try:
            while True:
                try:
                    entry = await watcher.updates(timeout=1.0)
                except TimeoutError:
                    continue
                if entry is None:
                    continue  # the initial 'no more history' marker
                if wanted is not None and not wanted(entry.key):
                    continue
                if entry.operation in _DELETED or not entry.value:
                    yield entry.key, None
                else:
                    yield entry.key, self._decode(entry.key, entry.value)
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()

    # --- writes --------------------------------------------------------------------------------

    async def put(self, key: str, value: M) -> int:
        """Store unconditionally; returns the new revision."""
        self._check_key(key)
        return await (await self._handle()).put(key, self._encode(value))

    async def create(self, key: str, value: M) -> int:
        """Store only when the key is absent (or deleted); `Conflict` when it exists."""
        self._check_key(key)
        try:
            return await (await self._handle()).create(key, self._encode(value))
        except js_errors.KeyWrongLastSequenceError as exc:
            raise Conflict(detail=f"{self.spec.name}/{key} exists") from exc

    async def update(self, key: str, value: M, expected_revision: int) -> int:
        """Store only when the key is still at `expected_revision`; `Conflict` otherwise."""
        self._check_key(key)
        try:
            return await (await self._handle()).update(key, self._encode(value), last=expected_revision)
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
        for _ in range(attempts):
            current, revision = await self.entry(key)
            new = change(current.model_copy(deep=True) if current is not None else None)
            if new is None:
                return current
            try:
                if revision:
                    await self.update(key, new, revision)
                else:
                    await self.create(key, new)
            except (Conflict, js_errors.KeyDeletedError):
                continue
            return new
        raise Conflict(detail=f"too much contention on {self.spec.name}/{key}")

    async def delete(self, key: str) -> None:
        """Delete a key; an absent key is fine."""
        self._check_key(key)
        with contextlib.suppress(js_errors.KeyNotFoundError):
            await (await self._handle()).delete(key)

    def _check_key(self, key: str) -> None:
        if not is_key(key):
            raise InvalidParameter(detail=f"not a valid key of {self.spec.name}: {key[:80]!r}")

    # --- encoding ------------------------------------------------------------------------------

    def _encode(self, value: M) -> bytes:
        data = value.to_bytes()
        if len(data) > self.spec.max_value_bytes > 0:
            raise PayloadTooLarge(
                detail=f"a {self.spec.name} record of {len(data)} bytes is over its limit "
                f"of {self.spec.max_value_bytes} bytes"
            )
        return data

    def _decode(self, key: str, data: bytes) -> M | None:
        try:
            return self.model.from_bytes(data)
        except ValueError as exc:
            log.error("%s/%s does not parse and is skipped: %s", self.spec.name, key, exc)
            return None


def is_key(key: str) -> bool:
    """A key a bucket can hold: its exact form and length (nothing else reaches the server)."""
    return len(key) <= MAX_KEY and _KEY.fullmatch(key) is not None and not key.startswith(".")
