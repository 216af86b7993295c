"""The metering interfaces' answers (contract §四, §五).

`info` stays a list, as the contract shows: one object per 5-minute bucket of the range. The
billing figures (peak, 95th percentile) ride in a separate top-level `summary`, which clients
written against the contract simply ignore.

A 93-day range is 26,785 points, so the answers are built as plain floats and strings and sent
without FastAPI's per-value encoding pass (`bandwidth_body`, `resources_body`); the models below
declare the same shape for OpenAPI.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from tingyu.api.envelope import InfoEnvelope
from tingyu.common import timefmt
from tingyu.common.models.metering import MeteringReply, MeteringSeries


class BandwidthPoint(BaseModel):
    time: str = Field(description="Start of the 5-minute bucket")
    upbps: float
    downbps: float


class BandwidthSummary(BaseModel):
    points: int
    upBytes: float
    downBytes: float
    peakUpbps: float
    peakDownbps: float
    p95Upbps: float
    p95Downbps: float


class BandwidthAnswer(InfoEnvelope[list[BandwidthPoint]]):
    summary: BandwidthSummary = Field(description="Extension: totals, peaks and the billed 95th percentile")


class ResourcePoint(BaseModel):
    time: str = Field(description="Start of the 5-minute bucket")
    cpu: float = Field(description="cores")
    memory: float = Field(description="MiB")


class ResourceSummary(BaseModel):
    points: int
    peakCpu: float
    p95Cpu: float
    peakMemory: float
    p95Memory: float


class ResourceAnswer(InfoEnvelope[list[ResourcePoint]]):
    summary: ResourceSummary = Field(description="Extension: peaks and 95th percentiles")


def _envelope(info: list[dict[str, Any]], summary: dict[str, Any]) -> dict[str, Any]:
    """The fields of an `InfoEnvelope` plus `summary`, in the same order."""
    return {"msg": "success", "code": 200, "info": info, "summary": summary}


def bandwidth_body(reply: MeteringReply, tz: str) -> dict[str, Any]:
    """A `BandwidthAnswer` as plain values."""
    info = [
        {"time": timefmt.to_wire(p.time, tz), "upbps": p.up_bps, "downbps": p.down_bps}
        for p in reply.columns.points(MeteringSeries.BANDWIDTH)
    ]
    s = reply.summary
    summary = {
        "points": s.buckets,
        "upBytes": s.up_bytes,
        "downBytes": s.down_bytes,
        "peakUpbps": s.peak_up_bps,
        "peakDownbps": s.peak_down_bps,
        "p95Upbps": s.p95_up_bps,
        "p95Downbps": s.p95_down_bps,
    }
    return _envelope(info, summary)


def resources_body(reply: MeteringReply, tz: str) -> dict[str, Any]:
    """A `ResourceAnswer` as plain values."""
    info = [
        {"time": timefmt.to_wire(p.time, tz), "cpu": p.cpu_cores, "memory": p.memory_mib}
        for p in reply.columns.points(MeteringSeries.RESOURCES)
    ]
    s = reply.summary
    summary = {
        "points": s.buckets,
        "peakCpu": s.peak_cpu_cores,
        "p95Cpu": s.p95_cpu_cores,
        "peakMemory": s.peak_memory_mib,
        "p95Memory": s.p95_memory_mib,
    }
    return _envelope(info, summary)
