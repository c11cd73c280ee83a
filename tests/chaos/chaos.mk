# Chaos tests (tests/chaos/): kill -9 storms, an API server outage, expired watches, leader
# failover loops and 10,000 generated specs. Included from the top-level Makefile.
#
# Each fault loop runs $NIGHTSHIFT_CHAOS_SECONDS (make chaos: default 600; make chaos-short: 90).
# With $NIGHTSHIFT_CLUSTER_DIR set the tests use (or start there) that control plane; otherwise
# they start a private one: they stop its API server and compact its etcd, so they never borrow
# the shared .cluster/. NIGHTSHIFT_CHAOS_SEED replays the kill -9 storm.

NIGHTSHIFT_CHAOS_SECONDS ?= 600
NIGHTSHIFT_CHAOS_EXAMPLES ?= 10000
CHAOS_SHORT_SECONDS ?= 90
CHAOS_SHORT_EXAMPLES ?= 1000
CHAOS_PYTEST = $(or $(BIN),.venv/bin)/pytest tests/chaos -m chaos -v -rA

# --- Chaos
.PHONY: chaos chaos-short

chaos: venv binaries ## Chaos tests, full length (NIGHTSHIFT_CHAOS_SECONDS per fault loop, default 600; ~30 min)
	NIGHTSHIFT_CHAOS_SECONDS=$(NIGHTSHIFT_CHAOS_SECONDS) \
	NIGHTSHIFT_CHAOS_EXAMPLES=$(NIGHTSHIFT_CHAOS_EXAMPLES) $(CHAOS_PYTEST)

chaos-short: venv binaries ## Chaos tests as CI runs them (90 s per fault loop, 1,000 generated specs; ~10 min)
	NIGHTSHIFT_CHAOS_SECONDS=$(CHAOS_SHORT_SECONDS) \
	NIGHTSHIFT_CHAOS_EXAMPLES=$(CHAOS_SHORT_EXAMPLES) $(CHAOS_PYTEST)
