#!/usr/bin/env bash
# Builds the local control plane (kube-apiserver, kube-controller-manager, kube-scheduler, kubectl,
# etcd, kwok) and helm from upstream Go modules, into a cache directory outside the repository that
# is keyed by component versions, Go version and flags, so a warm run does nothing.
#
# Prints the binary directory on stdout (everything else goes to stderr).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${NIGHTSHIFT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nightshift}"
export GOMODCACHE="$cache/gomod" GOCACHE="$cache/gocache" GOTOOLCHAIN=local CGO_ENABLED=0
# go.mod and go.sum are committed, so -mod=readonly builds exactly them with no look-ups.
export GOFLAGS="-mod=readonly -buildvcs=false"

modver() { awk -v m="$2" '$1==m && $2 ~ /^v/ {print $2; exit}' "$1"; }
k8s_ver="$(modver "$here/k8sbin/go.mod" k8s.io/kubernetes)"
etcd_ver="$(modver "$here/k8sbin/go.mod" go.etcd.io/etcd/server/v3)"
kwok_ver="$(modver "$here/k8sbin/go.mod" sigs.k8s.io/kwok)"
helm_ver="$(modver "$here/helmbin/go.mod" helm.sh/helm/v3)"
go_ver="$(go env GOVERSION)"
k8s_minor="$(echo "$k8s_ver" | cut -d. -f2)"

k8s_ldflags="-s -w \
 -X k8s.io/component-base/version.gitVersion=$k8s_ver \
 -X k8s.io/component-base/version.gitMajor=1 \
 -X k8s.io/component-base/version.gitMinor=$k8s_minor \
 -X k8s.io/component-base/version.gitTreeState=clean \
 -X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z \
 -X k8s.io/client-go/pkg/version.gitVersion=$k8s_ver \
 -X k8s.io/client-go/pkg/version.gitMajor=1 \
 -X k8s.io/client-go/pkg/version.gitMinor=$k8s_minor"
# Without these, helm assumes Kubernetes v1.20 for .Capabilities and deprecation lint rules.
helm_ldflags="-s -w \
 -X helm.sh/helm/v3/internal/version.version=$helm_ver \
 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 \
 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$k8s_minor \
 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 \
 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$k8s_minor"

# The key covers everything that changes the output: versions, Go, flags and our module files.
src_hash="$( (cat "$here"/k8sbin/go.mod "$here"/k8sbin/go.sum "$here"/helmbin/go.mod "$here"/helmbin/go.sum \
  "$here"/k8sbin/cmd/*/main.go "$0"; echo "$k8s_ldflags $helm_ldflags") | sha256sum | cut -c1-12)"
key="k8s-$k8s_ver-etcd-$etcd_ver-kwok-$kwok_ver-helm-$helm_ver-$go_ver-$src_hash"
bin="$cache/bin/$key"

if [[ -f "$bin/.complete" ]]; then
  echo "$bin"
  exit 0
fi

log() { echo "build-binaries: $*" >&2; }
log "building into $bin (cold builds take 15-30 min on 2 cores; later runs reuse this directory)"
mkdir -p "$bin.tmp"
start=$SECONDS
(
  cd "$here/k8sbin"
  # -p 2 matches the two cores; each link of the large binary needs ~2 GiB.
  log "kube-apiserver/controller-manager/scheduler/kubectl $k8s_ver (one multi-call binary)"
  go build -p 2 -trimpath -ldflags "$k8s_ldflags" -o "$bin.tmp/k8s" ./cmd/k8s
  log "etcd $etcd_ver"
  go build -p 2 -trimpath -ldflags "-s -w" -o "$bin.tmp/etcd" ./cmd/etcd
  log "kwok $kwok_ver"
  go build -p 2 -trimpath -ldflags "-s -w" -o "$bin.tmp/kwok" ./cmd/kwok
)
(
  cd "$here/helmbin"
  log "helm $helm_ver"
  go build -p 2 -trimpath -ldflags "$helm_ldflags" -o "$bin.tmp/helm" helm.sh/helm/v3/cmd/helm
)
for name in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
  ln -sf k8s "$bin.tmp/$name"
done
touch "$bin.tmp/.complete"
rm -rf "$bin"
mv "$bin.tmp" "$bin"
log "done in $((SECONDS - start)) s"
echo "$bin"
