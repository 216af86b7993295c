#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager and kube-scheduler v1.20.2 once, from Debian's
# `kubernetes` source package and Debian's Go, and caches them outside the repository. The tests in
# tests/kubernetes/ run against these binaries; a second run finds the cache and returns at once.
#   TINGYU_KUBE_CACHE  where the binaries go (default /var/cache/tingyu/kube-1.20.2)
set -euo pipefail

CACHE="${TINGYU_KUBE_CACHE:-/var/cache/tingyu/kube-1.20.2}"
BINARIES=(kube-apiserver kube-controller-manager kube-scheduler)

have_all() {
  for b in "${BINARIES[@]}"; do [[ -x "$CACHE/$b" ]] || return 1; done
}

if have_all; then
  echo "kubernetes binaries cached in $CACHE"
  exit 0
fi

SUDO=""
[[ "$(id -u)" == 0 ]] || SUDO="sudo"

# Debian packages: Go 1.19 builds 1.20.2; rsync and libpopt0 are used by its Makefile; etcd is the store.
missing=()
for p in golang-1.19-go rsync libpopt0 etcd-server dpkg-dev; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

# The source package needs a deb-src line for bookworm main.
SRC_LIST=/etc/apt/sources.list.d/tingyu-kube-src.sources
if ! apt-cache showsrc kubernetes >/dev/null 2>&1 || [[ -z "$(apt-cache showsrc kubernetes 2>/dev/null)" ]]; then
  printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    | $SUDO tee "$SRC_LIST" >/dev/null
  $SUDO apt-get update -qq
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/tingyu-kube-build.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
apt-get source --download-only kubernetes >/dev/null
ORIG="$(ls kubernetes_*.orig.tar.gz | head -n1)"
mkdir src
tar -xzf "$ORIG" -C src --strip-components=1
DEBIAN_TAR="$(ls kubernetes_*.debian.tar.* | head -n1)"
tar -xf "$DEBIAN_TAR" -C src
cd src
if [[ -f debian/patches/series ]]; then
  while read -r patch; do
    [[ -z "$patch" || "$patch" == \#* ]] && continue
    patch -p1 -s < "debian/patches/$patch"
  done < debian/patches/series
fi

export PATH="/usr/lib/go-1.19/bin:$PATH" GOFLAGS= GOPROXY=off GOTOOLCHAIN=local
# The version stamp is read from git, which an unpacked tarball lacks; give it the release.
export KUBE_GIT_VERSION=v1.20.2 KUBE_GIT_TREE_STATE=clean
make WHAT="cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler"

$SUDO mkdir -p "$CACHE"
for b in "${BINARIES[@]}"; do
  $SUDO install -m 0755 "_output/bin/$b" "$CACHE/$b.tmp"
  $SUDO mv "$CACHE/$b.tmp" "$CACHE/$b"
done
echo "kubernetes binaries built into $CACHE"
