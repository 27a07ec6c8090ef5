"""Benchmarks: `make bench` runs every suite of bench/__main__.py; results in bench/results/."""
