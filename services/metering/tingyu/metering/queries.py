"""Range queries over the 5-minute rollups: the points and the billing summary, in one SQL.

Per bucket, a figure is summed across every machine (and container) in scope first; peaks and
the 95th percentile are then taken over the buckets. Buckets without data count as 0, so the
percentile runs over every bucket the range touches (`n`), not only those with rows.
"""

from __future__ import annotations

from typing import Any

from tingyu.common.models.metering import (
    BUCKET_S,
    MeteringPoint,
    MeteringQuery,
    MeteringScope,
    MeteringSummary,
    bucket_range,
)
from tingyu.metering.store import Store

ACCOUNT = "image = '' AND version = '' AND deploymentname = ''"
CONTAINERS = "deploymentname != ''"
OF_IMAGE = " AND image = {image:String}"
OF_VERSION = " AND version = {version:String}"

# Inner: one row per (bucket, machine, deployment). CPU and memory are averaged over the time
# each container was sampled in the bucket, then summed; bytes become bits per second.
# Outer: arrays of the points; the padded, sorted copies give the billed (95th) values:
# 1-based index ceil(0.95 n) = intDiv(95 n + 99, 100), i.e. the top 5 % of buckets dropped.
SERIES = """
SELECT
    groupArray(b) AS times,
    groupArray(up) AS ups,
    groupArray(down) AS downs,
    groupArray(cpu) AS cpus,
    groupArray(mem) AS mems,
    sum(tx) AS up_bytes,
    sum(rx) AS down_bytes,
    toUInt32(intDiv({n:UInt32} * 95 + 99, 100)) AS k,
    arrayWithConstant(toUInt32(greatest(toInt64({n:UInt32}) - toInt64(length(ups)), 0)), 0.) AS zeros,
    arraySort(arrayConcat(ups, zeros))[k] AS p95_up,
    arraySort(arrayConcat(downs, zeros))[k] AS p95_down,
    arraySort(arrayConcat(cpus, zeros))[k] AS p95_cpu,
    arraySort(arrayConcat(mems, zeros))[k] AS p95_mem
FROM
(
    SELECT
        toUInt32(toUnixTimestamp(bucket)) AS b,
        toFloat64(sum(tx_sum)) AS tx,
        toFloat64(sum(rx_sum)) AS rx,
        tx * 8 / {bucket_s:UInt32} AS up,
        rx * 8 / {bucket_s:UInt32} AS down,
        sum(if(secs > 0, core_s / secs, 0.)) AS cpu,
        sum(if(secs > 0, mib_s / secs, 0.)) AS mem
    FROM
    (
        SELECT
            bucket,
            sum(tx_bytes) AS tx_sum,
            sum(rx_bytes) AS rx_sum,
            sum(cpu_core_s) AS core_s,
            sum(memory_mib_s) AS mib_s,
            sum(seconds) AS secs
        FROM tingyu.samples_5m
        WHERE bucket BETWEEN toDateTime({first:UInt32}, 'UTC') AND toDateTime({last:UInt32}, 'UTC')
          AND {where}
        GROUP BY bucket, node_uuid, deploymentname
    )
    GROUP BY bucket
    ORDER BY bucket
)
"""


def series_sql(query: MeteringQuery) -> str:
    """The SQL for this query's scope (fixed fragments only; values are bound parameters)."""
    if query.scope == MeteringScope.ACCOUNT:
        where = ACCOUNT
    else:
        where = CONTAINERS + (OF_IMAGE if query.image else "") + (OF_VERSION if query.version else "")
    return SERIES.replace("{where}", where)


def series_params(query: MeteringQuery) -> dict[str, Any]:
    first, last, count = bucket_range(query.start, query.end)
    return {
        "first": first,
        "last": last,
        "n": count,
        "bucket_s": BUCKET_S,
        "image": query.image,
        "version": query.version,
    }


async def run_query(store: Store, query: MeteringQuery) -> tuple[list[MeteringPoint], MeteringSummary]:
    """Every bucket of the range (empty ones as zeros) and the summary over them."""
    first, _, count = bucket_range(query.start, query.end)
    rows = await store.rows(series_sql(query), series_params(query))
    (times, ups, downs, cpus, mems, up_bytes, down_bytes, *_rest) = rows[0]
    p95_up, p95_down, p95_cpu, p95_mem = (float(v) for v in rows[0][-4:])
    found = {
        int(t): MeteringPoint(time=int(t), up_bps=u, down_bps=d, cpu_cores=c, memory_mib=m)
        for t, u, d, c, m in zip(times, ups, downs, cpus, mems, strict=True)
    }
    points = [
        found.get(first + i * BUCKET_S) or MeteringPoint(time=first + i * BUCKET_S) for i in range(count)
    ]
    summary = MeteringSummary(
        buckets=count,
        up_bytes=float(up_bytes or 0),
        down_bytes=float(down_bytes or 0),
        peak_up_bps=max((p.up_bps for p in points), default=0.0),
        peak_down_bps=max((p.down_bps for p in points), default=0.0),
        p95_up_bps=p95_up,
        p95_down_bps=p95_down,
        peak_cpu_cores=max((p.cpu_cores for p in points), default=0.0),
        p95_cpu_cores=p95_cpu,
        peak_memory_mib=max((p.memory_mib for p in points), default=0.0),
        p95_memory_mib=p95_mem,
    )
    return points, summary
