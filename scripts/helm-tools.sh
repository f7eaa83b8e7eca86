#!/usr/bin/env bash
# Builds helm (helm.sh/helm/v3/cmd/helm from the Go module proxy) into the
# versioned cache (${SALVE_CACHE:-$HOME/.cache/salve}/bin/helm-VERSION), for
# the chart tests in deploy/. Idempotent: a second run only checks. The first
# build takes a few minutes on 2 cores.
#
# Environment: SALVE_CACHE (cache root), SALVE_BUILD_P (parallel compile
# jobs, default 2).
set -euo pipefail
cd "$(dirname "$0")/.."

HELM_VERSION=v3.22.0
BIN_DIR="${SALVE_CACHE:-$HOME/.cache/salve}/bin"
HELM_BIN="$BIN_DIR/helm-$HELM_VERSION"
P="${SALVE_BUILD_P:-2}"

say() { printf '== %s (%s)\n' "$*" "$(date +%H:%M:%S)"; }
mkdir -p "$BIN_DIR"

if [ -x "$HELM_BIN" ]; then
  say "helm: $HELM_BIN is built"
else
  say "helm: go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  start=$SECONDS
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  GOBIN="$tmp" GOFLAGS= go install -p "$P" -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  mv "$tmp/helm" "$HELM_BIN"
  say "helm: built in $((SECONDS - start))s"
fi
"$HELM_BIN" version --short
say "done: SALVE_HELM_BIN=$HELM_BIN"
