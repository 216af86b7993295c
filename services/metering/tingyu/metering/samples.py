"""Checking samples one by one, then storing them exactly once without reading the store per batch.

A sample id is stored once when it comes again: within one insert (`unique`); among the last
`TINGYU_METERING_RECENT_IDS` ids stored (`RecentIds`, in memory: a batch published again under
another message id); in a message JetStream delivers again (after a nak, a crash between insert
and ack, a lost ack), whose ids are looked up in the raw table (`stored_ids`) — the only read,
and only for redeliveries. A retried INSERT of the same rows carries the same deduplication token.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated

from pydantic import Field, TypeAdapter, ValidationError

from tingyu.common.models.base import Message
from tingyu.common.models.metering import RawSampleBatch, Sample
from tingyu.metering.rollups import recompute_resources
from tingyu.metering.store import ClickHouse

MAX_COUNTER = 2**63 - 1  # bytes columns are UInt64; JSON integers past this do not fit safely
MAX_INTERVAL_S = 3600.0
MAX_CPU_CORES = 4096.0
MAX_MEMORY_MIB = float(2**30)  # 1 PiB
MAX_TEXT = 256


@dataclass(frozen=True)
class Window:
    """The sample times metering accepts: not older than the raw table keeps, not far in the future."""

    now: float
    max_age_s: float
    max_ahead_s: float


Text = Annotated[str, Field(max_length=MAX_TEXT)]
Finite = Annotated[float, Field(allow_inf_nan=False)]
Counter64 = Annotated[int, Field(ge=0, le=MAX_COUNTER)]


class CheckedSample(Sample):
    """A sample whose fields pass every rule of `problem` that needs nothing but the sample, checked
    while the batch decodes (in pydantic-core, not per sample in Python)."""

    sample_id: Annotated[str, Field(min_length=1, max_length=MAX_TEXT)]
    node_uuid: Text
    deploymentname: Text = ""
    image: Text = ""
    version: Text = ""
    ts: Finite
    interval_s: Annotated[float, Field(allow_inf_nan=False, gt=0, le=MAX_INTERVAL_S)]
    tx_bytes: Counter64 = 0
    rx_bytes: Counter64 = 0
    cpu_cores: Annotated[float, Field(allow_inf_nan=False, ge=0, le=MAX_CPU_CORES)] = 0.0
    memory_mib: Annotated[float, Field(allow_inf_nan=False, ge=0, le=MAX_MEMORY_MIB)] = 0.0


class CheckedBatch(Message):
    """A batch as metering decodes it first: when any sample breaks a rule, it does not decode,
    and the batch is decoded again as a `RawSampleBatch` to drop that sample alone."""

    batch_id: str
    node_uuid: str
    samples: list[CheckedSample] = Field(default_factory=list)


def all_accepted(batch: CheckedBatch, window: Window) -> list[Sample] | None:
    """The batch's samples when every one is good (the rules `CheckedSample` could not check:
    its machine's, within the time window); None when one is not (then see `accepted`)."""
    node, lo, hi = batch.node_uuid, window.now - window.max_age_s, window.now + window.max_ahead_s
    for sample in batch.samples:
        if sample.node_uuid != node or not lo <= sample.ts <= hi:
            return None
    return list(batch.samples)


def accepted(batch: RawSampleBatch, window: Window) -> tuple[list[Sample], Counter[str]]:
    """The batch's good samples, and how many were dropped for each reason."""
    good: list[Sample] = []
    dropped: Counter[str] = Counter()
    for raw in batch.samples:
        try:
            sample = Sample.model_validate(raw)
        except ValidationError:
            dropped["malformed"] += 1
            continue
        reason = problem(sample, batch.node_uuid, window)
        if reason:
            dropped[reason] += 1
        else:
            good.append(sample)
    return good, dropped


def problem(sample: Sample, node_uuid: str, window: Window) -> str:  # noqa: PLR0911 (one return per rule)
    """Why a sample cannot be stored ("" when it can): one bad sample must never stop billing.

    Checked in this order, each rule a plain comparison: this runs for every sample ingested.
    """
    isfinite = math.isfinite
    if not (
        isfinite(sample.ts)
        and isfinite(sample.interval_s)
        and isfinite(sample.cpu_cores)
        and isfinite(sample.memory_mib)
    ):
        return "not a finite number"
    if sample.node_uuid != node_uuid:
        return "another machine's sample"
    texts = (sample.sample_id, sample.node_uuid, sample.deploymentname, sample.image, sample.version)
    if not sample.sample_id or max(map(len, texts)) > MAX_TEXT:
        return "bad id or name"
    if not window.now - window.max_age_s <= sample.ts <= window.now + window.max_ahead_s:
        return "time out of range"
    if not 0 < sample.interval_s <= MAX_INTERVAL_S:
        return "interval out of range"
    if not (0 <= sample.tx_bytes <= MAX_COUNTER and 0 <= sample.rx_bytes <= MAX_COUNTER):
        return "counter out of range"
    if not (0 <= sample.cpu_cores <= MAX_CPU_CORES and 0 <= sample.memory_mib <= MAX_MEMORY_MIB):
        return "usage out of range"
    return ""


# The raw table's columns are the sample's own fields, by the same names (deploy/clickhouse/schema.sql).
COLUMNS = tuple(Sample.model_fields)
ROWS = TypeAdapter(list[Sample])  # serialised by pydantic-core: no Python per row

# The raw table is ordered by (node_uuid, deploymentname, ts, ...): the time and machine bounds
# keep this lookup to a few granules however large the table is. Only redelivered messages need it.
STORED_IDS = """
SELECT sample_id FROM tingyu.samples
WHERE node_uuid IN {nodes:Array(String)}
  AND ts BETWEEN toDateTime({lo:UInt32}, 'UTC') AND toDateTime({hi:UInt32}, 'UTC')
  AND sample_id IN {ids:Array(String)}
"""


def unique(samples: list[Sample]) -> list[Sample]:
    """One sample per id (the same batch may arrive twice within one insert)."""
    if len({sample.sample_id for sample in samples}) == len(samples):
        return samples  # the common case, checked without building a second list
    return list({sample.sample_id: sample for sample in samples}.values())


def insert_sql(samples: list[Sample]) -> str:
    """One INSERT with its rows inline (a JSONEachRow array) and a token naming exactly these ids.

    If the same insert is retried after a failure that hid its success, ClickHouse drops the
    block as a duplicate, and the materialized views are not fed a second time either. Every
    sample passed `problem`, so its fields fit their columns as they are (`ts` is truncated to
    whole seconds by ClickHouse, as `int()` would).
    """
    token = hashlib.sha256("\n".join(sorted(s.sample_id for s in samples)).encode()).hexdigest()
    rows = ROWS.dump_json(samples).decode()
    return (
        f"INSERT INTO tingyu.samples ({', '.join(COLUMNS)}) "
        f"SETTINGS insert_deduplication_token = '{token}', "
        f"deduplicate_blocks_in_dependent_materialized_views = 1 "
        f"FORMAT JSONEachRow\n{rows}"
    )


class RecentIds:
    """The ids of at least the last `size` / 2 and at most the last `size` samples stored.

    Two generations of sets: ids go into the newer, and when it holds `size` / 2 it becomes the
    older and the previous older one is forgotten. Every operation is one set operation on a
    whole insert (no Python per id), and memory stays bounded.
    """

    def __init__(self, size: int) -> None:
        self.half = max(size // 2, 1)
        self.newer: set[str] = set()
        self.older: set[str] = set()

    def __contains__(self, sample_id: object) -> bool:
        return sample_id in self.newer or sample_id in self.older

    def __len__(self) -> int:
        return len(self.newer | self.older)

    def among(self, ids: list[str]) -> set[str]:
        """Which of these ids are remembered."""
        return self.newer.intersection(ids) | self.older.intersection(ids)

    def add(self, ids: Iterable[str]) -> None:
        self.newer.update(ids)
        if len(self.newer) >= self.half:
            self.older, self.newer = self.newer, set()


async def stored_ids(store: ClickHouse, samples: list[Sample]) -> set[str]:
    """Which of these samples' ids the raw table holds already (for a redelivered message)."""
    if not samples:
        return set()
    rows = await store.rows(
        STORED_IDS,
        {
            "nodes": sorted({s.node_uuid for s in samples}),
            "lo": math.floor(min(s.ts for s in samples)),
            "hi": math.ceil(max(s.ts for s in samples)),
            "ids": [s.sample_id for s in samples],
        },
    )
    return {str(r[0]) for r in rows}


async def insert_samples(store: ClickHouse, samples: list[Sample]) -> int:
    """Insert the samples (one per id) in one INSERT; returns how many. Which are new is the
    caller's decision; the resource rollup is not recomputed here (see `store_samples`)."""
    fresh = unique(samples)
    if fresh:
        await store.command(insert_sql(fresh))
    return len(fresh)


async def store_samples(store: ClickHouse, samples: list[Sample]) -> int:
    """Insert the samples, then recompute the resource rollup of the buckets they touch."""
    inserted = await insert_samples(store, samples)
    await recompute_resources(store, {int(s.ts) for s in samples})
    return inserted
