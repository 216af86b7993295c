"""The node registry: heartbeats in, Ready/NotReady out."""
