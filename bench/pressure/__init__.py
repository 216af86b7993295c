"""Memory under hostile load (slow clients and concurrent uploads)."""
