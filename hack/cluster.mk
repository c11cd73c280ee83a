# Local control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, KWOK).
# Included from the top-level Makefile. See docs/local-cluster.md.

# cluster.py uses only the standard library, so it runs with the system python3 and the cluster
# targets work on a fresh clone, before `make venv`.
CLUSTER := python3 hack/cluster/cluster.py

# --- Local cluster
.PHONY: binaries cluster-up cluster-down cluster-status

binaries: ## Build (or reuse from the cache) kube-*, kubectl, etcd, kwok and helm; prints their directory
	bash hack/build-binaries.sh

cluster-up: ## Start the local control plane in .cluster/ (no-op when already healthy)
	$(CLUSTER) up

cluster-down: ## Stop the local control plane and delete its data (logs stay in .cluster/logs)
	$(CLUSTER) down

cluster-status: ## Show the local control plane's components, ports and health
	$(CLUSTER) status
