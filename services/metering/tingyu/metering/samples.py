"""Checking samples one by one, then storing them exactly once without reading the store per batch.

A sample id is stored once when it comes again: within one insert (`unique`); among the last
`TINGYU_METERING_RECENT_IDS` ids stored (`RecentIds`, in memory: a batch published again under
another message id); in a message JetStream delivers again (after a nak, a crash between insert
and ack, a lost ack), whose ids are looked up in the raw table (`stored_ids`) — the only read,
and only for redeliveries. A retried INSERT of the same rows carries the same deduplication token.

Storing costs no Python per sample: a batch whose every sample passes the rules is inserted as the
JSON its agent published (one line per batch into `tingyu.samples_in`, a Null table whose view
spreads it into `tingyu.samples`), so chDB parses it once and nothing is encoded again. The rules
are checked by one compiled decoder over the whole batch (`fast_accepted`), strict enough that
what passes is exactly what ClickHouse reads; anything else takes the per-sample path
(`accepted`), whose good samples are encoded again as such a line.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated

import msgspec
from pydantic import ValidationError

from tingyu.common.models.metering import RawSampleBatch, Sample, SampleBatch
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


Text = Annotated[str, msgspec.Meta(max_length=MAX_TEXT)]
Counter64 = Annotated[int, msgspec.Meta(ge=0, le=MAX_COUNTER)]


class CheckedSample(msgspec.Struct):
    """A sample as the fast path reads it: every rule of `problem` that needs nothing but the
    sample, checked by msgspec's compiled decoder while the batch decodes (in C, about a third of
    pydantic-core's time for these batches). Strict (JSON strings for text, JSON integers for
    counters, JSON numbers for the rest; standard JSON has no `NaN`, and an infinite time falls out
    of the window), so a batch that passes is stored from its own bytes and ClickHouse reads the
    same values; anything looser goes the per-sample way. Unknown fields are ignored."""

    sample_id: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TEXT)]
    node_uuid: Text
    ts: float
    interval_s: Annotated[float, msgspec.Meta(gt=0, le=MAX_INTERVAL_S)]
    deploymentname: Text = ""
    image: Text = ""
    version: Text = ""
    tx_bytes: Counter64 = 0
    rx_bytes: Counter64 = 0
    cpu_cores: Annotated[float, msgspec.Meta(ge=0, le=MAX_CPU_CORES)] = 0.0
    memory_mib: Annotated[float, msgspec.Meta(ge=0, le=MAX_MEMORY_MIB)] = 0.0


class CheckedBatch(msgspec.Struct):
    """A batch as metering decodes it first: when any sample breaks a rule, it does not decode,
    and the batch is decoded again as a `RawSampleBatch` to drop that sample alone."""

    batch_id: str
    node_uuid: str
    samples: list[CheckedSample]


CHECKED = msgspec.json.Decoder(CheckedBatch)


@dataclass(frozen=True)
class Good:
    """A message's samples that may be stored: their ids and times, and the JSON line (one sample
    batch holding exactly them) that the raw insert reads."""

    node_uuid: str
    ids: list[str]
    times: list[float]
    line: bytes

    @classmethod
    def of(cls, batch_id: str, node_uuid: str, samples: list[Sample]) -> Good:
        """These samples, encoded again as one batch line."""
        line = SampleBatch(batch_id=batch_id, node_uuid=node_uuid, samples=samples).to_bytes()
        return cls(node_uuid, [s.sample_id for s in samples], [s.ts for s in samples], line)

    def samples(self) -> list[Sample]:
        """The samples themselves (decoded again: only for the rare paths that need them)."""
        return SampleBatch.from_bytes(self.line).samples

    def normalised(self) -> Good:
        """The same samples as pydantic encodes them, for an insert that failed on the agent's bytes."""
        batch = SampleBatch.from_bytes(self.line)
        return Good.of(batch.batch_id, batch.node_uuid, batch.samples)


def fast_accepted(data: bytes, window: Window) -> Good | None:
    """The batch's samples when every one is good (checked batch-wide, then the rules the
    decoder cannot check: its machine's, within the time window); None when one is not, or the
    batch is not strictly what the agent sends (then see `accepted`)."""
    try:
        batch = CHECKED.decode(data)
    except msgspec.DecodeError:  # a rule broken, or JSON looser than what agents send
        return None
    node, samples = batch.node_uuid, batch.samples
    times = [sample.ts for sample in samples]
    if times and not (
        window.now - window.max_age_s <= min(times) and max(times) <= window.now + window.max_ahead_s
    ):
        return None
    if any(sample.node_uuid != node for sample in samples):
        return None
    # A newline can only be whitespace between JSON tokens (in a string it is escaped): one line each.
    line = data.replace(b"\n", b" ") if b"\n" in data else data
    return Good(node, [sample.sample_id for sample in samples], times, line)


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


# The raw table is ordered by (node_uuid, deploymentname, ts, ...): the time and machine bounds
# keep this lookup to a few granules however large the table is. Only redelivered messages need it.
STORED_IDS = """
SELECT sample_id FROM tingyu.samples
WHERE node_uuid IN {nodes:Array(String)}
  AND ts BETWEEN toDateTime({lo:UInt32}, 'UTC') AND toDateTime({hi:UInt32}, 'UTC')
  AND sample_id IN {ids:Array(String)}
"""


def distinct(goods: list[Good], skip: set[str]) -> list[Good]:
    """The messages' samples without those in `skip` and without a second of one id (the same batch
    may arrive twice within one insert). Only messages that lose a sample are encoded again."""
    ids = [i for good in goods for i in good.ids]
    if not skip and len(set(ids)) == len(ids):
        return goods  # the common case, checked without touching a message
    seen = set(skip)
    out = []
    for good in goods:
        if seen.isdisjoint(good.ids) and len(set(good.ids)) == len(good.ids):
            seen.update(good.ids)
            out.append(good)
            continue
        batch = SampleBatch.from_bytes(good.line)
        kept = []
        for sample in batch.samples:
            if sample.sample_id not in seen:
                seen.add(sample.sample_id)
                kept.append(sample)
        if kept:
            out.append(Good.of(batch.batch_id, batch.node_uuid, kept))
    return out


def lines_sql(goods: list[Good]) -> str:
    """One INSERT with its batches inline (a JSONEachRow line each) and a token naming exactly
    their sample ids.

    If the same insert is retried after a failure that hid its success, ClickHouse drops the
    block as a duplicate, and the materialized views are not fed a second time either. Every
    sample passed the rules, so its fields fit their columns as they are (`ts` is truncated to
    whole seconds by the view, as `int()` would).
    """
    # In message order: an insert is only ever retried as the same messages in the same order.
    token = hashlib.sha256("\n".join(i for good in goods for i in good.ids).encode()).hexdigest()
    rows = b"\n".join(good.line for good in goods).decode()
    return (
        "INSERT INTO tingyu.samples_in "
        f"SETTINGS insert_deduplication_token = '{token}', "
        "deduplicate_blocks_in_dependent_materialized_views = 1, "
        "input_format_skip_unknown_fields = 1, "
        # A key named twice fails the insert (then each message is stored as the checks read it):
        # otherwise ClickHouse would read a top-level key's first value where the checks read its last.
        "input_format_json_ignore_unnecessary_fields = 0 "
        f"FORMAT JSONEachRow\n{rows}"
    )


def insert_sql(samples: list[Sample]) -> str:
    """`lines_sql` of samples given one by one (as one batch line)."""
    return lines_sql([Good.of("", "", samples)])


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


async def insert_goods(store: ClickHouse, goods: list[Good]) -> int:
    """Insert these messages' samples in one INSERT; returns how many. Which are new is the
    caller's decision; the resource rollup is not recomputed here (see `store_samples`)."""
    count = sum(len(good.ids) for good in goods)
    if count:
        await store.command(lines_sql([good for good in goods if good.ids]))
    return count


async def store_samples(store: ClickHouse, samples: list[Sample]) -> int:
    """Insert the samples (one per id), then recompute the resource rollup of the buckets they touch."""
    inserted = await insert_goods(store, distinct([Good.of("", "", samples)], set()))
    await recompute_resources(store, {int(s.ts) for s in samples})
    return inserted
