#!/usr/bin/env bash
# Builds Kueue's controller manager from its Go module (pinned in hack/kueuebin/go.mod) into a
# cache directory outside the repository keyed by the Kueue and Go versions and our module files,
# like hack/build-binaries.sh, so a warm run does nothing. Only the tests of the Kueue markers
# (tests/integration/test_kueue.py) need it: a cold integration session builds it in the
# background at the lowest CPU and I/O priority while the other tests run (tests/integration/
# conftest.py), and runs those tests last.
#
# Prints the binary directory on stdout (everything else goes to stderr). It holds `kueue` and
# `crds/`, Kueue's own CRDs copied from the same module version.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${NIGHTSHIFT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nightshift}"
export GOMODCACHE="$cache/gomod" GOCACHE="$cache/gocache" GOTOOLCHAIN=local CGO_ENABLED=0
# go.mod and go.sum are committed, so -mod=readonly builds exactly them with no look-ups.
export GOFLAGS="-mod=readonly -buildvcs=false"

mod="$here/kueuebin"
kueue_ver="$(awk '$1=="sigs.k8s.io/kueue" && $2 ~ /^v/ {print $2; exit}' "$mod/go.mod")"
go_ver="$(go env GOVERSION)"
src_hash="$(cat "$mod/go.mod" "$mod/go.sum" "$0" | sha256sum | cut -c1-12)"
bin="$cache/bin/kueue-$kueue_ver-$go_ver-$src_hash"

if [[ -f "$bin/.complete" ]]; then
  echo "$bin"
  exit 0
fi
# One build at a time: a second caller (the Kueue tests, while the integration session builds it
# in the background) waits for the first and finds it done.
mkdir -p "$cache/bin"
exec 9>"$cache/bin/.kueue-build.lock"
flock 9
if [[ -f "$bin/.complete" ]]; then
  echo "$bin"
  exit 0
fi

log() { echo "build-kueue: $*" >&2; }
log "building Kueue $kueue_ver into $bin (a cold build takes several minutes on 2 cores)"
rm -rf "$bin.tmp"
mkdir -p "$bin.tmp/crds"
start=$SECONDS
(
  cd "$mod"
  go build -p 2 -trimpath -ldflags "-s -w" -o "$bin.tmp/kueue" sigs.k8s.io/kueue/cmd/kueue
  # The CRDs ship inside the module; the module cache holds it after the build.
  src="$(go list -m -f '{{.Dir}}' sigs.k8s.io/kueue)"
  cp "$src"/config/components/crd/bases/*.yaml "$bin.tmp/crds/"
)
touch "$bin.tmp/.complete"
rm -rf "$bin"
mv "$bin.tmp" "$bin"
log "done in $((SECONDS - start)) s"
echo "$bin"
