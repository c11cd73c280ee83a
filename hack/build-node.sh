#!/usr/bin/env bash
# Builds the real node's binaries from upstream Go modules (and one C file), into a cache
# directory outside the repository keyed by versions, Go version, flags and our module files:
#
#   kubelet, kube-proxy          k8s.io/kubernetes, one multi-call binary `kube-node` built from
#                                hack/k8sbin (the module and version of the control plane)
#   containerd, ctr,             github.com/containerd/containerd/v2 (hack/nodebin)
#   containerd-shim-runc-v2
#   bridge, host-local,          github.com/containernetworking/plugins (hack/nodebin), in cni/
#   loopback, portmap
#   pause                        build/pause/linux/pause.c from the k8s.io/kubernetes module,
#                                linked statically with gcc (it becomes the pause image)
#
# runc is Debian's (`apt-get install runc`). The control plane is hack/build-binaries.sh, whose
# cache key this script leaves alone. Prints the binary directory on stdout (progress on stderr).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${NIGHTSHIFT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nightshift}"
export GOMODCACHE="$cache/gomod" GOCACHE="$cache/gocache" GOTOOLCHAIN=local CGO_ENABLED=0
# go.mod and go.sum are committed, so -mod=readonly builds exactly them with no look-ups.
export GOFLAGS="-mod=readonly -buildvcs=false"

modver() { awk -v m="$2" '$1==m && $2 ~ /^v/ {print $2; exit}' "$1"; }
k8s_ver="$(modver "$here/k8sbin/go.mod" k8s.io/kubernetes)"
containerd_ver="$(modver "$here/nodebin/go.mod" github.com/containerd/containerd/v2)"
cni_ver="$(modver "$here/nodebin/go.mod" github.com/containernetworking/plugins)"
go_ver="$(go env GOVERSION)"
k8s_minor="$(echo "$k8s_ver" | cut -d. -f2)"

# The same version stamps as the control plane (hack/build-binaries.sh), so that the node reports
# v1.36.N like the API server.
k8s_ldflags="-s -w \
 -X k8s.io/component-base/version.gitVersion=$k8s_ver \
 -X k8s.io/component-base/version.gitMajor=1 \
 -X k8s.io/component-base/version.gitMinor=$k8s_minor \
 -X k8s.io/component-base/version.gitTreeState=clean \
 -X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z \
 -X k8s.io/client-go/pkg/version.gitVersion=$k8s_ver \
 -X k8s.io/client-go/pkg/version.gitMajor=1 \
 -X k8s.io/client-go/pkg/version.gitMinor=$k8s_minor"
containerd_ldflags="-s -w \
 -X github.com/containerd/containerd/v2/version.Version=$containerd_ver \
 -X github.com/containerd/containerd/v2/version.Revision=$containerd_ver"
# Snapshotters and tracing we do not use (btrfs needs cgo and is left out without it anyway).
containerd_tags="no_btrfs no_devmapper no_zfs no_tracing"
cni_ldflags="-s -w -X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=$cni_ver"
pause_dir="$GOMODCACHE/k8s.io/kubernetes@$k8s_ver/build/pause"
if [[ ! -f "$pause_dir/linux/pause.c" ]]; then
  (cd "$here/k8sbin" && go mod download k8s.io/kubernetes)
fi
# The flags of upstream's build/pause/Makefile; its TAG names the pause version.
pause_tag="$(awk '$1=="TAG" {print $3; exit}' "$pause_dir/Makefile")"
pause_cflags="-Os -Wall -Werror -static -DVERSION=v$pause_tag-k8s-$k8s_ver"

src_hash="$( (cat "$here"/k8sbin/go.mod "$here"/k8sbin/go.sum "$here"/k8sbin/node/main.go \
  "$here"/nodebin/go.mod "$here"/nodebin/go.sum "$0"; gcc --version | head -1
  echo "$k8s_ldflags $containerd_ldflags $containerd_tags $cni_ldflags $pause_cflags") \
  | sha256sum | cut -c1-12)"
key="node-k8s-$k8s_ver-containerd-$containerd_ver-cni-$cni_ver-$go_ver-$src_hash"
bin="$cache/bin/$key"

if [[ -f "$bin/.complete" ]]; then
  echo "$bin"
  exit 0
fi

log() { echo "build-node: $*" >&2; }
log "building into $bin (a cold build takes several minutes on 2 cores; later runs reuse it)"
rm -rf "$bin.tmp"
mkdir -p "$bin.tmp/cni"
start=$SECONDS
(
  cd "$here/k8sbin"
  log "kubelet and kube-proxy $k8s_ver (one multi-call binary)"
  go build -p 2 -trimpath -ldflags "$k8s_ldflags" -o "$bin.tmp/kube-node" ./node
)
(
  cd "$here/nodebin"
  for cmd in containerd containerd-shim-runc-v2 ctr; do
    log "$cmd $containerd_ver"
    go build -p 2 -trimpath -tags "$containerd_tags" -ldflags "$containerd_ldflags" \
      -o "$bin.tmp/$cmd" "github.com/containerd/containerd/v2/cmd/$cmd"
  done
  for plugin in main/bridge ipam/host-local main/loopback meta/portmap; do
    log "CNI plugin $(basename "$plugin") $cni_ver"
    go build -p 2 -trimpath -ldflags "$cni_ldflags" -o "$bin.tmp/cni/$(basename "$plugin")" \
      "github.com/containernetworking/plugins/plugins/$plugin"
  done
)
# A static C program needs gcc and glibc's static libraries (libc6-dev).
bash "$here/ensure-packages.sh" gcc libc6-dev >&2
log "pause $pause_tag (gcc $pause_cflags)"
# shellcheck disable=SC2086 # the flags are words
gcc $pause_cflags -o "$bin.tmp/pause" "$pause_dir/linux/pause.c"
strip "$bin.tmp/pause"
echo "$pause_tag" > "$bin.tmp/pause.version"
for name in kubelet kube-proxy; do
  ln -sf kube-node "$bin.tmp/$name"
done
touch "$bin.tmp/.complete"
rm -rf "$bin"
mv "$bin.tmp" "$bin"
log "done in $((SECONDS - start)) s"
echo "$bin"
