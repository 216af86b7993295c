"""Consuming `TY_SAMPLES`: many JetStream messages coalesced into one INSERT, bounded by samples and
by a short delay; acked only once stored.

No per-batch read of the store: a sample id stored once is dropped when it comes again, from
memory when it is one of the last ids stored, and by a lookup only when JetStream delivers a
message again (see `samples.py`).

Each sample is checked on its own (`samples.accepted`): a bad one (NaN, out of range, another
machine's) is dropped and counted, and the rest of its batch is stored. A batch that cannot be
stored is split in halves until the messages that fail are alone, so one message that fails does
not hold back the others (nor costs an insert per message of its batch);
a message stored but not acked (a crash between the insert and the ack) is redelivered and then
found stored, so it is acked without being stored twice.
Deliveries are bounded (`subjects.METERING_SAMPLES.max_deliver`): a message that still cannot be
stored on its last one is dead-lettered (`TY_DEAD`, replayable with `tingyu dead replay`), never
retried forever; one JetStream gave up on without an answer is parked from the advisory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import Counter

from nats.aio.msg import Msg

from tingyu.common import metrics, subjects
from tingyu.common.bus import Bus
from tingyu.common.bus.consumers import (
    Puller,
    backlog_watched,
    dead_letter,
    declare,
    deliveries,
    park_abandoned,
)
from tingyu.common.models.metering import RawSampleBatch, SampleBatch
from tingyu.metering.config import MeteringSettings
from tingyu.metering.rollups import recompute_resources
from tingyu.metering.samples import (
    Good,
    RecentIds,
    Window,
    accepted,
    distinct,
    fast_accepted,
    insert_goods,
    stored_ids,
)
from tingyu.metering.store import ClickHouse

log = logging.getLogger(__name__)

SPEC = subjects.METERING_SAMPLES
MAX_RETRY_DELAY_S = 60.0
MAX_UNSETTLED = 4  # inserts that may share one resource recomputation (and wait for it to be acked)


class Batcher:
    """Messages waiting to be stored together, each with its own good samples."""

    def __init__(self) -> None:
        self.entries: list[tuple[Msg, Good]] = []
        self.again: list[Good] = []  # the samples of messages JetStream delivered before
        self.count = 0
        self.since = 0.0

    @property
    def goods(self) -> list[Good]:
        return [good for _, good in self.entries]

    def add(self, msg: Msg, good: Good, *, again: bool) -> None:
        if not self.entries:
            self.since = time.monotonic()
        self.entries.append((msg, good))
        if again:
            self.again.append(good)
        self.count += len(good.ids)

    def due(self, settings: MeteringSettings, *, drained: bool) -> bool:
        """Full; or half full while the stream has no more for now (`drained`: nothing to wait
        for that would fill it soon); or its oldest message has waited `batch_wait_s`."""
        if not self.entries:
            return False
        old = time.monotonic() - self.since >= settings.batch_wait_s
        return (
            old
            or self.count >= settings.batch_samples
            or (drained and 2 * self.count >= settings.batch_samples)
        )

    def wait_s(self, settings: MeteringSettings) -> float:
        """How long the next pull may block without making the waiting batch late."""
        if not self.entries:
            return settings.batch_wait_s  # a pull with nothing waiting comes back with its first message
        return max(settings.batch_wait_s - (time.monotonic() - self.since), 0.05)


class Ingest:
    """Pulls sample batches, checks each sample, stores them together, acks, retries or
    dead-letters them; counts what it drops."""

    def __init__(
        self,
        bus: Bus,
        store: ClickHouse,
        settings: MeteringSettings,
        spec: subjects.ConsumerSpec[SampleBatch] = SPEC,
    ) -> None:
        self.bus = bus
        self.store = store
        self.settings = settings
        self.spec = spec
        self.dropped: Counter[str] = Counter()  # samples dropped since start, by reason
        self.recent = RecentIds(settings.recent_ids)
        self.per_message = 11.0  # samples per message in the last pull (an agent's reading: 11)
        self.waiting = Batcher()  # checked, to be stored together
        self.storing: asyncio.Task[None] | None = None  # the batch being stored and acked
        self.storing_messages = 0  # its messages
        self.queued = False  # a batch waits for the one being stored
        self.unsettled: list[tuple[Batcher, float]] = []  # inserted (and when); recomputed and acked later

    async def run(self, stop: asyncio.Event) -> None:
        """Pull, check, batch, store, ack; until `stop`, then store what is waiting.

        One batch is stored (in the store's thread) while the next is pulled and checked, so the
        decoding and the insert use a core each; batches are still stored and acked in order. A
        batch goes to the store as soon as it is full, even in the middle of a pull. A pull waits
        for more than what is there only to fill a batch that has begun and has not reached
        the stream's end yet, and never past that batch's `batch_wait_s`: a sample waits at most
        that long before its insert.
        """
        size = self.settings.fetch_messages
        await declare(self.bus, self.spec, size)
        puller = Puller(self.bus, self.spec, self.settings.pull_max_bytes)
        await puller.start()
        abandoned = await park_abandoned(self.bus, self.spec, None)  # batches no answer ever came for
        # Unacked messages are bounded by the consumer: a batch that could not take another fetch
        # is stored now rather than waiting out its delay with nothing more arriving.
        info = await self.bus.js.consumer_info(self.spec.stream.name, self.spec.durable)
        pending_limit = info.config.max_ack_pending or 1024
        try:
            async with backlog_watched(self.bus, self.spec):
                backlog = False  # the last pull came back full: the stream may hold more at once
                while not stop.is_set():
                    if self.storing and self.storing.done():
                        self.storing.result()  # a flush that raised ends the loop here
                        self.storing = None
                    asked = self.pull_size()
                    # Held for more only when a batch has begun and nothing more is there yet.
                    held = bool(self.waiting.entries) and not backlog
                    msgs = await puller.pull(asked, self.waiting.wait_s(self.settings), held=held)
                    backlog = len(msgs) >= asked or puller.capped
                    await self.take(msgs)
                    unacked = len(self.waiting.entries) + self.storing_messages + self.unsettled_messages
                    if self.waiting.due(self.settings, drained=not backlog) or (
                        self.waiting.entries and unacked + size > pending_limit
                    ):
                        await self.store_waiting()
            await self.store_waiting()
            if self.storing:
                await self.storing
            await self.settle()
        finally:
            if self.storing and not self.storing.done():
                self.storing.cancel()
            await puller.stop()
            with contextlib.suppress(Exception):  # the connection may be gone already
                await abandoned.unsubscribe()

    async def take(self, msgs: list[Msg]) -> None:
        """Check pulled messages into the waiting batch; a batch that fills goes to the store at
        once, and the rest of the pull is checked while it is stored."""
        window = self.window()
        samples = 0
        for msg in msgs:
            again = redelivered(msg)
            if again:
                metrics.CONSUMER_REDELIVERED.labels(self.spec.durable).inc()
            good = await self.check(msg, window)
            if good is not None:
                self.waiting.add(msg, good, again=again)
                samples += len(good.ids)
            if self.waiting.count >= self.settings.batch_samples:
                await self.store_waiting()
        if samples:
            self.per_message = samples / len(msgs)

    async def store_waiting(self) -> None:
        """Start storing the waiting batch once the one under way is stored (one at a time, in
        order, so acks keep the stream's order); a new batch begins."""
        if not self.waiting.entries:
            return
        if self.storing:
            self.queued = True  # the store's next batch is here: the insert under way may leave
            try:  # its recomputation to this one's
                await self.storing
            finally:
                self.queued = False
        waiting, self.waiting = self.waiting, Batcher()
        self.storing, self.storing_messages = asyncio.create_task(self.flush(waiting)), len(waiting.entries)

    @property
    def unsettled_messages(self) -> int:
        return sum(len(batch.entries) for batch, _ in self.unsettled)

    def pull_size(self) -> int:
        """Messages to ask for: enough to fill the insert, as large as agents' batches are now."""
        room = max(self.settings.batch_samples - self.waiting.count, 1)
        return max(1, min(self.settings.fetch_messages, math.ceil(room / self.per_message)))

    def window(self) -> Window:
        """The sample times accepted now."""
        return Window(time.time(), self.settings.sample_max_age_s, self.settings.sample_max_ahead_s)

    async def check(self, msg: Msg, window: Window | None = None) -> Good | None:
        """The message's good samples; None (and the message ended) when it is no sample batch."""
        window = window or self.window()
        # The common case: every sample passes every rule, and the message is stored as it came.
        fast = fast_accepted(msg.data, window)
        if fast is not None and msg.subject == subjects.samples(fast.node_uuid):
            return fast
        try:  # otherwise each sample on its own, so a bad one drops alone with its reason
            batch = RawSampleBatch.from_bytes(msg.data)
        except ValueError as exc:
            self.dropped["undecodable batch"] += 1
            await self.dead(msg, f"undecodable sample batch: {exc}")
            return None
        if msg.subject != subjects.samples(batch.node_uuid):
            log.warning(
                "samples: batch %s of %s arrived on %s; dropped", batch.batch_id, batch.node_uuid, msg.subject
            )
            self.dropped["wrong subject"] += len(batch.samples)
            metrics.SAMPLES.labels("dropped").inc(len(batch.samples))
            await msg.term()
            return None
        good, dropped = accepted(batch, window)
        if dropped:
            metrics.SAMPLES.labels("dropped").inc(sum(dropped.values()))
            self.dropped.update(dropped)
            log.warning(
                "samples: dropped %d of %d samples of batch %s from %s (%s); %d dropped since start",
                sum(dropped.values()),
                len(batch.samples),
                batch.batch_id,
                batch.node_uuid,
                ", ".join(f"{reason}: {count}" for reason, count in sorted(dropped.items())),
                sum(self.dropped.values()),
            )
        return Good.of(batch.batch_id, batch.node_uuid, good)

    async def flush(self, waiting: Batcher) -> None:
        """Store the waiting samples in one insert; on failure, in halves (`store_apart`).

        The resource recomputation and the acks follow, for this insert and the ones before it
        whose recomputation was left to it: when the next batch is already waiting for the store,
        a few inserts (`MAX_UNSETTLED`) share one recomputation of the buckets they touched."""
        started = time.monotonic()
        try:
            stored = await self.store_new(waiting.entries, waiting.again, recompute=False)
        except Exception as exc:
            log.warning(
                "samples: storing %d samples failed (%r); storing its messages apart", waiting.count, exc
            )
            await self.settle()  # the inserts before it
            await self.store_apart(waiting.entries)
            return
        self.unsettled.append((waiting, started))
        log.debug(
            "samples: %d messages, %d samples, %d new, %.0f ms",
            len(waiting.entries),
            waiting.count,
            stored,
            (time.monotonic() - started) * 1000,
        )
        carry = self.queued and len(self.unsettled) < MAX_UNSETTLED
        if not (carry and self.unsettled_messages <= self.settings.fetch_messages):
            await self.settle()

    async def settle(self) -> None:
        """Recompute the buckets the stored but unacked inserts touched, then ack their messages;
        if the recomputation fails, each message goes its own way (`flush_one`: found stored,
        recomputed, acked, or nakked to come again)."""
        batches, self.unsettled = self.unsettled, []
        if not batches:
            return
        try:
            await recompute_resources(
                self.store, {int(t) for batch, _ in batches for good in batch.goods for t in good.times}
            )
        except Exception as exc:
            log.warning("samples: recomputing resources failed (%r); storing message by message", exc)
            for batch, _ in batches:
                for msg, good in batch.entries:
                    await self.flush_one(msg, good)
            return
        for batch, started in batches:
            await self.acknowledge(batch.entries)
            measure(batch.goods, started)

    async def store_apart(self, entries: list[tuple[Msg, Good]]) -> None:
        """Messages whose insert failed together: each half is stored on its own (recomputed and
        acked), a half that fails is split again, down to single messages (`flush_one`). One bad
        message among n costs about 2·log2(n) inserts, not n."""
        if len(entries) == 1:
            await self.flush_one(*entries[0])
            return
        half = len(entries) // 2
        for part in (entries[:half], entries[half:]):
            started = time.monotonic()
            again = [good for msg, good in part if redelivered(msg)]
            try:
                await self.store_new(part, again)
            except Exception:
                await self.store_apart(part)
                continue
            await self.acknowledge(part)
            measure([good for _, good in part], started)

    async def flush_one(self, msg: Msg, good: Good) -> None:
        """One message alone: stored and acked, again later, or dead-lettered on its last delivery.

        Stored as pydantic encodes its samples, not as the agent sent them, so that bytes the
        store reads otherwise than the checks did cannot fail it again and again."""
        started = time.monotonic()
        good = good.normalised()
        try:
            await self.store_new([(msg, good)], [good] if redelivered(msg) else [])
        except Exception as exc:
            deliveries = msg.metadata.num_delivered or 1
            if deliveries < self.spec.max_deliver:
                log.warning("samples: message %s failed (delivery %d): %r", msg.subject, deliveries, exc)
                await msg.nak(delay=min(2.0 * 2 ** (deliveries - 1), MAX_RETRY_DELAY_S))
            else:
                await self.dead(msg, f"not stored after {deliveries} deliveries: {exc!r}")
            return
        await self.acknowledge([(msg, good)])
        measure([good], started)

    async def store_new(
        self, entries: list[tuple[Msg, Good]], again: list[Good], *, recompute: bool = True
    ) -> int:
        """Store the samples of these messages not stored yet, then (`recompute`) the resource
        rollup of the buckets they touch; returns how many were new.

        Ids among the recent ones are dropped from memory; redelivered messages' ids (`again`) are
        looked up in the store (it may have been stored before its ack was lost).
        """
        known = (
            await stored_ids(self.store, [s for good in again for s in good.samples()]) if again else set()
        )
        goods = [good for _, good in entries]
        ids = [i for good in goods for i in good.ids]
        stored = await insert_goods(self.store, distinct(goods, self.recent.among(ids) | known))
        # Remembered as soon as they are in: if the recomputation fails, the retry of these
        # messages must not insert them again. It recomputes every bucket they touch, new or not.
        self.recent.add(ids)
        if recompute:
            await recompute_resources(self.store, {int(t) for good in goods for t in good.times})
        return stored

    async def acknowledge(self, entries: list[tuple[Msg, Good]]) -> None:
        """The messages are stored: JetStream may forget them."""
        for msg, _ in entries:
            await msg.ack()

    async def dead(self, msg: Msg, reason: str) -> None:
        """Park a message in `TY_DEAD` and end it in `TY_SAMPLES`."""
        await dead_letter(
            self.bus,
            self.spec,
            subject=msg.subject,
            data=msg.data,
            headers=msg.headers,
            reason=reason,
            metadata=msg.metadata,
        )
        await msg.term()


def redelivered(msg: Msg) -> bool:
    """JetStream delivered this message before (it was nakked, or its ack never arrived)."""
    return deliveries(msg) > 1


def measure(goods: list[Good], started: float) -> None:
    """Samples stored, the insert's time and how far behind the newest stored sample is."""
    metrics.SAMPLES.labels("ingested").inc(sum(len(good.ids) for good in goods))
    metrics.INSERT_SECONDS.observe(time.monotonic() - started)
    newest = max((max(good.times) for good in goods if good.times), default=None)
    if newest is not None:
        metrics.METERING_LAG.set(max(time.time() - newest, 0.0))
