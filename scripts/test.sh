#!/usr/bin/env bash
# The whole test suite, after installing what it needs. The README's test
# command and CI (.ci/run) both run exactly this script.
#
# Needs: Go (see go.mod) and, for the Alertmanager end-to-end test and the
# prometheus.* step tests, Debian's prometheus-alertmanager and prometheus
# packages, which this script installs if missing; for the Kubernetes step
# tests, a real control plane (kube-apiserver, controller-manager, scheduler
# from k8s.io/kubernetes, kwok fake nodes, Debian etcd) that
# scripts/kube-tools.sh builds into ~/.cache/salve/bin, once per version; and
# for the credential tests a real Vault server that scripts/vault-tools.sh
# builds the same way (and Jaeger, scripts/jaeger-tools.sh, for the tracing
# tests); for the dashboard's browser test Debian's chromium.
# Tests never skip because a server is missing: they fail and say so.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s (%s)\n' "$*" "$(date +%H:%M:%S)"; }

step "installing test dependencies"
missing=()
command -v prometheus-alertmanager >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
command -v amtool >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing+=(postgresql)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v podman >/dev/null 2>&1 || missing+=(podman)
command -v crun >/dev/null 2>&1 || missing+=(crun)
if [ "${#missing[@]}" -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
prometheus-alertmanager --version 2>&1 | head -1
prometheus --version 2>&1 | head -1
ls -d /usr/lib/postgresql/*/bin/postgres
podman --version

# The image test runs Salve's image under podman (crun). crun refuses a
# hybrid cgroup layout whose cgroup v2 side holds a controller; on these
# machines that is hugetlb alone, which moves to v1 once a v1 hierarchy
# for it is mounted. Nothing else on the machine uses it.
if [ -s /sys/fs/cgroup/unified/cgroup.controllers ] && [ ! -d /sys/fs/cgroup/hugetlb ] &&
   [ "$(cat /sys/fs/cgroup/unified/cgroup.controllers)" = "hugetlb" ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo mkdir -p /sys/fs/cgroup/hugetlb && $sudo mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb ||
    echo "warning: could not move hugetlb to a v1 hierarchy; the container image test will say why podman cannot run"
fi
chromium --version 2>&1 | head -1
go version

step "building the Kubernetes test control plane (cached by version; the first build takes ~20 minutes)"
bash scripts/kube-tools.sh

step "building the Vault test server (cached by version; the first build takes ~10 minutes)"
bash scripts/vault-tools.sh

step "building helm for the chart tests in deploy/ (cached by version; the first build takes ~4 minutes)"
bash scripts/helm-tools.sh

step "building the Jaeger test server (cached by version; the first build takes ~4 minutes)"
bash scripts/jaeger-tools.sh

step "downloading modules"
go mod download

# One build configuration for everything but the race phase: static
# (no cgo) and with paths trimmed, as the container image's binary is
# built, so the image test, the end-to-end tests' shared salve binary and
# the test binaries share one compile of the embedded Temporal server.
export CGO_ENABLED=0 GOFLAGS="${GOFLAGS:+$GOFLAGS }-trimpath"

step "checking gofmt, go vet, go mod tidy"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.salve/*'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi
go vet ./...
go mod tidy -diff

step "checking the workflows are deterministic: Temporal's workflowcheck"
bash scripts/workflowcheck.sh

step "checking the runbook library: salve runbook validate + salve runbook test"
go run ./cmd/salve runbook validate runbooks
go run ./cmd/salve runbook test runbooks/tests

# The race detector runs on the packages whose own code is concurrent and
# tested in-process (trigger lanes, safety guard, audit recorder, bus,
# API, client, activities). Packages whose tests link the embedded
# Temporal server run without it: a race build of Temporal took most of
# the suite's cold time, and their tests drive Salve as whole processes
# or servers, where the race detector adds cost and finds nothing of ours
# that the race-checked packages do not exercise.
step "listing packages: race-checked, and those linking the embedded Temporal server"
race=() plain=()
for pkg in $(go list ./...); do
  if go list -deps -test "$pkg" | grep -qx 'go.temporal.io/server/temporal'; then
    plain+=("$pkg")
  else
    race+=("$pkg")
  fi
done
echo "race-checked: ${#race[@]} packages; without -race (embedded Temporal): ${plain[*]}"

step "running race-checked tests"
CGO_ENABLED=1 go test -race -count=1 -timeout 30m "${race[@]}"

step "running the end-to-end tests (first run builds the embedded Temporal server: expect 10-20 minutes on 2 cores)"
go test -count=1 -timeout 60m "${plain[@]}"

step "fuzzing outside input briefly (webhooks, runbook and SLO files, API bodies, the event stream, notification config, incident keys, backtest's Prometheus answers and --match)"
# Each target's seed corpus already ran as a unit test above; this explores
# beyond it with 5,000 inputs each (seconds). A crash fails the build and leaves the
# input under testdata/fuzz/ to commit as a regression case. The budget
# is a count of inputs, not a duration: with a duration, Go 1.26's fuzz
# coordinator can fail a target with a bare "context deadline exceeded"
# when a worker on a busy machine misses the deadline (golang/go#75804,
# fixed in Go 1.27); a count has no deadline to race.
for target in "./triggers FuzzDecodeWebhook" "./runbooks FuzzParse" "./internal/api FuzzOperateBodies" \
              "./internal/client FuzzSSE" "./activities/notify FuzzNewNeverQuotesURL" "./internal/domain FuzzWorkflowID" \
              "./runbooks FuzzRenderKeepsStructure" "./runbooks FuzzSetRung" "./internal/backtest FuzzIntervals" "./internal/backtest FuzzSelector" \
              "./slos FuzzParse"; do
  set -- $target
  go test -run '^$' -fuzz "^$2\$" -fuzztime "${SALVE_FUZZTIME:-5000x}" -fuzzminimizetime 5s "$1"
done
