"""Deterministic traffic of simulated machines, and the metering samples built from it.

Each machine follows a daily curve (peak in the evening, as PCDN traffic does) scaled by its
bandwidth, with a per-machine phase and jitter taken from its uuid: the same machine at the same
time always reports the same bytes. Samples are published only when the metering models exist.
"""

from __future__ import annotations

import hashlib
import logging
import math
from typing import Any

from tingyu.common import subjects
from tingyu.common.bus import Bus
from tingyu.common.models.nodes import NodeFacts

log = logging.getLogger(__name__)

DAY_S = 86400.0
PEAK_HOUR = 21.0


def _phase(uuid: str) -> float:
    return int(hashlib.sha256(uuid.encode()).hexdigest()[:8], 16) / 2**32


def mbps(facts: NodeFacts, at: float) -> float:
    """Upstream Mbps of the machine at time `at`: a daily wave between 10% and 90% of its bandwidth."""
    phase = _phase(facts.uuid)
    hour = ((at / 3600.0) + 8.0) % 24.0  # Beijing time
    wave = 0.5 + 0.4 * math.cos(2 * math.pi * (hour - PEAK_HOUR) / 24.0 + phase * 0.5)
    jitter = 0.05 * math.sin(at / 60.0 + phase * 2 * math.pi)
    return max(facts.bandwith * (wave + jitter), 0.0)


def bytes_between(facts: NodeFacts, start: float, end: float) -> int:
    """Bytes sent in [start, end), sampled at the middle of the interval."""
    return int(mbps(facts, (start + end) / 2) * 1e6 / 8 * max(end - start, 0.0))


def _sample_id(uuid: str, name: str, start: float) -> str:
    """The same sample gets the same id, so a batch sent twice is counted once."""
    return hashlib.sha256(f"{uuid}:{name}:{start:.3f}".encode()).hexdigest()[:32]


class SamplePublisher:
    """Builds and publishes one machine's sample batch; off (and says so once) without metering models."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.models: Any = None
        try:
            from tingyu.common.models import metering  # type: ignore[attr-defined, unused-ignore]

            self.models = metering
        except ImportError:
            log.warning("SIMULATED fleet: metering models are not installed; metering samples are off")
        self.sent = 0
        self.failed = 0

    @property
    def on(self) -> bool:
        return self.models is not None

    async def publish(self, facts: NodeFacts, containers: list[str], start: float, end: float) -> None:
        """One batch: the machine's traffic over [start, end), and an even share per container."""
        if self.models is None:
            return
        sent = bytes_between(facts, start, end)
        received = sent // 20  # PCDN machines mostly upload
        shares = [("", sent, received)] + [
            (name, sent // len(containers), received // len(containers)) for name in containers
        ]
        try:
            batch = self.models.SampleBatch(
                batch_id=_sample_id(facts.uuid, "batch", start),
                node_uuid=facts.uuid,
                samples=[
                    self.models.Sample(
                        sample_id=_sample_id(facts.uuid, name, start),
                        node_uuid=facts.uuid,
                        deploymentname=name,
                        ts=end,
                        interval_s=end - start,
                        tx_bytes=tx,
                        rx_bytes=rx,
                    )
                    for name, tx, rx in shares
                ],
            )
        except Exception as exc:  # the models' shape differs from what this simulator knows
            log.warning("SIMULATED fleet: cannot build metering samples (%s); metering samples are off", exc)
            self.models = None
            return
        try:
            await self.bus.publish(subjects.samples(facts.uuid), batch)
            self.sent += 1
        except Exception as exc:
            self.failed += 1
            log.debug("SIMULATED fleet: sample batch not published: %s", exc)
