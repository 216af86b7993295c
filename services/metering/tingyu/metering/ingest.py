"""Consuming `TY_SAMPLES` in batches bounded by size and age; acked only once stored.

A batch that cannot be stored is nak'ed whole and comes back (with a growing delay): storing is
idempotent (see `samples.py`), so a batch stored but not acked (crash, lost ack) is simply skipped
next time. Deliveries are bounded (`subjects.METERING_SAMPLES.max_deliver`): on its last one a
message is tried alone, so one bad message cannot sink the others it was fetched with, and if it
still cannot be stored it is dead-lettered (`TY_DEAD`, replayable) instead of retried forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from nats.aio.msg import Msg

from tingyu.common import subjects
from tingyu.common.bus import Bus
from tingyu.common.bus.consumers import dead_letter, fetch, park_abandoned, subscribe
from tingyu.common.models.metering import SampleBatch
from tingyu.metering.config import MeteringSettings
from tingyu.metering.samples import store_samples
from tingyu.metering.store import ClickHouse

log = logging.getLogger(__name__)

SPEC = subjects.METERING_SAMPLES
MAX_RETRY_DELAY_S = 60.0


class Batcher:
    """Messages waiting to be stored together."""

    def __init__(self) -> None:
        self.batches: list[tuple[Msg, SampleBatch]] = []
        self.samples = 0
        self.since = 0.0

    def add(self, msg: Msg, batch: SampleBatch) -> None:
        if not self.batches:
            self.since = time.monotonic()
        self.batches.append((msg, batch))
        self.samples += len(batch.samples)

    def due(self, settings: MeteringSettings) -> bool:
        if not self.batches:
            return False
        old = time.monotonic() - self.since >= settings.batch_wait_s
        return old or self.samples >= settings.batch_samples

    def wait_s(self, settings: MeteringSettings) -> float:
        """How long the next fetch may block without making the waiting batch late."""
        if not self.batches:
            return 1.0
        return max(settings.batch_wait_s - (time.monotonic() - self.since), 0.05)


class Ingest:
    """Pulls sample batches, stores them together, acks, retries or dead-letters them."""

    def __init__(self, bus: Bus, store: ClickHouse, settings: MeteringSettings) -> None:
        self.bus = bus
        self.store = store
        self.settings = settings

    async def run(self, stop: asyncio.Event) -> None:
        """Pull, batch, store, ack; until `stop`, then store what is waiting."""
        size = self.settings.fetch_messages
        sub = await subscribe(self.bus, SPEC, size)
        abandoned = await park_abandoned(self.bus, SPEC, None)  # batches no answer ever came for
        waiting = Batcher()
        try:
            while not stop.is_set():
                for msg in await fetch(sub, size, SPEC.durable, timeout=waiting.wait_s(self.settings)):
                    try:
                        waiting.add(msg, SampleBatch.from_bytes(msg.data))
                    except ValueError as exc:
                        await self.dead(msg, f"undecodable sample batch: {exc}")
                if waiting.due(self.settings):
                    await self.flush(waiting)
                    waiting = Batcher()
            if waiting.batches:
                await self.flush(waiting)
        finally:
            for subscription in (sub, abandoned):
                with contextlib.suppress(Exception):  # the connection may be gone already
                    await subscription.unsubscribe()

    async def flush(self, waiting: Batcher) -> None:
        """Store the waiting samples, then ack every message; on failure retry or park each one."""
        started = time.monotonic()
        samples = [sample for _, batch in waiting.batches for sample in batch.samples]
        try:
            stored = await store_samples(self.store, samples)
        except Exception:
            log.exception("samples: storing %d samples failed; they will be redelivered", len(samples))
            for msg, batch in waiting.batches:
                await self.failed(msg, batch)
            return
        for msg, _ in waiting.batches:
            await msg.ack()
        log.debug(
            "samples: %d messages, %d samples, %d new, %.0f ms",
            len(waiting.batches),
            len(samples),
            stored,
            (time.monotonic() - started) * 1000,
        )

    async def failed(self, msg: Msg, batch: SampleBatch) -> None:
        """A message of a batch that could not be stored: again later, or on its last delivery
        alone, and dead-lettered if that fails too."""
        deliveries = msg.metadata.num_delivered or 1
        if deliveries < SPEC.max_deliver:
            await msg.nak(delay=min(2.0 * 2 ** (deliveries - 1), MAX_RETRY_DELAY_S))
            return
        try:
            await store_samples(self.store, batch.samples)
        except Exception as exc:
            await self.dead(msg, f"not stored after {deliveries} deliveries: {exc!r}")
            return
        await msg.ack()

    async def dead(self, msg: Msg, reason: str) -> None:
        """Park a message in `TY_DEAD` and end it in `TY_SAMPLES`."""
        await dead_letter(
            self.bus,
            SPEC,
            subject=msg.subject,
            data=msg.data,
            headers=msg.headers,
            reason=reason,
            metadata=msg.metadata,
        )
        await msg.term()
