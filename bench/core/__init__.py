"""Benchmarks of the core loop."""
