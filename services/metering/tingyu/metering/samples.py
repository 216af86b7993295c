"""Storing samples exactly once: drop ids already stored, then insert with a deduplication token."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable

from tingyu.common.models.metering import Sample
from tingyu.metering.store import ClickHouse

# The raw table's columns are the sample's own fields, by the same names (deploy/clickhouse/schema.sql).
COLUMNS = tuple(Sample.model_fields)

# The raw table is ordered by (node_uuid, deploymentname, ts, ...): the time and machine bounds
# keep this lookup to a few granules however large the table is.
STORED_IDS = """
SELECT sample_id FROM tingyu.samples
WHERE node_uuid IN {nodes:Array(String)}
  AND ts BETWEEN toDateTime({lo:UInt32}, 'UTC') AND toDateTime({hi:UInt32}, 'UTC')
  AND sample_id IN {ids:Array(String)}
"""


def unique(samples: Iterable[Sample]) -> list[Sample]:
    """One sample per id (the same batch may arrive twice within one insert)."""
    return list({sample.sample_id: sample for sample in samples}.values())


def insert_sql(samples: list[Sample]) -> str:
    """One INSERT with its rows inline (JSONEachRow) and a token naming exactly these ids.

    If the same insert is retried after a failure that hid its success, ClickHouse drops the
    block as a duplicate, and the materialized view is not fed a second time either.
    """
    token = hashlib.sha256("\n".join(sorted(s.sample_id for s in samples)).encode()).hexdigest()
    lines = "\n".join(json.dumps(row(sample), ensure_ascii=False) for sample in samples)
    return (
        f"INSERT INTO tingyu.samples ({', '.join(COLUMNS)}) "
        f"SETTINGS insert_deduplication_token = '{token}', "
        f"deduplicate_blocks_in_dependent_materialized_views = 1 "
        f"FORMAT JSONEachRow\n{lines}"
    )


def row(sample: Sample) -> dict[str, object]:
    """One raw-table row: every column, the time in whole seconds, byte counters never negative."""
    return sample.model_dump() | {
        "ts": int(sample.ts),
        "tx_bytes": max(sample.tx_bytes, 0),
        "rx_bytes": max(sample.rx_bytes, 0),
    }


async def store_samples(store: ClickHouse, samples: list[Sample]) -> int:
    """Insert the samples not stored yet; returns how many were new."""
    fresh = unique(samples)
    if not fresh:
        return 0
    stored = await store.rows(
        STORED_IDS,
        {
            "nodes": sorted({s.node_uuid for s in fresh}),
            "lo": math.floor(min(s.ts for s in fresh)),
            "hi": math.ceil(max(s.ts for s in fresh)),
            "ids": [s.sample_id for s in fresh],
        },
    )
    seen = {r[0] for r in stored}
    fresh = [s for s in fresh if s.sample_id not in seen]
    if fresh:
        await store.command(insert_sql(fresh))
    return len(fresh)
