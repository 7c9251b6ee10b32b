"""Benchmarks of pipelines.balance against a one-process reference (see docs/BENCHMARKS.md)."""
