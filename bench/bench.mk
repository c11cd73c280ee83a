# Benchmarks: they print a table and write JSON to bench/results/; nothing here is a test.
# Included from the top-level Makefile. See bench/README.md.

PYTHON ?= .venv/bin/python
BENCH_ARGS ?=

# --- Benchmarks
.PHONY: bench

bench: venv binaries ## Run the benchmarks (fire skew, API calls per run, RSS, restart) on a fresh local cluster; BENCH_ARGS="--huge 10000" adds 10,000 tasks
	$(PYTHON) bench/fire.py $(BENCH_ARGS)
