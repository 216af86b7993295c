"""Metering: stores agents' samples in ClickHouse (chDB embedded, or a server) and answers range queries."""
