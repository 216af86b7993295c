"""Consuming `TY_SAMPLES` in batches bounded by size and age; acked only once stored.

Each sample is checked on its own (`samples.accepted`): a bad one (NaN, out of range, another
machine's) is dropped and counted, and the rest of its batch is stored. A batch that cannot be
stored is retried message by message, so one message that fails does not hold back the others;
storing is idempotent (see `samples.py`), so a batch stored but not acked is skipped next time. A
message that still fails after `max_deliver` deliveries is parked: written to `parked_dir` with
the last error, logged, and taken off the stream, never retried forever.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from pathlib import Path

import nats
from nats.aio.msg import Msg
from nats.js import errors as js_errors

from tingyu.common import subjects
from tingyu.common.bus import Bus, fetch_batches
from tingyu.common.models.metering import RawSampleBatch, Sample
from tingyu.metering.config import MeteringSettings
from tingyu.metering.samples import Window, accepted, store_samples
from tingyu.metering.store import Store

log = logging.getLogger(__name__)


class Batcher:
    """Messages waiting to be stored together, each with its own good samples."""

    def __init__(self) -> None:
        self.entries: list[tuple[Msg, list[Sample]]] = []
        self.count = 0
        self.since = 0.0

    @property
    def msgs(self) -> list[Msg]:
        return [msg for msg, _ in self.entries]

    @property
    def samples(self) -> list[Sample]:
        return [sample for _, samples in self.entries for sample in samples]

    def add(self, msg: Msg, samples: list[Sample]) -> None:
        if not self.entries:
            self.since = time.monotonic()
        self.entries.append((msg, samples))
        self.count += len(samples)

    def due(self, settings: MeteringSettings) -> bool:
        if not self.entries:
            return False
        old = time.monotonic() - self.since >= settings.batch_wait_s
        return old or self.count >= settings.batch_samples

    def wait_s(self, settings: MeteringSettings) -> float:
        """How long the next fetch may block without making the waiting batch late."""
        if not self.entries:
            return 1.0
        return max(settings.batch_wait_s - (time.monotonic() - self.since), 0.05)


class Ingest:
    """The consumer loop's state: settings, where parked batches go, and the drop counters."""

    def __init__(self, store: Store, settings: MeteringSettings) -> None:
        self.store = store
        self.settings = settings
        self.dropped: Counter[str] = Counter()  # samples dropped since start, by reason
        self.parked = 0

    def check(self, msg: Msg) -> list[Sample] | None:
        """The message's good samples; None when the message is not a sample batch at all."""
        try:
            batch = RawSampleBatch.from_bytes(msg.data)
        except ValueError as exc:
            log.error("samples: undecodable batch on %s dropped: %s", msg.subject, exc)
            self.dropped["undecodable batch"] += 1
            return None
        if msg.subject != subjects.samples(batch.node_uuid):
            log.warning(
                "samples: batch %s of %s arrived on %s; dropped", batch.batch_id, batch.node_uuid, msg.subject
            )
            self.dropped["wrong subject"] += len(batch.samples)
            return None
        window = Window(time.time(), self.settings.sample_max_age_s, self.settings.sample_max_ahead_s)
        good, dropped = accepted(batch, window)
        if dropped:
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
        return good

    async def flush(self, waiting: Batcher) -> None:
        """Store the waiting samples and ack; on failure, store message by message."""
        started = time.monotonic()
        try:
            stored = await store_samples(self.store, waiting.samples)
        except Exception as exc:
            log.warning(
                "samples: storing %d samples failed (%r); storing message by message", waiting.count, exc
            )
            for msg, samples in waiting.entries:
                await self.flush_one(msg, samples)
            return
        for msg in waiting.msgs:
            await msg.ack()
        log.debug(
            "samples: %d messages, %d samples, %d new, %.0f ms",
            len(waiting.entries),
            waiting.count,
            stored,
            (time.monotonic() - started) * 1000,
        )

    async def flush_one(self, msg: Msg, samples: list[Sample]) -> None:
        try:
            await store_samples(self.store, samples)
        except Exception as exc:
            delivered = msg.metadata.num_delivered or 1
            if delivered < self.settings.max_deliver:
                log.warning("samples: message %s failed (delivery %d): %r", msg.subject, delivered, exc)
                await msg.nak(delay=2.0)
                return
            await self.park(msg, repr(exc))
            return
        await msg.ack()

    async def park(self, msg: Msg, error: str) -> None:
        """Keep a message that failed every delivery where an operator can replay it; then drop it."""
        folder = self.settings.parked_path
        sequence = msg.metadata.sequence.stream
        path = folder / f"{sequence}.json"
        record = {
            "subject": msg.subject,
            "sequence": sequence,
            "error": error,
            "data": msg.data.decode("utf-8", "replace"),
        }
        await asyncio.to_thread(_write, path, json.dumps(record, ensure_ascii=False))
        self.parked += 1
        log.error(
            "samples: message %s (stream sequence %d) failed %d deliveries and is parked in %s: %s",
            msg.subject,
            sequence,
            msg.metadata.num_delivered or 0,
            path,
            error,
        )
        await msg.term()


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


async def ingest(bus: Bus, store: Store, settings: MeteringSettings, stop: asyncio.Event) -> None:
    """Pull, check, batch, store, ack; until `stop`, then store what is waiting."""
    sub = await fetch_batches(
        bus,
        stream=subjects.SAMPLES,
        durable=subjects.DURABLE_METERING_SAMPLES,
        subject=subjects.SAMPLES_ALL,
        batch=settings.fetch_messages,
        ack_wait=settings.ack_wait_s,
        max_deliver=settings.max_deliver,
    )
    worker = Ingest(store, settings)
    waiting = Batcher()
    try:
        while not stop.is_set():
            try:
                msgs = await sub.fetch(settings.fetch_messages, timeout=waiting.wait_s(settings))
            except (nats.errors.TimeoutError, TimeoutError):  # nats-py raises either, depending on the path
                msgs = []
            except (nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError):
                await asyncio.sleep(0.5)
                msgs = []
            except js_errors.APIError as exc:
                log.warning("samples: fetch failed: %s", exc)
                await asyncio.sleep(0.5)
                msgs = []
            for msg in msgs:
                samples = worker.check(msg)
                if samples is None:
                    await msg.term()
                else:
                    waiting.add(msg, samples)
            if waiting.due(settings):
                await worker.flush(waiting)
                waiting = Batcher()
        if waiting.entries:
            await worker.flush(waiting)
    finally:
        await sub.unsubscribe()
