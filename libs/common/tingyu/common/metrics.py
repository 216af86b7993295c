"""Every Prometheus metric of the platform, declared once, and the metrics port of a service.

All names start with `tingyu_`. A process registers only what it imports, in the default registry;
the API serves it at `/metrics` on its own port, every other service on a port of its own
(`TINGYU_<SERVICE>_METRICS_PORT`, 0 = off) started by the service skeleton. docs/metrics.md lists
them with what each alert reads.
"""

from __future__ import annotations

import logging

from prometheus_client import Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

# --- API ------------------------------------------------------------------------------------------
API_REQUESTS = Counter(
    "tingyu_api_requests_total", "HTTP requests answered, by route template and code", ["route", "code"]
)
API_LATENCY = Histogram(
    "tingyu_api_request_seconds",
    "Time to answer an HTTP request, by route template and code",
    ["route", "code"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
UPLOAD_BYTES = Counter("tingyu_upload_bytes_total", "Bytes of image tars received by the API")
UPLOAD_SECONDS = Histogram(
    "tingyu_upload_seconds",
    "Time to receive and store one image upload",
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900),
)

# --- jobs (JobStore) ------------------------------------------------------------------------------
COMMANDS = Counter("tingyu_commands_accepted_total", "Commands queued with their job, by kind", ["kind"])
JOBS = Counter(
    "tingyu_jobs_total", "Jobs that reached a state (queued ... failed), by kind and state", ["kind", "state"]
)

# --- consumers (bus.consumers) --------------------------------------------------------------------
CONSUMER_PENDING = Gauge(
    "tingyu_consumer_pending", "Messages not yet delivered to a durable consumer", ["consumer"]
)
CONSUMER_ACK_PENDING = Gauge(
    "tingyu_consumer_ack_pending", "Messages delivered to a consumer and not yet acked", ["consumer"]
)
CONSUMER_REDELIVERED = Counter(
    "tingyu_consumer_redelivered_total", "Deliveries of a message delivered before", ["consumer"]
)
CONSUMER_HANDLED = Counter(
    "tingyu_consumer_messages_total",
    "Messages settled by a consumer, by outcome (acked, retried, dead)",
    ["consumer", "outcome"],
)
COMMAND_WAIT = Histogram(
    "tingyu_command_wait_seconds",
    "Time from a command's acceptance or a report's making until its consumer first starts on it",
    ["consumer"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)

# --- stores (bus.stores) -------------------------------------------------------------------------
STORE_SECONDS = Histogram(
    "tingyu_store_seconds",
    "Time of one request to a key/value bucket, by bucket and operation (get, put, create, update, "
    "delete, purge, info, snapshot, list), failed ones included",
    ["bucket", "op"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

# --- NATS connection (bus.connection) -------------------------------------------------------------
RPC_EXPIRED = Counter(
    "tingyu_rpc_expired_total",
    "Requests dropped unanswered by a responder: they waited for their turn longer than their "
    "askers wait, by the subject the responder answers",
    ["subject"],
)
RPC_BUSY = Counter(
    "tingyu_rpc_busy_total",
    "Requests a responder answered 'busy' (TY0010) at once instead of queueing them: the oldest "
    "request waiting for its turn had waited half as long as askers wait, by subject",
    ["subject"],
)
NATS_RECONNECTS = Counter("tingyu_nats_reconnects_total", "Reconnections to NATS after a lost connection")
NATS_DISCONNECTS = Counter("tingyu_nats_disconnects_total", "Connections to NATS lost (reconnecting)")

# --- job log lines (joblog) ----------------------------------------------------------------------
JOBLOG_LINES = Counter("tingyu_joblog_lines_total", "Log lines naming a job sent to TY_JOBLOG")
JOBLOG_DROPPED = Counter(
    "tingyu_joblog_dropped_total",
    "Log lines naming a job not sent to TY_JOBLOG, by reason (full: the queue was; nats: it was down)",
    ["reason"],
)

# --- nodes ----------------------------------------------------------------------------------------
HEARTBEATS = Counter("tingyu_heartbeats_total", "Heartbeats received (rate() gives heartbeats per second)")
MACHINES = Gauge("tingyu_machines", "Machines known to the node registry, by status", ["status"])

# --- rollouts (deployer) --------------------------------------------------------------------------
ROLLOUT_MACHINES = Gauge(
    "tingyu_rollout_containers",
    "Containers of a running rollout by progress (target, updated, inflight, failed, waiting)",
    ["rollout", "progress"],
)
ROLLOUTS_ACTIVE = Gauge("tingyu_rollouts_active", "Rollouts the leader is driving")

# --- metering -------------------------------------------------------------------------------------
SAMPLES = Counter(
    "tingyu_metering_samples_total", "Samples off the stream, by outcome (ingested, dropped)", ["outcome"]
)
INSERT_SECONDS = Histogram(
    "tingyu_metering_insert_seconds",
    "Time of one batch insert into ClickHouse",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
METERING_LAG = Gauge(
    "tingyu_metering_lag_seconds", "Age of the newest sample of the last stored batch when it was stored"
)


# --- agent ----------------------------------------------------------------------------------------
AGENT_SAMPLES_BUFFERED = Gauge(
    "tingyu_agent_sample_batches_buffered", "Sample batches the agent holds until NATS takes them"
)
AGENT_SAMPLES_DROPPED = Counter(
    "tingyu_agent_sample_batches_dropped_total", "Sample batches dropped unsent because the buffer was full"
)


def serve(port: int, host: str = "127.0.0.1") -> int:
    """Expose this process's metrics on `host:port` (a thread of prometheus-client); 0 = off.
    Returns the port (0 when off)."""
    if port <= 0:
        return 0
    try:
        start_http_server(port, addr=host)
    except OSError as exc:  # the service works without its metrics; say so loudly
        log.error("metrics port %s:%d not opened (%s); running without metrics", host, port, exc)
        return 0
    log.info("metrics on http://%s:%d/metrics", host, port)
    return port
