"""A synthetic fleet that publishes samples in the agent's own format, with values known up front."""

from __future__ import annotations

import random
from dataclasses import dataclass

from tingyu.common.models.metering import Sample, SampleBatch


@dataclass
class Fleet:
    """`machines` machines, each running one container per (image, version), sampled every `step_s`."""

    prefix: str
    machines: int
    images: list[tuple[str, str]]
    start: int  # epoch seconds of the first sample
    ticks: int
    step_s: int = 30
    ticks_per_batch: int = 10
    seed: int = 1

    def uuid(self, machine: int) -> str:
        return f"{self.prefix}-m{machine:05d}"

    def samples(self, machine: int, tick: int, rng: random.Random) -> list[Sample]:
        uuid = self.uuid(machine)
        ts = self.start + tick * self.step_s
        node = Sample(
            sample_id=f"{uuid}/{ts * 1000}/-",
            node_uuid=uuid,
            ts=ts,
            interval_s=self.step_s,
            tx_bytes=rng.randrange(0, 50_000_000),
            rx_bytes=rng.randrange(0, 5_000_000),
        )
        out = [node]
        for index, (image, version) in enumerate(self.images):
            name = f"{self.prefix}-c{machine}-{index}"
            out.append(
                Sample(
                    sample_id=f"{uuid}/{ts * 1000}/{name}",
                    node_uuid=uuid,
                    deploymentname=name,
                    image=image,
                    version=version,
                    ts=ts,
                    interval_s=self.step_s,
                    tx_bytes=rng.randrange(0, 10_000_000),
                    rx_bytes=rng.randrange(0, 1_000_000),
                    cpu_cores=rng.randrange(0, 400) / 100,
                    memory_mib=float(rng.randrange(16, 4096)),
                )
            )
        return out

    def batches(self) -> list[SampleBatch]:
        """Every batch, in the order an agent would publish them."""
        rng = random.Random(self.seed)
        out: list[SampleBatch] = []
        for first in range(0, self.ticks, self.ticks_per_batch):
            for machine in range(self.machines):
                samples: list[Sample] = []
                for tick in range(first, min(first + self.ticks_per_batch, self.ticks)):
                    samples.extend(self.samples(machine, tick, rng))
                batch_id = f"{self.uuid(machine)}-{int(samples[0].ts * 1000)}"
                out.append(SampleBatch(batch_id=batch_id, node_uuid=self.uuid(machine), samples=samples))
        return out
