"""Metering benchmark: ingest via NATS and metering vs raw chDB inserts; p95 via the API vs SQL."""
