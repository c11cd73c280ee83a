# Nightshift's front door. `make help` lists every target.
#
#   make dev    local control plane + CRD + operator + examples, and a one-screen view
#               (NODE=real: the examples' Jobs run for real on a real node)
#   make test   every check CI runs (.ci/run calls exactly this)

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV ?= .venv
PYTHON := $(VENV)/bin/python
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)

include hack/cluster.mk
include hack/kind.mk
include bench/bench.mk
include tests/chaos/chaos.mk

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^# ---/ {sub(/^# --- */, ""); printf "\n\033[1m%s\033[0m\n", $$0} \
	  /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# --- Setup
# Every download is checked against its hash (requirements/dev.txt, from `make requirements`);
# the project itself is installed from the work tree, with the build tools that file pinned.
$(VENV)/.installed: pyproject.toml requirements/dev.txt
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r requirements/dev.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

.PHONY: venv
venv: $(VENV)/.installed ## Create .venv with the package and dev tools (every download hash-checked)

.PHONY: requirements
requirements: venv ## Write requirements/*.txt (pins with hashes) from pyproject.toml and constraints.txt
	$(PYTHON) hack/requirements.py

# --- Main jobs
.PHONY: dev
dev: venv cluster-up ## Control plane up, CRD installed, operator running on examples/, then a status view
	$(PYTHON) hack/dev.py

.PHONY: dev-down
dev-down: ## Stop the operator that `make dev` started (the cluster keeps running)
	python3 hack/dev.py down

.PHONY: test
test: venv lint typecheck verify unit integration chaos-short ## Every check CI runs (chaos in its short form)

# --- Checks
.PHONY: lint
lint: venv binaries ## ruff lint and format check, import-linter layer contracts, helm lint --strict
	$(BIN)/ruff check operator tests hack jobimages bench
	$(BIN)/ruff format --check operator tests hack jobimages bench
	$(BIN)/lint-imports --no-logo
	"$$(bash hack/build-binaries.sh)/helm" lint --strict charts/nightshift

.PHONY: fmt
fmt: venv ## Format and autofix with ruff
	$(BIN)/ruff format operator tests hack jobimages bench
	$(BIN)/ruff check --fix operator tests hack jobimages bench

.PHONY: typecheck
typecheck: venv ## mypy --strict on operator/
	$(BIN)/mypy

.PHONY: unit
unit: venv ## Unit tests (pure logic, no cluster)
	$(BIN)/pytest tests/unit -q

.PHONY: integration
integration: venv binaries browser node-binaries images ## Integration tests on the local cluster with a real node (started by a fixture; Kueue is built meanwhile)
	NIGHTSHIFT_NODE=real $(BIN)/pytest tests/integration -q --durations=25

.PHONY: browser
browser: ## Install Debian's Chromium for the UI's browser tests, when it is missing
	@command -v chromium >/dev/null || { \
	  echo "installing Debian's chromium (the UI tests drive it headless)"; \
	  $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get update -qq && \
	  $$( [ "$$(id -u)" = 0 ] || echo sudo ) env DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq chromium >/dev/null; }

.PHONY: screenshots
screenshots: venv binaries browser ## Run the UI's browser tests and keep their screenshots in docs/ui/
	NIGHTSHIFT_SCREENSHOTS=$(abspath docs/ui) $(BIN)/pytest tests/integration/test_ui.py -q

# --- Generated files
.PHONY: generate
generate: venv ## Regenerate the CRDs from the pydantic models and the CLI docs from --help
	$(BIN)/nightshift crd > crds/scheduledtasks.nightshift.dev.yaml
	$(BIN)/nightshift crd Calendar > crds/calendars.nightshift.dev.yaml
	$(BIN)/nightshift crd Backfill > crds/backfills.nightshift.dev.yaml
	$(PYTHON) hack/chart/sync_crd.py
	$(PYTHON) hack/chart/gen_schema.py
	$(PYTHON) hack/chart/gen_readme.py
	$(PYTHON) hack/gen_cli_docs.py

.PHONY: verify
verify: venv ## Fail when a generated file differs from what `make generate` would write
	$(PYTHON) hack/verify.py
