#!/usr/bin/env bash
# Builds the Kubernetes test control plane that internal/testenv.Kube runs:
#   - kube-apiserver, kube-controller-manager and kube-scheduler v1.34.4 as
#     one binary (the internal/tools/kube module), and
#   - kwok v0.8.0, which fakes nodes and pod status,
# into a versioned cache (${SALVE_CACHE:-$HOME/.cache/salve}/bin), and installs
# Debian's etcd-server if etcd is missing. Idempotent: a second run only
# checks. The first build takes ~15-20 minutes and ~2.5 GB of RAM on 2 cores.
#
# Environment: SALVE_CACHE (cache root), SALVE_BUILD_P (parallel compile
# jobs, default 2).
set -euo pipefail
cd "$(dirname "$0")/.."

KUBE_VERSION=1.34.4
KWOK_VERSION=v0.8.0
BIN_DIR="${SALVE_CACHE:-$HOME/.cache/salve}/bin"
KUBE_BIN="$BIN_DIR/kube-$KUBE_VERSION"
KWOK_BIN="$BIN_DIR/kwok-$KWOK_VERSION"
P="${SALVE_BUILD_P:-2}"

say() { printf '== %s (%s)\n' "$*" "$(date +%H:%M:%S)"; }
mkdir -p "$BIN_DIR"

if command -v etcd >/dev/null 2>&1; then
  say "etcd: $(command -v etcd) ($(etcd --version 2>/dev/null | head -1))"
else
  say "etcd missing: installing Debian etcd-server"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends etcd-server >/dev/null
  etcd --version | head -1
fi

if [ -x "$KUBE_BIN" ]; then
  say "kube: $KUBE_BIN is built"
else
  say "kube: building $KUBE_BIN from internal/tools/kube (slow the first time)"
  ldflags="-s -w -X k8s.io/component-base/version.gitVersion=v$KUBE_VERSION"
  ldflags+=" -X k8s.io/component-base/version.gitMajor=${KUBE_VERSION%%.*}"
  minor="${KUBE_VERSION#*.}"; ldflags+=" -X k8s.io/component-base/version.gitMinor=${minor%%.*}"
  start=$SECONDS
  (cd internal/tools/kube &&
    go build -p "$P" -trimpath -buildvcs=false -ldflags "$ldflags" -o "$KUBE_BIN.tmp" .)
  mv "$KUBE_BIN.tmp" "$KUBE_BIN"
  say "kube: built in $((SECONDS - start))s"
fi
"$KUBE_BIN" kube-apiserver --version

if [ -x "$KWOK_BIN" ]; then
  say "kwok: $KWOK_BIN is built"
else
  say "kwok: go install sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  start=$SECONDS
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  GOBIN="$tmp" GOFLAGS= go install -p "$P" -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  mv "$tmp/kwok" "$KWOK_BIN"
  say "kwok: built in $((SECONDS - start))s"
fi
"$KWOK_BIN" --version 2>/dev/null | head -1 || true
say "done: SALVE_KUBE_BIN=$KUBE_BIN SALVE_KWOK_BIN=$KWOK_BIN"
