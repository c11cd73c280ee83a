#!/usr/bin/env bash
# ensure-packages.sh PKG...: install the Debian packages that are missing (apt-get, as root).
# Quick and silent when everything is installed already; `make test` relies on it on a fresh
# machine (the real node needs runc, nftables and iptables; the image build buildah and
# debootstrap).
set -euo pipefail
missing=()
for pkg in "$@"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0
if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null; then
  echo "ensure-packages: please install these Debian packages: ${missing[*]}" >&2
  exit 1
fi
echo "ensure-packages: apt-get install ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
