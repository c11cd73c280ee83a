# Local control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, KWOK).
# Included from the top-level Makefile. See docs/local-cluster.md.

PYTHON ?= .venv/bin/python
CLUSTER := $(PYTHON) hack/cluster/cluster.py

# --- Local cluster
.PHONY: binaries kueue cluster-up cluster-down cluster-status

binaries: ## Build (or reuse from the cache) kube-*, kubectl, etcd, kwok and helm; prints their directory
	bash hack/build-binaries.sh

kueue: ## Build (or reuse from the cache) Kueue's controller for tests/integration/test_kueue.py
	bash hack/build-kueue.sh

cluster-up: ## Start the local control plane in .cluster/ (no-op when already healthy)
	$(CLUSTER) up

cluster-down: ## Stop the local control plane and delete its data (logs stay in .cluster/logs)
	$(CLUSTER) down

cluster-status: ## Show the local control plane's components, ports and health
	$(CLUSTER) status
