"""Keeping the machine-less rollups in step: `resources_5m` recomputed for the buckets an insert
touched, and both `bandwidth_5m` and `resources_5m` backfilled once from `samples_5m` on upgrade.

`bandwidth_5m` holds sums, so a materialized view keeps it. `resources_5m` holds, per bucket and
scope, the sum over containers of each container's CPU and memory averaged over the seconds it was
sampled in the bucket: an average of samples spread over several inserts cannot be added up insert
by insert, so after each insert the touched buckets are recomputed from `samples_5m` (a few rows
per container and bucket, read through the primary key) and written as new rows; the newest wins.

A view only sees inserts made after it exists. A store created before a rollup has rows only in
`samples_5m`; at the first start with the new schema the empty rollup is filled from them once,
before any sample is consumed (so no insert can land in both the copy and the view).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from tingyu.common.models.metering import BUCKET_S
from tingyu.metering.store import ClickHouse

log = logging.getLogger(__name__)

COUNT = "SELECT (SELECT count() FROM tingyu.{table}), (SELECT count() FROM tingyu.samples_5m)"

BACKFILL = """
INSERT INTO tingyu.bandwidth_5m (bucket, kind, image, version, tx_bytes, rx_bytes)
SELECT
    bucket,
    if(deploymentname = '', 'machine', 'container') AS kind,
    image,
    version,
    sum(tx_bytes),
    sum(rx_bytes)
FROM tingyu.samples_5m
GROUP BY bucket, kind, image, version
"""

# Every per-(machine, deployment) row counts in the scopes a query can ask for: a machine's own
# sample in 'account'; a container in 'containers', in 'image' of its image and in 'version' of
# its image and version. Per scope and container: averaged over its sampled seconds; then summed.
RECOMPUTE = """
INSERT INTO tingyu.resources_5m (bucket, scope, image, version, cpu_cores, memory_mib, computed)
SELECT
    bucket,
    scope,
    img,
    ver,
    sum(if(secs > 0, core_s / secs, 0.)),
    sum(if(secs > 0, mib_s / secs, 0.)),
    now64(6, 'UTC')
FROM
(
    SELECT
        bucket,
        key.1 AS scope,
        key.2 AS img,
        key.3 AS ver,
        sum(cpu_core_s) AS core_s,
        sum(memory_mib_s) AS mib_s,
        sum(seconds) AS secs
    FROM tingyu.samples_5m
    ARRAY JOIN multiIf(
        deploymentname != '',
        [
            ('containers', '', ''),
            ('image', toString(image), ''),
            ('version', toString(image), toString(version))
        ],
        image = '' AND version = '',
        [('account', '', '')],
        []
    ) AS key
    WHERE bucket BETWEEN toDateTime({lo:UInt32}, 'UTC') AND toDateTime({hi:UInt32}, 'UTC') {only}
    GROUP BY bucket, scope, img, ver, node_uuid, deploymentname
)
GROUP BY bucket, scope, img, ver
"""
ONLY = "AND toUInt32(bucket) IN {buckets:Array(UInt32)}"

DAYS = """
SELECT DISTINCT toUInt32(toUnixTimestamp(toStartOfDay(bucket))) AS day
FROM tingyu.samples_5m
ORDER BY day
"""


async def recompute_resources(store: ClickHouse, buckets: Iterable[int]) -> None:
    """Rewrite `resources_5m` for these bucket starts (epoch seconds) from `samples_5m`."""
    wanted = sorted({int(b) // BUCKET_S * BUCKET_S for b in buckets})
    if not wanted:
        return
    sql = RECOMPUTE.replace("{only}", ONLY)
    await store.command(sql, {"lo": wanted[0], "hi": wanted[-1], "buckets": wanted})


async def _empty(store: ClickHouse, table: str) -> bool:
    """True when `table` has no rows while `samples_5m` has: a store from before the table."""
    ((rows, rollup_rows),) = await store.rows(COUNT.replace("{table}", table))
    return not int(rows) and bool(int(rollup_rows))


async def backfill_bandwidth(store: ClickHouse) -> bool:
    """Fill an empty `bandwidth_5m` from `samples_5m`; True if it did (an upgrade)."""
    if not await _empty(store, "bandwidth_5m"):
        return False
    log.info("bandwidth_5m is empty: backfilling it from samples_5m")
    await store.command(BACKFILL)
    return True


async def backfill_resources(store: ClickHouse) -> bool:
    """Fill an empty `resources_5m` from `samples_5m`, a day at a time; True if it did (an upgrade)."""
    if not await _empty(store, "resources_5m"):
        return False
    days = [int(day) for (day,) in await store.rows(DAYS)]
    log.info("resources_5m is empty: backfilling %d days from samples_5m", len(days))
    sql = RECOMPUTE.replace("{only}", "")
    for day in days:
        await store.command(sql, {"lo": day, "hi": day + 86400 - 1})
    return True


async def backfill(store: ClickHouse) -> None:
    """Every rollup an upgrade left empty, filled from `samples_5m`."""
    await backfill_bandwidth(store)
    await backfill_resources(store)
