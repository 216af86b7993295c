"""Storing samples exactly once: drop ids already stored, then insert with a deduplication token."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable

from tingyu.common.models.metering import Sample
from tingyu.metering.store import Store

COLUMNS = (
    "sample_id",
    "node_uuid",
    "deploymentname",
    "image",
    "version",
    "ts",
    "interval_s",
    "tx_bytes",
    "rx_bytes",
    "cpu_cores",
    "memory_mib",
)

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
    return {
        "sample_id": sample.sample_id,
        "node_uuid": sample.node_uuid,
        "deploymentname": sample.deploymentname,
        "image": sample.image,
        "version": sample.version,
        "ts": int(sample.ts),
        "interval_s": sample.interval_s,
        "tx_bytes": max(sample.tx_bytes, 0),
        "rx_bytes": max(sample.rx_bytes, 0),
        "cpu_cores": sample.cpu_cores,
        "memory_mib": sample.memory_mib,
    }


async def store_samples(store: Store, samples: list[Sample]) -> int:
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
