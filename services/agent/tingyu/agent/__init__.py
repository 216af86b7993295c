"""The edge agent: one per machine; heartbeats, reads its desired containers and makes them so."""
