# kind: Nightshift on a real (containerised) cluster, for machines with Docker or Podman.
# Included from the top-level Makefile. See docs/install.md.
#
#   make kind-up      create the kind cluster (or reuse it), build the images as `make images` does
#                     (buildah, hack/build-images.sh; as root) and load their archives with
#                     `kind load image-archive`, install the chart into a namespace that enforces
#                     Pod Security "restricted", apply examples/01-cron.yaml
#   make kind-down    delete the kind cluster
#
# kind comes from your PATH (KIND=... to override; for Podman set KIND_EXPERIMENTAL_PROVIDER=podman),
# and kind itself needs Docker or Podman. helm and kubectl are the pinned ones from
# hack/build-binaries.sh. The cluster's kubeconfig is written to $(KIND_KUBECONFIG), never to
# ~/.kube/config (default ~/.kube/kind-nightshift.yaml).

KIND ?= kind
KIND_CLUSTER ?= nightshift
KIND_KUBECONFIG ?= $(HOME)/.kube/kind-$(KIND_CLUSTER).yaml
KIND_NAMESPACE ?= nightshift-system
KIND_RELEASE ?= nightshift
KIND_HELM_ARGS ?=

# --- kind (needs Docker or Podman)
.PHONY: kind-up kind-down

kind-up: ## kind cluster, the images built here, chart (PSS restricted namespace), examples/01-cron.yaml
	@command -v $(KIND) >/dev/null || { echo "kind-up: $(KIND) not found on PATH (see docs/install.md)" >&2; exit 1; }
	@mkdir -p $(dir $(KIND_KUBECONFIG))
	@if $(KIND) get clusters 2>/dev/null | grep -qx '$(KIND_CLUSTER)'; then \
	  echo "kind-up: reusing kind cluster $(KIND_CLUSTER)"; \
	  $(KIND) export kubeconfig --name $(KIND_CLUSTER) --kubeconfig $(KIND_KUBECONFIG); \
	else \
	  $(KIND) create cluster --name $(KIND_CLUSTER) --kubeconfig $(KIND_KUBECONFIG) --wait 180s; \
	fi
	bash hack/build-images.sh | while read -r ref archive; do \
	  case "$$ref" in */pause:*|*/python-base:*) continue;; esac; \
	  echo "kind-up: loading $$ref"; \
	  $(KIND) load image-archive --name $(KIND_CLUSTER) "$$archive" || exit 1; \
	done
	bin="$$(bash hack/build-binaries.sh)" && \
	export KUBECONFIG=$(KIND_KUBECONFIG) && \
	"$$bin/kubectl" create namespace $(KIND_NAMESPACE) --dry-run=client -o yaml \
	  | "$$bin/kubectl" apply -f - && \
	"$$bin/kubectl" label namespace $(KIND_NAMESPACE) --overwrite \
	  pod-security.kubernetes.io/enforce=restricted && \
	"$$bin/helm" upgrade --install $(KIND_RELEASE) charts/nightshift \
	  --namespace $(KIND_NAMESPACE) \
	  --set image.repository=localhost/nightshift/operator \
	  --set image.tag=dev \
	  --set image.pullPolicy=Never \
	  --wait --timeout 5m $(KIND_HELM_ARGS) && \
	"$$bin/kubectl" apply -f examples/01-cron.yaml && \
	echo "kind-up: ready. export KUBECONFIG=$(KIND_KUBECONFIG); kubectl get stask --watch"

kind-down: ## Delete the kind cluster that kind-up created
	@command -v $(KIND) >/dev/null || { echo "kind-down: $(KIND) not found on PATH" >&2; exit 1; }
	$(KIND) delete cluster --name $(KIND_CLUSTER) --kubeconfig $(KIND_KUBECONFIG)
	rm -f $(KIND_KUBECONFIG)
