"""Benchmark support: synthetic ground truth, manifests, scoring and tables (eval_benchmark.py, tests, benchmarks/)."""
