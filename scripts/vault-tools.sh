#!/usr/bin/env bash
# Builds the Vault dev server that internal/testenv.Vault runs: HashiCorp
# Vault v1.14.0 (MPL-2.0) used as a library — its core and HTTP handler,
# composed with the KV and Kubernetes secrets engines (no transit) and the
# approle auth method by internal/tools/vault (a separate module, so Vault's
# 800-module graph stays out of Salve's go.mod) — into a versioned cache
# (${SALVE_CACHE:-$HOME/.cache/salve}/bin/vault-1.14.0). Idempotent: a
# second run only checks. The first build takes ~10 CPU-minutes (13 min
# wall on a busy 2-core machine, plus module downloads) and ~1.4 GB of RAM.
#
# Environment: SALVE_CACHE (cache root), SALVE_BUILD_P (parallel compile
# jobs, default 2).
set -euo pipefail
cd "$(dirname "$0")/.."

VAULT_VERSION=1.14.0
BIN_DIR="${SALVE_CACHE:-$HOME/.cache/salve}/bin"
VAULT_BIN="$BIN_DIR/vault-$VAULT_VERSION"
P="${SALVE_BUILD_P:-2}"

say() { printf '== %s (%s)\n' "$*" "$(date +%H:%M:%S)"; }
mkdir -p "$BIN_DIR"

if [ -x "$VAULT_BIN" ]; then
  say "vault: $VAULT_BIN is built"
else
  say "vault: building $VAULT_BIN from internal/tools/vault (slow the first time)"
  start=$SECONDS
  (cd internal/tools/vault &&
    go build -p "$P" -trimpath -buildvcs=false -ldflags "-s -w" -o "$VAULT_BIN.tmp" .)
  mv "$VAULT_BIN.tmp" "$VAULT_BIN"
  say "vault: built in $((SECONDS - start))s ($(du -h "$VAULT_BIN" | cut -f1))"
fi
"$VAULT_BIN" version
say "done: SALVE_VAULT_BIN=$VAULT_BIN"
