-- Metering schema, applied by the metering service at every start (every statement is idempotent).
-- The same statements run on embedded chDB and on a ClickHouse server. Times are UTC.

CREATE DATABASE IF NOT EXISTS tingyu;

-- Raw samples as agents sent them: one row per sample id. Metering inserts only ids it has not
-- stored yet (recent ids in memory, redeliveries looked up: docs/metering.md); ReplacingMergeTree
-- on the id is the safety net for raw reads,
-- and the insert deduplication token makes a retried insert of the same batch a no-op.
CREATE TABLE IF NOT EXISTS tingyu.samples
(
    sample_id String,
    node_uuid LowCardinality(String),
    deploymentname LowCardinality(String),
    image LowCardinality(String),
    version LowCardinality(String),
    ts DateTime('UTC'),
    interval_s Float32,
    tx_bytes UInt64,
    rx_bytes UInt64,
    cpu_cores Float32,
    memory_mib Float32
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(ts)
ORDER BY (node_uuid, deploymentname, ts, sample_id)
TTL ts + INTERVAL 35 DAY
SETTINGS non_replicated_deduplication_window = 10000;

-- 5-minute rollups, one row per (bucket, machine, deployment) after merges. Sums only: rows of
-- one key can be added in any order, and queries always re-aggregate with sum().
CREATE TABLE IF NOT EXISTS tingyu.samples_5m
(
    bucket DateTime('UTC'),
    image LowCardinality(String),
    version LowCardinality(String),
    node_uuid LowCardinality(String),
    deploymentname LowCardinality(String),
    tx_bytes UInt64,
    rx_bytes UInt64,
    cpu_core_s Float64,
    memory_mib_s Float64,
    seconds Float64,
    samples UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toDate(bucket)
ORDER BY (image, version, bucket, node_uuid, deploymentname)
TTL bucket + INTERVAL 400 DAY
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS tingyu.samples_5m_mv TO tingyu.samples_5m AS
SELECT
    toStartOfFiveMinutes(ts) AS bucket,
    image,
    version,
    node_uuid,
    deploymentname,
    sum(tx_bytes) AS tx_bytes,
    sum(rx_bytes) AS rx_bytes,
    sum(cpu_cores * interval_s) AS cpu_core_s,
    sum(memory_mib * interval_s) AS memory_mib_s,
    sum(interval_s) AS seconds,
    count() AS samples
FROM tingyu.samples
GROUP BY bucket, image, version, node_uuid, deploymentname;

-- 5-minute bandwidth per (bucket, kind, image, version), without the machine and deployment:
-- bandwidth queries sum whole buckets, so they read a few rows per bucket here instead of one per
-- (machine, deployment) in samples_5m. `kind` is 'machine' for the machines' own samples (their
-- counted NICs, deploymentname = '') and 'container' otherwise. Fed from the raw insert like
-- samples_5m, with its own deduplication window, so a retried insert is dropped here as well.
-- An upgrade from a schema without it is backfilled once from samples_5m at start (rollups.py).
CREATE TABLE IF NOT EXISTS tingyu.bandwidth_5m
(
    bucket DateTime('UTC'),
    kind Enum8('machine' = 1, 'container' = 2),
    image LowCardinality(String),
    version LowCardinality(String),
    tx_bytes UInt64,
    rx_bytes UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toDate(bucket)
ORDER BY (kind, image, version, bucket)
TTL bucket + INTERVAL 400 DAY
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS tingyu.bandwidth_5m_mv TO tingyu.bandwidth_5m AS
SELECT
    toStartOfFiveMinutes(ts) AS bucket,
    if(deploymentname = '', 'machine', 'container') AS kind,
    image,
    version,
    sum(tx_bytes) AS tx_bytes,
    sum(rx_bytes) AS rx_bytes
FROM tingyu.samples
GROUP BY bucket, kind, image, version;

-- 5-minute CPU and memory per (scope, image, version, bucket), without the machine dimension:
-- what a resource query of that scope shows for the bucket, so it reads one row per bucket.
-- A container's CPU is averaged over the seconds it was sampled in the bucket, then summed; an
-- average cannot be added up insert by insert, so metering recomputes every bucket an insert
-- touched from samples_5m right after the insert (and before acking it): each recomputation is a
-- new row, the newest (`computed`) wins (argMax at query time, merges keep the newest).
-- `scope`: 'account' (machine samples), 'containers' (every container), 'image' (version = ''),
-- 'version'. An upgrade from a schema without it is backfilled once at start (rollups.py).
CREATE TABLE IF NOT EXISTS tingyu.resources_5m
(
    bucket DateTime('UTC'),
    scope Enum8('account' = 1, 'containers' = 2, 'image' = 3, 'version' = 4),
    image LowCardinality(String),
    version LowCardinality(String),
    cpu_cores Float64,
    memory_mib Float64,
    computed DateTime64(6, 'UTC')
)
ENGINE = ReplacingMergeTree(computed)
PARTITION BY toDate(bucket)
ORDER BY (scope, image, version, bucket)
TTL bucket + INTERVAL 400 DAY;

-- The raw insert's entrance: metering inserts sample batches here as agents published them (one
-- JSON line per batch, every sample already checked), and this view spreads each batch into one
-- `samples` row per sample, so no sample is decoded and encoded again in Python. A Null table
-- keeps nothing itself; the insert's deduplication token reaches `samples` and the views after it.
CREATE TABLE IF NOT EXISTS tingyu.samples_in
(
    batch_id String,
    node_uuid String,
    samples Array(Tuple(
        sample_id String,
        node_uuid String,
        deploymentname String,
        image String,
        version String,
        ts Float64,
        interval_s Float32,
        tx_bytes UInt64,
        rx_bytes UInt64,
        cpu_cores Float32,
        memory_mib Float32
    ))
)
ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS tingyu.samples_in_mv TO tingyu.samples AS
SELECT
    s.sample_id AS sample_id,
    s.node_uuid AS node_uuid,
    s.deploymentname AS deploymentname,
    s.image AS image,
    s.version AS version,
    toDateTime(toUInt32(s.ts), 'UTC') AS ts,
    s.interval_s AS interval_s,
    s.tx_bytes AS tx_bytes,
    s.rx_bytes AS rx_bytes,
    s.cpu_cores AS cpu_cores,
    s.memory_mib AS memory_mib
FROM tingyu.samples_in
ARRAY JOIN samples AS s;
