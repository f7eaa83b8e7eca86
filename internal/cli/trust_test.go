package cli

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const shadowRunbookFile = `# Restart web when it crash-loops.
apiVersion: salve/v1
kind: Runbook
metadata: {name: restart-web}
spec:
  trigger:
    matchers: ['alertname="WebDown"']
    incidentKey: '{{ .Labels.namespace }}'
  safety:
    mode: shadow   # watching first
    shadowWindow: 20m
    cooldown: 30m
  steps:
    - {name: check, action: http.request, with: {url: "http://svc/health"}}
`

func TestRunbookEvidence(t *testing.T) {
	isolate(t)
	api := newFakeAPI(t, map[string]http.HandlerFunc{"GET /v1/runbooks/{name}/evidence": answer(http.StatusOK, `{
"summary":{"runbook":"restart-web","rung":"shadow","shadowRuns":3,"wouldHaveActed":3,"agreed":2,"disagreed":0,"resolvedOnItsOwn":1,"unresolved":0,
 "approved":0,"rejected":0,"evidenceRuns":3,"compared":2,"agreement":1,"selfResolvedShare":0.3333,
 "recent":[{"time":"2026-12-07T09:00:00Z","workflowId":"salve/restart-web/shop","verdict":"agreed","summary":"a person restarted shop/web"}]},
"policy":{"minRuns":3,"minAgreement":0.8},"next":"approve","allowed":true,
"backtest":{"from":"2026-11-30T10:00:00Z","to":"2026-12-07T10:00:00Z","alertStates":120,"started":4,"joined":9,"suppressed":5,"suppressedBy":{"cooldown":4,"max_runs_per_hour":1},"peakConcurrentRuns":2}}`)})
	out, _, code := api.run(t, "runbook", "evidence", "restart-web", "--backtest", "7d")
	require.Equal(t, 0, code)
	require.Equal(t, "backtest=7d", api.requests()[0].Query)
	for _, want := range []string{
		"Runbook restart-web is on rung shadow.",
		"resolved on its own", "1 (33% of those that would have acted)",
		"Agreement with people", "(100% of 2 compared)",
		"agreed               a person restarted shop/web",
		"would have started 4 runs, 9 alerts joined, 5 suppressed (cooldown 4, max_runs_per_hour 1); at most 2 at once.",
		"It may be promoted to approve: salve runbook promote restart-web --to approve --file FILE",
	} {
		require.Contains(t, out, want)
	}
}

func TestRunbookPromote(t *testing.T) {
	isolate(t)
	file := filepath.Join(t.TempDir(), "restart-web.yaml")
	require.NoError(t, os.WriteFile(file, []byte(shadowRunbookFile), 0o640))
	api := newFakeAPI(t, map[string]http.HandlerFunc{"POST /v1/runbooks/{name}/promote": answer(http.StatusOK,
		`{"runbook":"restart-web","from":"shadow","to":"approve","summary":{"runbook":"restart-web","rung":"shadow"},"source":"runbooks/restart-web.yaml","change":"..."}`)})

	// Without --write: the diff, and the file untouched.
	out, _, code := api.run(t, "runbook", "promote", "restart-web", "--to", "approve", "--file", file)
	require.Equal(t, 0, code)
	require.Contains(t, out, "Promoted restart-web from shadow to approve on its evidence.")
	require.Contains(t, out, "--- a/"+strings.TrimPrefix(file, "/")+"\n+++ b/")
	require.Contains(t, out, "-    mode: shadow   # watching first")
	require.Contains(t, out, "+    mode: enforce # watching first")
	require.Contains(t, out, "-    shadowWindow: 20m")
	require.Contains(t, out, "Not written")
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	require.Equal(t, shadowRunbookFile, string(b))
	require.Equal(t, map[string]any{"to": "approve"}, api.requests()[0].Body)

	// With --write: written, same permissions, comments kept.
	_, _, code = api.run(t, "runbook", "promote", "restart-web", "--to", "approve", "--file", file, "--write")
	require.Equal(t, 0, code)
	b, err = os.ReadFile(file)
	require.NoError(t, err)
	require.Contains(t, string(b), "# Restart web when it crash-loops.")
	require.Contains(t, string(b), "mode: enforce")
	require.Contains(t, string(b), "required: true")
	info, err := os.Stat(file)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o640), info.Mode().Perm())

	// Another runbook's file: refused before anything is written.
	other := filepath.Join(t.TempDir(), "other.yaml")
	require.NoError(t, os.WriteFile(other, []byte(strings.Replace(shadowRunbookFile, "name: restart-web", "name: other", 1)), 0o600))
	_, stderr, code := api.run(t, "runbook", "promote", "restart-web", "--to", "approve", "--file", other, "--write")
	require.Equal(t, 1, code)
	require.Contains(t, stderr, `is runbook "other", not restart-web`)
	b, err = os.ReadFile(other)
	require.NoError(t, err)
	require.Contains(t, string(b), "mode: shadow")

	// A refusal is the server's, said as it said it; nothing is written.
	refuse := newFakeAPI(t, map[string]http.HandlerFunc{"POST /v1/runbooks/{name}/promote": answer(http.StatusConflict,
		`{"error":"runbook restart-web stays on shadow: not enough evidence: 1 runs with evidence, 5 needed (trust.minRuns)"}`)})
	before, _ := os.ReadFile(file)
	_, stderr, code = refuse.run(t, "runbook", "promote", "restart-web", "--to", "enforce", "--file", file, "--write")
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "1 runs with evidence, 5 needed")
	after, _ := os.ReadFile(file)
	require.Equal(t, before, after)
}

// salve backtest --source salve reads the server's alert history and
// replays it locally: two crash loops of one namespace 10 minutes apart
// make one run and one cooldown suppression.
func TestBacktestFromSalveHistory(t *testing.T) {
	isolate(t)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "restart-web.yaml"), []byte(strings.Replace(shadowRunbookFile, "    shadowWindow: 20m\n", "", 1)), 0o600))
	start := time.Now().UTC().Add(-2 * time.Hour).Truncate(time.Second)
	alert := func(fp string, at time.Time) string {
		return `{"fingerprint":"` + fp + `","alertname":"WebDown","labels":{"alertname":"WebDown","namespace":"shop"},"startsAt":"` + at.Format(time.RFC3339) +
			`","receivedAt":"` + at.Format(time.RFC3339) + `","resolvedAt":"` + at.Add(time.Minute).Format(time.RFC3339) + `"}`
	}
	api := newFakeAPI(t, map[string]http.HandlerFunc{"GET /v1/alerts": answer(http.StatusOK,
		`{"alerts":[`+alert("00000000000000a1", start)+`,`+alert("00000000000000a2", start.Add(10*time.Minute))+`]}`)})
	out, _, code := api.run(t, "backtest", "--source", "salve", "--since", "3h", "--runbooks", dir, "-o", "json")
	require.Equal(t, 0, code)
	require.Contains(t, out, `"started": 1`)
	require.Contains(t, out, `"cooldown": 1`)
	require.Contains(t, api.requests()[0].Query, "since=")
}
