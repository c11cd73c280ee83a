# kind: Nightshift on a real (containerised) cluster, for machines with Docker or Podman.
# Included from the top-level Makefile. See docs/install.md.
#
#   make kind-up      create the kind cluster (or reuse it), build and load the image, install the
#                     chart into a namespace that enforces Pod Security "restricted", apply
#                     examples/01-cron.yaml
#   make kind-down    delete the kind cluster
#
# kind and docker come from your PATH (KIND=..., DOCKER=... to override; for Podman set
# KIND_EXPERIMENTAL_PROVIDER=podman DOCKER=podman). helm and kubectl are the pinned ones from
# hack/build-binaries.sh. The cluster's kubeconfig is written to $(KIND_KUBECONFIG), never to
# ~/.kube/config (default ~/.kube/kind-nightshift.yaml).

KIND ?= kind
DOCKER ?= docker
KIND_CLUSTER ?= nightshift
KIND_KUBECONFIG ?= $(HOME)/.kube/kind-$(KIND_CLUSTER).yaml
KIND_NAMESPACE ?= nightshift-system
KIND_RELEASE ?= nightshift
KIND_IMAGE_REPOSITORY ?= ghcr.io/nightshift-dev/nightshift
KIND_IMAGE_TAG ?= dev
KIND_HELM_ARGS ?=
# The example's job image; built and loaded only if jobimages/hello/ exists.
KIND_JOB_IMAGE ?= ghcr.io/nightshift-dev/jobimages/hello:0.1.0

# --- kind (needs Docker or Podman)
.PHONY: kind-up kind-down

kind-up: ## kind cluster, operator image, chart (PSS restricted namespace), examples/01-cron.yaml
	@for tool in $(KIND) $(DOCKER); do \
	  command -v $$tool >/dev/null || { echo "kind-up: $$tool not found on PATH (see docs/install.md)" >&2; exit 1; }; \
	done
	@mkdir -p $(dir $(KIND_KUBECONFIG))
	@if $(KIND) get clusters 2>/dev/null | grep -qx '$(KIND_CLUSTER)'; then \
	  echo "kind-up: reusing kind cluster $(KIND_CLUSTER)"; \
	  $(KIND) export kubeconfig --name $(KIND_CLUSTER) --kubeconfig $(KIND_KUBECONFIG); \
	else \
	  $(KIND) create cluster --name $(KIND_CLUSTER) --kubeconfig $(KIND_KUBECONFIG) --wait 180s; \
	fi
	$(DOCKER) build --tag $(KIND_IMAGE_REPOSITORY):$(KIND_IMAGE_TAG) .
	$(KIND) load docker-image --name $(KIND_CLUSTER) $(KIND_IMAGE_REPOSITORY):$(KIND_IMAGE_TAG)
	@if [ -f jobimages/hello/Dockerfile ]; then \
	  $(DOCKER) build --tag $(KIND_JOB_IMAGE) jobimages/hello && \
	  $(KIND) load docker-image --name $(KIND_CLUSTER) $(KIND_JOB_IMAGE); \
	fi
	bin="$$(bash hack/build-binaries.sh)" && \
	export KUBECONFIG=$(KIND_KUBECONFIG) && \
	"$$bin/kubectl" create namespace $(KIND_NAMESPACE) --dry-run=client -o yaml \
	  | "$$bin/kubectl" apply -f - && \
	"$$bin/kubectl" label namespace $(KIND_NAMESPACE) --overwrite \
	  pod-security.kubernetes.io/enforce=restricted && \
	"$$bin/helm" upgrade --install $(KIND_RELEASE) charts/nightshift \
	  --namespace $(KIND_NAMESPACE) \
	  --set image.repository=$(KIND_IMAGE_REPOSITORY) \
	  --set image.tag=$(KIND_IMAGE_TAG) \
	  --set image.pullPolicy=Never \
	  --wait --timeout 5m $(KIND_HELM_ARGS) && \
	"$$bin/kubectl" apply -f examples/01-cron.yaml && \
	echo "kind-up: ready. export KUBECONFIG=$(KIND_KUBECONFIG); kubectl get stask --watch"

kind-down: ## Delete the kind cluster that kind-up created
	@command -v $(KIND) >/dev/null || { echo "kind-down: $(KIND) not found on PATH" >&2; exit 1; }
	$(KIND) delete cluster --name $(KIND_CLUSTER) --kubeconfig $(KIND_KUBECONFIG)
	rm -f $(KIND_KUBECONFIG)
