#!/usr/bin/env bash
# Builds Salve's container image without a container engine: static salve
# binaries for each platform, assembled with the files a static Go program
# needs into a multi-platform OCI archive (internal/tools/image).
#
#   bash scripts/image.sh                      # linux/amd64 and linux/arm64
#   bash scripts/image.sh --platforms linux/amd64 --out /tmp/salve.tar
#
# Load it with `podman load -i dist/salve-image.tar` or `docker load -i ...`
# (Docker 25+), push it with `skopeo copy oci-archive:dist/salve-image.tar
# docker://REGISTRY/salve:TAG`. The image is named after the chart's
# default (ghcr.io/salve-sre/salve:<appVersion>), so the chart installs it
# as built.
set -euo pipefail
cd "$(dirname "$0")/.."

platforms="linux/amd64 linux/arm64"
out=dist/salve-image.tar
while [ $# -gt 0 ]; do
  case "$1" in
    --platforms) platforms="${2//,/ }"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "image.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
  esac
done

# One home for the version: the chart's appVersion.
version=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' deploy/helm/salve/Chart.yaml)
[ -n "$version" ] || { echo "image.sh: no appVersion in deploy/helm/salve/Chart.yaml" >&2; exit 1; }
repo=$(sed -n '/^image:/,/^[^ ]/s/^  repository: *//p' deploy/helm/salve/values.yaml)
ref="${repo:-ghcr.io/salve-sre/salve}:$version"
revision=$(git rev-parse HEAD 2>/dev/null || true)
# The commit's time makes the image reproducible; outside git, the epoch.
created=$(git log -1 --format=%cI 2>/dev/null || echo 1970-01-01T00:00:00Z)
# A work tree with changes is not the commit: say so in the label.
if [ -n "$revision" ] && [ -n "$(git status --porcelain 2>/dev/null)" ]; then revision="$revision-dirty"; fi

bindir=$(mktemp -d)
trap 'rm -rf "$bindir"' EXIT
args=()
for p in $platforms; do
  arch=${p#linux/}
  echo "image.sh: building salve $version for $p (static, CGO_ENABLED=0)"
  CGO_ENABLED=0 GOOS=linux GOARCH="$arch" go build -trimpath -buildvcs=false \
    -ldflags "-s -w -X github.com/salve-sre/salve/internal/cli.Version=$version" \
    -o "$bindir/$arch/salve" ./cmd/salve
  args+=(--binary "$p=$bindir/$arch/salve")
done

case "$out" in /*) abs_out="$out" ;; *) abs_out="$PWD/$out" ;; esac
(cd internal/tools/image && go run . --out "$abs_out" --ref "$ref" --version "$version" \
  --revision "$revision" --created "$created" "${args[@]}")
ls -l "$out"
