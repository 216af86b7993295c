"""Canary rollouts: a consumer that records what to roll out, and a leader loop that does it in batches."""
