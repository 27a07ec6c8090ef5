"""Benchmarks. `make bench` runs every module in SUITES and writes bench/results/<date>-<host>.json."""
