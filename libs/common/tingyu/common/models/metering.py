"""Metering: samples agents publish (stream `TY_SAMPLES`) and the query metering answers for the API."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import Field

from tingyu.common.models.base import Message

BUCKET_S = 300
"""Width of one rollup bucket (5 minutes), the granularity of every answer."""


class Sample(Message):
    """What one machine measured over `interval_s` seconds ending at `ts`.

    `deploymentname == ""` is the machine itself: the bytes of its counted NICs.
    Otherwise it is one container: its CPU (cores, averaged over the interval), memory (MiB)
    and the bytes attributed to it. `sample_id` is unique and stable, so storing is idempotent.
    """

    sample_id: str
    node_uuid: str
    deploymentname: str = ""
    image: str = ""
    version: str = ""
    ts: float
    interval_s: float
    tx_bytes: int = 0  # upstream: bytes the machine (or container) sent
    rx_bytes: int = 0  # downstream: bytes it received
    cpu_cores: float = 0.0
    memory_mib: float = 0.0


class SampleBatch(Message):
    """One publish of an agent; `batch_id` is also its JetStream message id."""

    batch_id: str
    node_uuid: str
    samples: list[Sample] = Field(default_factory=list)


class RawSampleBatch(Message):
    """A batch as metering reads it: each sample is checked on its own, so a bad one drops alone."""

    batch_id: str
    node_uuid: str
    samples: list[Any] = Field(default_factory=list)


class MeteringScope(StrEnum):
    """Which rows a query sums: the machines' NICs, or containers (optionally of one image/version)."""

    ACCOUNT = "account"
    CONTAINERS = "containers"


class MeteringSeries(StrEnum):
    """Which figures a query wants back: a reply must fit in one NATS message (1 MiB by default)."""

    BANDWIDTH = "bandwidth"
    RESOURCES = "resources"


class MeteringQuery(Message):
    """The API asks metering for 5-minute points over [start, end] (epoch seconds)."""

    scope: MeteringScope
    series: MeteringSeries = MeteringSeries.BANDWIDTH
    start: float
    end: float
    image: str = ""  # "" = every image
    version: str = ""  # "" = every version (only with an image)


class MeteringPoint(Message):
    """One 5-minute bucket, summed across machines and containers in scope."""

    time: float  # bucket start, epoch seconds
    up_bps: float = 0.0
    down_bps: float = 0.0
    cpu_cores: float = 0.0
    memory_mib: float = 0.0


class MeteringColumns(Message):
    """Every bucket from `first`, `BUCKET_S` apart, as columns (compact enough for 93 days in one message).

    Only the columns of the query's series are filled; values are rounded to 3 decimals.
    """

    first: int = 0
    a: list[float] = Field(default_factory=list)  # up bps, or cpu cores
    b: list[float] = Field(default_factory=list)  # down bps, or memory MiB

    @classmethod
    def of(cls, points: list[MeteringPoint], series: MeteringSeries) -> MeteringColumns:
        bandwidth = series == MeteringSeries.BANDWIDTH
        return cls(
            first=int(points[0].time) if points else 0,
            a=[round(p.up_bps if bandwidth else p.cpu_cores, 3) for p in points],
            b=[round(p.down_bps if bandwidth else p.memory_mib, 3) for p in points],
        )

    def points(self, series: MeteringSeries) -> list[MeteringPoint]:
        bandwidth = series == MeteringSeries.BANDWIDTH
        out = []
        for index, (a, b) in enumerate(zip(self.a, self.b, strict=True)):
            time = self.first + index * BUCKET_S
            if bandwidth:
                out.append(MeteringPoint(time=time, up_bps=a, down_bps=b))
            else:
                out.append(MeteringPoint(time=time, cpu_cores=a, memory_mib=b))
        return out


class MeteringSummary(Message):
    """Peak and billing (95th percentile) figures of the buckets in range; empty buckets count as 0."""

    buckets: int = 0
    up_bytes: float = 0.0
    down_bytes: float = 0.0
    peak_up_bps: float = 0.0
    peak_down_bps: float = 0.0
    p95_up_bps: float = 0.0
    p95_down_bps: float = 0.0
    peak_cpu_cores: float = 0.0
    p95_cpu_cores: float = 0.0
    peak_memory_mib: float = 0.0
    p95_memory_mib: float = 0.0


class MeteringReply(Message):
    """Metering's answer to a `MeteringQuery` (a failed query is the responder's error reply)."""

    columns: MeteringColumns = Field(default_factory=MeteringColumns)
    summary: MeteringSummary = Field(default_factory=MeteringSummary)


def bucket_range(start: float, end: float) -> tuple[int, int, int]:
    """(first bucket, last bucket, count): every 5-minute bucket that [start, end] touches."""
    first = int(start) // BUCKET_S * BUCKET_S
    last = int(end) // BUCKET_S * BUCKET_S
    return first, last, (last - first) // BUCKET_S + 1


def p95_index(count: int) -> int:
    """0-based index, in ascending order, of the billed sample: ceil(0.95 N) - 1 (top 5 % dropped)."""
    return max(-(-count * 95 // 100) - 1, 0)
