"""Corral's benchmarks: `python -m bench.run [--quick]` (or `make bench`) writes bench/RESULTS.md."""
