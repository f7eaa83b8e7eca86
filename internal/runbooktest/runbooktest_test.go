package runbooktest_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/activities"
	"github.com/salve-sre/salve/internal/runbooktest"
	"github.com/salve-sre/salve/runbooks"
)

func registry(t *testing.T) runbooks.StepCatalog {
	t.Helper()
	reg, err := activities.NewRegistry()
	require.NoError(t, err)
	return reg
}

// The shipped runbook library passes its own tests, and every runbook in
// it has at least one.
func TestLibrary(t *testing.T) {
	files, err := filepath.Glob("../../runbooks/tests/*.test.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	covered := map[string]bool{}
	for _, path := range files {
		f, err := runbooktest.Load(path)
		require.NoError(t, err)
		for _, rb := range f.Runbooks {
			abs, err := filepath.Abs(filepath.Join(filepath.Dir(path), rb))
			require.NoError(t, err)
			covered[abs] = true
		}
		for _, res := range runbooktest.RunFile(f, registry(t)) {
			require.True(t, res.Passed(), "%s: %s:\n%s", res.File, res.Case, strings.Join(res.Failures, "\n"))
		}
	}
	library, err := filepath.Glob("../../runbooks/*.yaml")
	require.NoError(t, err)
	for _, rb := range library {
		abs, err := filepath.Abs(rb)
		require.NoError(t, err)
		require.True(t, covered[abs], "runbook %s has no tests in runbooks/tests", rb)
	}
}

// A case whose expectations are wrong fails, and says how.
func TestMismatchesAreReported(t *testing.T) {
	f, err := runbooktest.Load("testdata/wrong.test.yaml")
	require.NoError(t, err)
	res := runbooktest.RunFile(f, registry(t))
	require.Len(t, res, 1)
	require.False(t, res[0].Passed())
	require.Equal(t, []string{
		`matches: want ["other"], got ["demo-http-check"]`,
		`incidentKey: want "SalveDemo/web-2", got "SalveDemo/web-1"`,
		`state: want "failed", got "succeeded"`,
		`steps: want steps ["remediate","verify"], got ["remediate","settle","verify"]`,
		`steps[0] (remediate).with.url: want "http://x", got "http://127.0.0.1:8080/healthz"`,
		`approvals: want ["remediate"], got []`,
	}, res[0].Failures)
	// The plan shows what really ran, with the canned output's effect.
	require.Equal(t, "succeeded", res[0].Plan.State)
	require.Equal(t, []string{"remediate", "settle", "verify"}, []string{res[0].Plan.Steps[0].Name, res[0].Plan.Steps[1].Name, res[0].Plan.Steps[2].Name})
}

// Canned outputs reach later steps' templates; a canned failure takes the
// onFailure path; a resolved alert under onResolved: cancel compensates.
func TestCannedOutputsFailuresAndResolution(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
		return p
	}
	write("rb.yaml", `apiVersion: salve/v1
kind: Runbook
metadata: {name: scale-then-check}
spec:
  trigger: {matchers: ['alertname="Busy"'], incidentKey: '{{ .Labels.service }}', onResolved: cancel}
  params:
    service: {fromLabel: service, required: true}
  steps:
    - {name: scale, action: http.request, with: {url: 'http://ops/{{ .Params.service | pathEscape }}/scale', method: POST}}
    - {name: report, action: http.request, with: {url: 'http://ops/report?was={{ .Steps.scale.Output.previous | queryEscape }}'}}
    - {name: wait, action: sleep, with: {duration: 10m}}
    - {name: verify, action: http.request, with: {url: 'http://ops/{{ .Params.service | pathEscape }}/health'}}
  onFailure:
    - {name: undo, action: http.request, with: {url: 'http://ops/{{ .Params.service | pathEscape }}/scale?to={{ .Steps.scale.Output.previous | queryEscape }}'}}
`)
	write("approval.yaml", `apiVersion: salve/v1
kind: Runbook
metadata: {name: needs-approval}
spec:
  safety: {approval: {required: true}}
  steps:
    - {name: act, action: http.request, with: {url: 'http://ops/act'}, approval: {required: true}}
`)
	write("dry.yaml", `apiVersion: salve/v1
kind: Runbook
metadata: {name: dry}
spec:
  safety: {mode: dry-run, approval: {required: true}}
  steps:
    - {name: scale, action: http.request, with: {url: 'http://ops/scale', method: POST}}
    - {name: report, action: http.request, with: {url: 'http://ops/report?was={{ .Steps.scale.Output.previous | queryEscape }}'}}
`)
	path := write("rb.test.yaml", `runbooks: [rb.yaml, approval.yaml, dry.yaml]
tests:
  - name: output flows on
    alert: {labels: {alertname: Busy, service: cart}}
    steps:
      scale: {output: {previous: 3}}
    expect:
      incidentKey: cart
      state: succeeded
      approvals: []
      steps:
        - {name: scale}
        - {name: report, with: {url: "http://ops/report?was=3"}}
        - {name: wait}
        - {name: verify}
  - name: verify fails and undo runs
    alert: {labels: {alertname: Busy, service: cart}}
    steps:
      scale: {output: {previous: 3}}
      verify: {error: still busy}
    expect:
      state: failed
      error: still busy
      onFailure:
        - {name: undo, state: succeeded, with: {url: "http://ops/cart/scale?to=3"}}
  - name: resolution cancels and compensates
    alert: {labels: {alertname: Busy, service: cart}}
    resolveAfter: 5m
    steps:
      scale: {output: {previous: 3}}
    expect:
      state: cancelled
      steps:
        - {name: scale, state: succeeded}
        - {name: report, state: succeeded}
        - {name: wait, state: failed}
      onFailure:
        - {name: undo, state: succeeded}
  - name: approvals are granted unless the case says otherwise
    runbook: needs-approval
    expect:
      state: succeeded
      approvals: [runbook, act]
      steps: [{name: act, state: succeeded}]
  - name: a rejected step does not run
    runbook: needs-approval
    decisions: {act: reject}
    expect:
      state: rejected
      steps: [{name: act, state: skipped}]
  - name: an approval nobody gives times out
    runbook: needs-approval
    decisions: {runbook: timeout}
    expect:
      state: failed
      error: no decision on the approval of the whole run within 15m0s
      steps: []
  - name: a dry run plans the steps with empty outputs where nothing acted
    runbook: dry
    expect:
      state: succeeded
      steps:
        - {name: scale, state: succeeded}
        - {name: report, with: {url: "http://ops/report?was="}}
  - name: a resolved alert starts nothing
    alert: {labels: {alertname: Busy, service: cart}, status: resolved}
    expect:
      matches: [scale-then-check]
      steps: []
`)
	f, err := runbooktest.Load(path)
	require.NoError(t, err)
	for _, res := range runbooktest.RunFile(f, registry(t)) {
		require.True(t, res.Passed(), "%s:\n%s", res.Case, strings.Join(res.Failures, "\n"))
	}
}

func TestLoadRejectsBadTestFiles(t *testing.T) {
	dir := t.TempDir()
	for body, want := range map[string]string{
		"runbooks: [x.yaml]\ntests:\n  - name: a\n    expect: {stat: failed}\n":                           "field stat not found",
		"tests:\n  - name: a\n    runbook: x\n":                                                           "runbooks: list the runbook files",
		"runbooks: [x.yaml]\ntests:\n  - {runbook: x}\n":                                                  "every test needs a name",
		"runbooks: [x.yaml]\ntests:\n  - {name: a}\n":                                                     "a manual launch (no alert or payload) needs runbook",
		"runbooks: [x.yaml]\ntests:\n  - {name: a, runbook: x}\n  - {name: a, runbook: x}\n":              `duplicate test name "a"`,
		"runbooks: [x.yaml]\ntests:\n  - {name: a, runbook: x, steps: {s: {error: e, output: {a: 1}}}}\n": "give output or error, not both",
	} {
		p := filepath.Join(dir, "t.test.yaml")
		require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
		_, err := runbooktest.Load(p)
		require.ErrorContains(t, err, want)
	}
}
