"""Consuming `TY_SAMPLES` in batches bounded by size and age; acked only once stored.

A batch that cannot be stored is nak'ed whole and comes back: storing is idempotent (see
`samples.py`), so a batch stored but not acked (crash, lost ack) is simply skipped next time.
"""

from __future__ import annotations

import asyncio
import logging
import time

import nats
from nats.aio.msg import Msg
from nats.js import errors as js_errors

from tingyu.common import subjects
from tingyu.common.bus import Bus, fetch_batches
from tingyu.common.models.metering import Sample, SampleBatch
from tingyu.metering.config import MeteringSettings
from tingyu.metering.samples import store_samples
from tingyu.metering.store import Store

log = logging.getLogger(__name__)


class Batcher:
    """Messages waiting to be stored together."""

    def __init__(self) -> None:
        self.msgs: list[Msg] = []
        self.samples: list[Sample] = []
        self.since = 0.0

    def add(self, msg: Msg, batch: SampleBatch) -> None:
        if not self.msgs:
            self.since = time.monotonic()
        self.msgs.append(msg)
        self.samples.extend(batch.samples)

    def due(self, settings: MeteringSettings) -> bool:
        if not self.msgs:
            return False
        old = time.monotonic() - self.since >= settings.batch_wait_s
        return old or len(self.samples) >= settings.batch_samples

    def wait_s(self, settings: MeteringSettings) -> float:
        """How long the next fetch may block without making the waiting batch late."""
        if not self.msgs:
            return 1.0
        return max(settings.batch_wait_s - (time.monotonic() - self.since), 0.05)


async def ingest(bus: Bus, store: Store, settings: MeteringSettings, stop: asyncio.Event) -> None:
    """Pull, batch, store, ack; until `stop`, then store what is waiting."""
    sub = await fetch_batches(
        bus,
        stream=subjects.SAMPLES,
        durable=subjects.DURABLE_METERING_SAMPLES,
        subject=subjects.SAMPLES_ALL,
        batch=settings.fetch_messages,
        ack_wait=settings.ack_wait_s,
    )
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
                try:
                    waiting.add(msg, SampleBatch.from_bytes(msg.data))
                except ValueError as exc:
                    log.error("samples: undecodable batch on %s dead-lettered: %s", msg.subject, exc)
                    await msg.term()
            if waiting.due(settings):
                await flush(store, waiting)
                waiting = Batcher()
        if waiting.msgs:
            await flush(store, waiting)
    finally:
        await sub.unsubscribe()


async def flush(store: Store, waiting: Batcher) -> None:
    """Store the waiting samples, then ack every message; on failure nak them all."""
    started = time.monotonic()
    try:
        stored = await store_samples(store, waiting.samples)
    except Exception:
        log.exception("samples: storing %d samples failed; they will be redelivered", len(waiting.samples))
        for msg in waiting.msgs:
            await msg.nak(delay=2.0)
        return
    for msg in waiting.msgs:
        await msg.ack()
    log.debug(
        "samples: %d messages, %d samples, %d new, %.0f ms",
        len(waiting.msgs),
        len(waiting.samples),
        stored,
        (time.monotonic() - started) * 1000,
    )
