# Local control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, KWOK) and,
# with NODE=real, a real node beside the KWOK nodes (containerd, kubelet, kube-proxy).
# Included from the top-level Makefile. See docs/local-cluster.md.

# cluster.py uses only the standard library, so it runs with the system python3 and the cluster
# targets work on a fresh clone, before `make venv`.
CLUSTER := python3 hack/cluster/cluster.py
# NODE=real: `make cluster-up NODE=real`, `make dev NODE=real` (needs root; see docs).
NODE ?=

# --- Local cluster
.PHONY: binaries node-binaries images kueue cluster-up cluster-down cluster-status

binaries: ## Build (or reuse from the cache) kube-*, kubectl, etcd, kwok and helm; prints their directory
	bash hack/build-binaries.sh

kueue: ## Build (or reuse) Kueue for tests/integration/test_kueue.py (a cold integration run builds it in the background)
	bash hack/build-kueue.sh

node-binaries: ## Build (or reuse) the real node's kubelet, kube-proxy, containerd, CNI plugins, pause
	bash hack/build-node.sh

images: ## Build (or reuse) the images with buildah: operator, jobs-*, python-base, pause (as root)
	bash hack/build-images.sh

cluster-up: ## Start the local control plane in .cluster/ (no-op when healthy); NODE=real adds a real node
	$(CLUSTER) up $(if $(NODE),--node=$(NODE))

cluster-down: ## Stop the local cluster and delete its data, real node included (logs stay in .cluster/logs)
	$(CLUSTER) down

cluster-status: ## Show the local cluster's components, ports and health
	$(CLUSTER) status
