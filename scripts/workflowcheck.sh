#!/usr/bin/env bash
# Runs Temporal's workflowcheck on the workflow code (./workflows/...): it
# follows every call a workflow makes, into other packages and the standard
# library, and fails on what is not deterministic (time.Now, map iteration,
# goroutines, ...). The replay tests catch what changed a recorded history;
# this catches what would make one differ between two replays.
# workflows/workflowcheck.yaml names the calls it cannot prove
# deterministic that are, and why.
#
# Built once per version into ${SALVE_CACHE:-$HOME/.cache/salve}/bin (about
# 10 seconds).
set -euo pipefail
cd "$(dirname "$0")/.."

WORKFLOWCHECK_VERSION=v0.6.0
BIN_DIR="${SALVE_CACHE:-$HOME/.cache/salve}/bin"
BIN="$BIN_DIR/workflowcheck-$WORKFLOWCHECK_VERSION"
mkdir -p "$BIN_DIR"
if [ ! -x "$BIN" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  GOBIN="$tmp" GOFLAGS= go install -trimpath "go.temporal.io/sdk/contrib/tools/workflowcheck@$WORKFLOWCHECK_VERSION"
  mv "$tmp/workflowcheck" "$BIN"
fi
"$BIN" -config workflows/workflowcheck.yaml ./workflows/...
echo "workflowcheck $WORKFLOWCHECK_VERSION: the workflows are deterministic"
