# Benchmarks: they print a table and write JSON and a PNG plot to bench/results/; nothing here is a
# test. Included from the top-level Makefile. See bench/README.md.

PYTHON ?= .venv/bin/python
BENCH_ARGS ?=

# --- Benchmarks
.PHONY: bench

# The plot needs matplotlib: the optional dependency group "bench", hash-checked (requirements/bench.txt).
$(VENV)/.installed-bench: $(VENV)/.installed pyproject.toml requirements/bench.txt
	$(BIN)/pip install --quiet --require-hashes -r requirements/bench.txt
	touch $@

bench: venv binaries $(VENV)/.installed-bench ## Benchmarks on a fresh local cluster: fire skew of 1,000 tasks vs a bare-client floor and the CronJob controller, API calls per run, RSS, restart (~13 min); BENCH_ARGS="--huge 10000" adds 10,000 tasks
	$(PYTHON) bench/fire.py $(BENCH_ARGS)
