"""Keeping the rollups in step across an upgrade: `bandwidth_5m` backfilled once from `samples_5m`.

Both rollups are fed by materialized views on the raw insert, but a view only sees inserts made
after it exists. A store created before `bandwidth_5m` has rollups only in `samples_5m`; at the
first start with the new schema the bandwidth rollup is empty, and is filled from them once,
before any sample is consumed (so no insert can land in both the copy and the view).
"""

from __future__ import annotations

import logging

from tingyu.metering.store import ClickHouse

log = logging.getLogger(__name__)

COUNT = "SELECT (SELECT count() FROM tingyu.bandwidth_5m), (SELECT count() FROM tingyu.samples_5m)"

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


async def backfill_bandwidth(store: ClickHouse) -> bool:
    """Fill an empty `bandwidth_5m` from `samples_5m`; True if it did (an upgrade)."""
    ((bandwidth_rows, rollup_rows),) = await store.rows(COUNT)
    if int(bandwidth_rows) or not int(rollup_rows):
        return False
    log.info("bandwidth_5m is empty: backfilling it from %s samples_5m rows", rollup_rows)
    await store.command(BACKFILL)
    return True
