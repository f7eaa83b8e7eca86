#!/usr/bin/env bash
# Builds the Jaeger server the tracing tests run (internal/testenv.Jaeger):
# Jaeger v1.75.0 (Apache-2.0), cmd/jaeger — "Jaeger backend v2", an
# OpenTelemetry collector distribution — from internal/tools/jaeger (a
# separate module, so Jaeger's dependencies stay out of Salve's go.mod),
# into a versioned cache (${SALVE_CACHE:-$HOME/.cache/salve}/bin/jaeger-v1.75.0).
# Idempotent: a second run only checks. The first build takes ~3.5 minutes
# on a 2-core machine (plus ~30 s of module downloads); the binary is 85 MB.
#
# Environment: SALVE_CACHE (cache root), SALVE_BUILD_P (parallel compile
# jobs, default 2).
set -euo pipefail
cd "$(dirname "$0")/.."

JAEGER_VERSION=v1.75.0
BIN_DIR="${SALVE_CACHE:-$HOME/.cache/salve}/bin"
JAEGER_BIN="$BIN_DIR/jaeger-$JAEGER_VERSION"
P="${SALVE_BUILD_P:-2}"

say() { printf '== %s (%s)\n' "$*" "$(date +%H:%M:%S)"; }
mkdir -p "$BIN_DIR"

if [ -x "$JAEGER_BIN" ]; then
  say "jaeger: $JAEGER_BIN is built"
else
  say "jaeger: building $JAEGER_BIN from internal/tools/jaeger (slow the first time)"
  start=$SECONDS
  (cd internal/tools/jaeger &&
    go build -p "$P" -trimpath -buildvcs=false -ldflags "-s -w" -o "$JAEGER_BIN.tmp" github.com/jaegertracing/jaeger/cmd/jaeger)
  mv "$JAEGER_BIN.tmp" "$JAEGER_BIN"
  say "jaeger: built in $((SECONDS - start))s ($(du -h "$JAEGER_BIN" | cut -f1))"
fi
"$JAEGER_BIN" version 2>/dev/null | tail -1; echo
say "done: SALVE_JAEGER_BIN=$JAEGER_BIN"
