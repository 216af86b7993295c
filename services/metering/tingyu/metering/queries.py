"""Range queries over the 5-minute rollups: the points and the billing summary, one SQL per series.

Per bucket, a figure is summed across every machine (and container) in scope first; peaks and
the 95th percentile are then taken over the buckets. Buckets without data count as 0, so the
percentile runs over every bucket the range touches (`n`), not only those with rows.
Both read rollups without the machine dimension, so a query costs its range, not the fleet:
bandwidth `bandwidth_5m`, CPU and memory `resources_5m`.
"""

from __future__ import annotations

from typing import Any

from tingyu.common.models.metering import (
    BUCKET_S,
    MeteringPoint,
    MeteringQuery,
    MeteringScope,
    MeteringSeries,
    MeteringSummary,
    bucket_range,
)
from tingyu.metering.store import ClickHouse

MACHINES = "kind = 'machine' AND image = '' AND version = ''"
CONTAINERS = "kind = 'container'"
OF_IMAGE = " AND image = {image:String}"
OF_VERSION = " AND version = {version:String}"
IN_RANGE = "bucket BETWEEN toDateTime({first:UInt32}, 'UTC') AND toDateTime({last:UInt32}, 'UTC')"

# Outer, shared by both series: arrays of the points (x, y per bucket); the padded, sorted copies
# give the billed (95th) values: 1-based index ceil(0.95 n) = intDiv(95 n + 99, 100), i.e. the
# top 5 % of buckets dropped.
SERIES = """
SELECT
    groupArray(b) AS times,
    groupArray(x) AS xs,
    groupArray(y) AS ys,
    sum(tx) AS up_bytes,
    sum(rx) AS down_bytes,
    toUInt32(intDiv({n:UInt32} * 95 + 99, 100)) AS k,
    arrayWithConstant(toUInt32(greatest(toInt64({n:UInt32}) - toInt64(length(xs)), 0)), 0.) AS zeros,
    arraySort(arrayConcat(xs, zeros))[k] AS p95_x,
    arraySort(arrayConcat(ys, zeros))[k] AS p95_y
FROM
({inner})
"""

# Bandwidth: whole buckets summed, so the machine-less rollup answers (a few rows per bucket);
# bytes become bits per second.
BANDWIDTH = """
    SELECT
        toUInt32(toUnixTimestamp(bucket)) AS b,
        toFloat64(sum(tx_bytes)) AS tx,
        toFloat64(sum(rx_bytes)) AS rx,
        tx * 8 / {bucket_s:UInt32} AS x,
        rx * 8 / {bucket_s:UInt32} AS y
    FROM tingyu.bandwidth_5m
    WHERE {range} AND {where}
    GROUP BY bucket
    ORDER BY bucket
"""

# Resources: the machine-less rollup holds each bucket's figure per scope (containers averaged
# over their sampled seconds, then summed: see rollups.py); the newest computation of a bucket wins.
RESOURCES = """
    SELECT
        toUInt32(toUnixTimestamp(bucket)) AS b,
        0. AS tx,
        0. AS rx,
        argMax(cpu_cores, computed) AS x,
        argMax(memory_mib, computed) AS y
    FROM tingyu.resources_5m
    WHERE {range} AND {where}
    GROUP BY bucket
    ORDER BY bucket
"""
ACCOUNT_SCOPE = "scope = 'account' AND image = '' AND version = ''"
CONTAINERS_SCOPE = "scope = 'containers' AND image = '' AND version = ''"
IMAGE_SCOPE = "scope = 'image' AND image = {image:String} AND version = ''"
VERSION_SCOPE = "scope = 'version' AND image = {image:String} AND version = {version:String}"


def resources_scope(query: MeteringQuery) -> str:
    """The `resources_5m` rows of the query's scope: one per bucket."""
    if query.scope == MeteringScope.ACCOUNT:
        return ACCOUNT_SCOPE
    if not query.image:
        return CONTAINERS_SCOPE
    return VERSION_SCOPE if query.version else IMAGE_SCOPE


def series_sql(query: MeteringQuery, series: MeteringSeries | None = None) -> str:
    """The SQL of one series for this query's scope (fixed fragments only; values are bound)."""
    series = series or query.series
    account = query.scope == MeteringScope.ACCOUNT
    if series == MeteringSeries.RESOURCES:
        inner, where = RESOURCES, resources_scope(query)
    else:
        inner, where = BANDWIDTH, MACHINES if account else CONTAINERS
        if not account:
            where += (OF_IMAGE if query.image else "") + (OF_VERSION if query.version else "")
    body = inner.replace("{range}", IN_RANGE).replace("{where}", where)
    return SERIES.replace("{inner}", body)


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


EVERY_SERIES = (MeteringSeries.BANDWIDTH, MeteringSeries.RESOURCES)


async def run_query(
    store: ClickHouse, query: MeteringQuery, series: tuple[MeteringSeries, ...] = EVERY_SERIES
) -> tuple[list[MeteringPoint], MeteringSummary]:
    """Every bucket of the range (empty ones as zeros) and the summary over them.

    Only the figures of `series` are computed (one SQL each); the others stay 0. The responder
    asks for the query's own series; the default fills every figure.
    """
    first, _, count = bucket_range(query.start, query.end)
    times = [first + i * BUCKET_S for i in range(count)]
    figures = {name: [0.0] * count for name in ("up", "down", "cpu", "mem")}
    summary = MeteringSummary(buckets=count)
    for one in series:
        rows = await store.rows(series_sql(query, one), series_params(query))
        (found, xs, ys, up_bytes, down_bytes, _k, _zeros, p95_x, p95_y) = rows[0]
        x_name, y_name = ("up", "down") if one == MeteringSeries.BANDWIDTH else ("cpu", "mem")
        for t, x, y in zip(found, xs, ys, strict=True):
            index = (int(t) - first) // BUCKET_S
            figures[x_name][index], figures[y_name][index] = x, y
        peak_x, peak_y = max(figures[x_name], default=0.0), max(figures[y_name], default=0.0)
        if one == MeteringSeries.BANDWIDTH:
            summary.up_bytes, summary.down_bytes = float(up_bytes or 0), float(down_bytes or 0)
            summary.peak_up_bps, summary.peak_down_bps = peak_x, peak_y
            summary.p95_up_bps, summary.p95_down_bps = float(p95_x), float(p95_y)
        else:
            summary.peak_cpu_cores, summary.peak_memory_mib = peak_x, peak_y
            summary.p95_cpu_cores, summary.p95_memory_mib = float(p95_x), float(p95_y)
    points = [
        MeteringPoint(time=t, up_bps=u, down_bps=d, cpu_cores=c, memory_mib=m)
        for t, u, d, c, m in zip(
            times, figures["up"], figures["down"], figures["cpu"], figures["mem"], strict=True
        )
    ]
    return points, summary
