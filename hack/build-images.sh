#!/usr/bin/env bash
# Builds Nightshift's container images without a registry or a container engine, with buildah
# (Debian's package) from the project's own Dockerfiles, and saves each one as a docker-archive
# (what `ctr images import` and `kind load image-archive` read):
#
#   localhost/nightshift/python-base:3.11-bookworm  debootstrap of Debian bookworm + python3
#   localhost/nightshift/pause:<version>            the pause program from hack/build-node.sh
#   localhost/nightshift/operator:dev               ./Dockerfile, PYTHON_IMAGE=python-base
#   localhost/nightshift/jobs-<name>:dev            jobimages/<name>/Dockerfile, likewise
#
# Each archive is cached in $cache/images/ under a hash of its inputs (the base image's key
# included), so a warm run does nothing. Prints one line per image on stdout: `<ref> <archive>`;
# progress goes to stderr. Needs root (debootstrap, buildah's storage); installs its Debian
# packages when they are missing.
#
#   hack/build-images.sh            all images
#   hack/build-images.sh pause      only the pause image (what the real node cannot start without)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
cache="${NIGHTSHIFT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nightshift}"
out="$cache/images"
log() { echo "build-images: $*" >&2; }

# Everything this script mounts (debootstrap's /proc in the new root, buildah's storage and
# build containers) lives in a private mount namespace, so nothing stays mounted on the machine
# when it exits, however it exits.
if [[ -z "${NIGHTSHIFT_IMAGES_NS:-}" ]]; then
  if [[ "$(id -u)" != 0 ]]; then
    log "needs root (debootstrap and buildah's storage); run it as root or use kind (docs/install.md)"
    exit 1
  fi
  bash "$here/ensure-packages.sh" buildah debootstrap >&2
  # buildah writes a blob-info cache to /var/lib/containers/cache and a lock file to
  # /etc/cni/net.d whatever --root and --cni-config-dir say: they go again when this run made them.
  made=()
  for dir in /var/lib/containers /etc/cni; do [[ -e "$dir" ]] || made+=("$dir"); done
  rc=0
  NIGHTSHIFT_IMAGES_NS=1 unshare --mount --propagation private bash "$0" "$@" || rc=$?
  rm -rf "${made[@]}"
  exit "$rc"
fi

mkdir -p "$out"
# Scratch directories (build contexts, the base image's root file system) go however we exit.
scratch=()
trap 'rm -rf "${scratch[@]}"' EXIT
node_bin="$(bash "$here/build-node.sh")"
buildah_root="$out/buildah"
buildah=(buildah --root "$buildah_root/storage" --runroot "$buildah_root/run" --storage-driver overlay)
policy="$out/policy.json"
# Images come only from local archives; no registry is ever asked.
echo '{"default": [{"type": "insecureAcceptAnything"}]}' > "$policy"

hash_files() { # hash_files FILE... -> 12 hex digits over names and contents
  for f in "$@"; do printf '%s\n' "${f#"$repo"/}"; cat "$f"; done | sha256sum | cut -c1-12
}
hash_text() { sha256sum | cut -c1-12; }

# The Debian mirror apt uses on this machine (deb822 or one-line format), else Debian's CDN.
mirror() {
  local uri=""
  if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
    uri="$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)"
  fi
  if [[ -z "$uri" && -f /etc/apt/sources.list ]]; then
    uri="$(awk '$1=="deb" && $3 ~ /^bookworm$/ {print $2; exit}' /etc/apt/sources.list)"
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}

# load REF ARCHIVE: make sure buildah's storage has REF (a later build starts FROM it).
load() {
  if ! "${buildah[@]}" inspect --type image "$1" >/dev/null 2>&1; then
    "${buildah[@]}" pull --quiet --signature-policy "$policy" "docker-archive:$2" >/dev/null
  fi
}

# build REF ARCHIVE CONTEXT DOCKERFILE [buildah bud args...]
build() {
  local ref="$1" archive="$2" context="$3" dockerfile="$4"
  shift 4
  local start=$SECONDS
  log "$ref: building ($dockerfile)"
  # The host's CA bundle and a pip.conf naming it are mounted into RUN steps (never into the
  # image): behind a TLS-inspecting proxy pip only reaches PyPI with the host's CAs.
  local pipconf="$out/pip.conf"
  printf '[global]\ncert = /etc/nightshift-build-ca.crt\n' > "$pipconf"
  # No --layers: buildah 1.28 would reuse a cached `RUN --mount=type=bind,from=<stage>` layer
  # although the stage's files changed (the operator image kept stale code). Our own cache key
  # already decides when an image is rebuilt.
  "${buildah[@]}" bud --quiet --isolation chroot --network host --pull=never \
    --format docker --signature-policy "$policy" --cni-config-dir "$buildah_root/cni" \
    --volume /etc/ssl/certs/ca-certificates.crt:/etc/nightshift-build-ca.crt:ro \
    --volume "$pipconf:/etc/pip.conf:ro" \
    --tag "$ref" --file "$dockerfile" "$@" "$context" >&2
  rm -f "$archive.tmp"
  "${buildah[@]}" push --quiet "$ref" "docker-archive:$archive.tmp:$ref" >&2
  mv "$archive.tmp" "$archive"
  # Older archives of the same image (other keys) are of no more use after a day.
  find "$out" -maxdepth 1 -name "$(basename "${archive%-*}")-*.tar" ! -path "$archive" -mtime +1 \
    -delete
  log "$ref: built in $((SECONDS - start)) s -> $archive"
}

base_ref=localhost/nightshift/python-base:3.11-bookworm
base_packages=python3,python3-venv,python3-pip,python-is-python3,ca-certificates
script_key="$(hash_files "$0")"
# The base image takes a minute to build: its key covers only what goes into it.
base_key="$( (hash_files "$here/images/python-base/Dockerfile"; mirror; echo "$base_packages"
  sed -n -e '/^build_base()/,/^}/p' -e '/^build()/,/^}/p' "$0"; dpkg-query -W debootstrap buildah) \
  | hash_text)"
base_archive="$out/python-base-$base_key.tar"

build_base() {
  local work
  work="$(mktemp -d "$out/python-base.XXXXXX")"
  scratch+=("$work")
  local start=$SECONDS
  log "$base_ref: debootstrap bookworm from $(mirror) (about a minute)"
  debootstrap --variant=minbase --include="$base_packages" bookworm "$work/rootfs" "$(mirror)" \
    > "$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log" >&2; return 1; }
  # What an image does not need: package lists and caches, documentation, device nodes (the
  # runtime provides /dev).
  rm -rf "$work"/rootfs/var/cache/apt/* "$work"/rootfs/var/lib/apt/lists/* \
    "$work"/rootfs/usr/share/doc/* "$work"/rootfs/usr/share/man/* "$work"/rootfs/usr/share/info/* \
    "$work"/rootfs/dev/* "$work"/rootfs/var/log/*
  log "$base_ref: root file system $(du -sm "$work/rootfs" | cut -f1) MB in $((SECONDS - start)) s"
  tar --numeric-owner -C "$work/rootfs" -cf "$work/rootfs.tar" .
  rm -rf "$work/rootfs"
  build "$base_ref" "$base_archive" "$work" "$here/images/python-base/Dockerfile"
  # It never came from a registry, so it has no registry digest to pin: what names these exact
  # bytes is its image ID (the digest of its configuration), recorded beside the archive.
  "${buildah[@]}" images --no-trunc --format '{{.ID}}' "$base_ref" > "${base_archive%.tar}.id"
  log "$base_ref: image ID $(cat "${base_archive%.tar}.id")"
}

pause_version="$(cat "$node_bin/pause.version")"
pause_ref="localhost/nightshift/pause:$pause_version"
pause_key="$( (echo "$script_key"; hash_files "$here/images/pause/Dockerfile" "$node_bin/pause") \
  | hash_text)"
pause_archive="$out/pause-$pause_key.tar"

images=()
if [[ ! -f "$pause_archive" ]]; then
  ctx="$(mktemp -d "$out/pause.XXXXXX")"
  scratch+=("$ctx")
  cp "$node_bin/pause" "$ctx/pause"
  build "$pause_ref" "$pause_archive" "$ctx" "$here/images/pause/Dockerfile"
fi
images+=("$pause_ref $pause_archive")

if [[ "${1:-all}" == all ]]; then
  [[ -f "$base_archive" ]] || build_base
  images+=("$base_ref $base_archive")
  base_args=(--build-arg "PYTHON_IMAGE=$base_ref")

  # The operator: ./Dockerfile; its context is what .dockerignore lets through.
  mapfile -t op_files < <(cd "$repo" && find Dockerfile .dockerignore pyproject.toml \
    requirements/runtime.txt requirements/build.txt README.md operator hack/images/operator \
    -type f ! -path '*/__pycache__/*' ! -path '*.egg-info/*' | sort)
  op_key="$( (echo "$base_key $script_key"; hash_files "${op_files[@]/#/$repo/}") | hash_text)"
  op_ref=localhost/nightshift/operator:dev
  op_archive="$out/operator-$op_key.tar"
  if [[ ! -f "$op_archive" ]]; then
    load "$base_ref" "$base_archive"
    build "$op_ref" "$op_archive" "$repo" "$repo/Dockerfile" "${base_args[@]}"
    # The SBOM the build wrote into the image, next to its archive as well.
    sbom_ctr="$("${buildah[@]}" from --pull=never --signature-policy "$policy" "$op_ref")"
    sbom_mnt="$("${buildah[@]}" mount "$sbom_ctr")"
    cp "$sbom_mnt/usr/share/doc/nightshift/sbom.cdx.json" "${op_archive%.tar}.sbom.cdx.json"
    # What docs/install.md promises, checked on every build: it runs (as its user, with no
    # shell to start it), and holds no shell, package manager or pip.
    "${buildah[@]}" run --isolation chroot "$sbom_ctr" -- nightshift --version >&2
    leftovers="$(cd "$sbom_mnt" && find . \( -name sh -o -name bash -o -name dash -o -name busybox \
      -o -name apt -o -name apt-get -o -name dpkg -o -name pip -o -name 'pip3*' \) -print)"
    if [[ -n "$leftovers" ]]; then
      log "$op_ref: the image must hold no shell, apt or pip, but has: $leftovers"
      exit 1
    fi
    "${buildah[@]}" umount "$sbom_ctr" >/dev/null
    "${buildah[@]}" rm "$sbom_ctr" >/dev/null
  fi
  images+=("$op_ref $op_archive")

  # The job images: jobimages/<name>/Dockerfile, context jobimages/ (for the shared common.py).
  for dockerfile in "$repo"/jobimages/*/Dockerfile; do
    name="$(basename "$(dirname "$dockerfile")")"
    mapfile -t job_files < <(find "$repo/jobimages/common.py" "$repo/jobimages/$name" -type f \
      ! -path '*/__pycache__/*' | sort)
    job_key="$( (echo "$base_key $script_key"; hash_files "${job_files[@]}") | hash_text)"
    job_ref="localhost/nightshift/jobs-$name:dev"
    job_archive="$out/jobs-$name-$job_key.tar"
    if [[ ! -f "$job_archive" ]]; then
      load "$base_ref" "$base_archive"
      build "$job_ref" "$job_archive" "$repo/jobimages" "$dockerfile" "${base_args[@]}"
    fi
    images+=("$job_ref $job_archive")
  done
fi

printf '%s\n' "${images[@]}"
