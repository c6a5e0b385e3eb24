"""Benchmarks: proxy overhead, routing quality (simulator), deploy time. See docs/benchmarks.md."""
