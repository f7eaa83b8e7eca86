package app_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/internal/runs"
	"github.com/salve-sre/salve/triggers"
)

// keyRunbook keys incidents by the alert's instance label, which alert
// senders choose freely.
const keyRunbook = `apiVersion: salve/v1
kind: Runbook
metadata: {name: by-instance}
spec:
  trigger:
    matchers: ['alertname="Poison"']
    incidentKey: '{{ .Labels.instance }}'
  params:
    url: {fromAnnotation: target, required: true, pattern: 'http://127\.0\.0\.1:[0-9]+'}
  steps:
    - {name: fix, action: http.request, with: {url: '{{ .Params.url }}/fix/{{ .Labels.n | pathEscape }}', method: POST}}
`

// An attacker's webhook: 1,000 alerts whose incident key cannot render
// (no instance label), and alerts whose keys Temporal would refuse as
// workflow IDs (Unicode, control characters, spaces, 10,000 characters).
// The unrenderable ones are parked for a person without holding anything
// up; every odd key gets exactly one run, shown under its own key; and an
// ordinary alert sent after all of them still acts.
func TestPoisonAlertsNeverStallTheTrigger(t *testing.T) {
	tg := newTarget(t)
	dir := t.TempDir()
	writeRunbook(t, dir, "poison", keyRunbook)
	d := startDev(t, dir)

	t0 := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339Nano)
	alert := func(n int, labels map[string]string) string {
		labels["alertname"], labels["n"] = "Poison", fmt.Sprint(n)
		l, _ := json.Marshal(labels)
		return fmt.Sprintf(`{"status":"firing","labels":%s,"annotations":{"target":%q},"startsAt":%q,"fingerprint":"%016x"}`, l, tg.URL, t0, 0xf0000+n)
	}
	webhook := func(alerts []string) string {
		return `{"version":"4","groupKey":"g","status":"firing","receiver":"salve","alerts":[` + strings.Join(alerts, ",") + `]}`
	}
	const poison = 1000
	var batch []string
	for i := range poison {
		batch = append(batch, alert(i, map[string]string{})) // no instance: no incident key
	}
	require.Equal(t, http.StatusOK, postWebhook(t, d.URL, d.WebhookToken, webhook(batch)))
	// A NUL is refused at the door (no store keeps it); the rest is
	// accepted and must each get one run.
	require.Equal(t, http.StatusBadRequest, postWebhook(t, d.URL, d.WebhookToken, webhook([]string{alert(poison+100, map[string]string{"instance": "nul\x00byte"})})))
	oddKeys := []string{"café-1", "ctrl\x01char\x1b[31m", "with space", "slash/and~tilde", strings.Repeat("k", 10000), "日本語"}
	batch = nil
	for i, k := range oddKeys {
		batch = append(batch, alert(poison+i, map[string]string{"instance": k}))
	}
	require.Equal(t, http.StatusOK, postWebhook(t, d.URL, d.WebhookToken, webhook(batch)))
	sent := time.Now()
	require.Equal(t, http.StatusOK, postWebhook(t, d.URL, d.WebhookToken, webhook([]string{alert(9999, map[string]string{"instance": "db-1"})})))

	require.Eventually(t, func() bool { return tg.count("/fix/9999") == 1 }, 2*time.Minute, 20*time.Millisecond,
		"the ordinary alert sent after the poison never acted")
	t.Logf("ordinary alert after %d poison alerts: first step after %s", poison, time.Since(sent).Round(time.Millisecond))

	// Every odd key acted once, and its run shows the key as it was.
	require.Eventually(t, func() bool {
		for i := range oddKeys {
			if tg.count(fmt.Sprintf("/fix/%d", poison+i)) != 1 {
				return false
			}
		}
		return true
	}, time.Minute, 50*time.Millisecond)
	var list struct {
		Runs []runs.Summary `json:"runs"`
	}
	// Listing goes through Temporal's visibility store, which lags the
	// runs a little (more on a busy machine).
	require.Eventually(t, func() bool {
		getJSON(t, d.URL+"/v1/runs?runbook=by-instance", &list)
		return len(list.Runs) >= len(oddKeys)+1
	}, 30*time.Second, 100*time.Millisecond)
	keys := map[string]string{}
	for _, r := range list.Runs {
		keys[r.IncidentKey] = r.WorkflowID
	}
	require.Len(t, list.Runs, len(oddKeys)+1, "exactly one run per incident")
	for _, k := range oddKeys {
		require.Equal(t, domain.WorkflowID("by-instance", k), keys[k], "run for key %q", k)
	}

	// The poison is parked, visible and counted, not retried for ever.
	var failed struct {
		FailedAlerts []triggers.FailedAlert `json:"failedAlerts"`
	}
	require.Eventually(t, func() bool {
		getJSON(t, d.URL+"/v1/failed-alerts", &failed)
		return len(failed.FailedAlerts) == poison
	}, time.Minute, 200*time.Millisecond)
	f := failed.FailedAlerts[0]
	require.Equal(t, "by-instance", f.Runbook)
	require.Contains(t, f.Reason, "instance")
	require.NotZero(t, f.StreamSeq)
	require.Eventually(t, func() bool {
		return metricLine(t, d.URL, "salve_trigger_parked_alerts") == fmt.Sprint(poison)
	}, 10*time.Second, 100*time.Millisecond)
	require.Eventually(t, func() bool {
		return len(auditEvents(t, d.URL, "action="+domain.ActionTriggerFailed)) == poison
	}, 30*time.Second, 200*time.Millisecond, "every parked alert is audited as trigger.failed")

	// A person retries one: it goes back to the trigger and, still
	// without its label, is parked again (later), not lost.
	req, err := http.NewRequest(http.MethodPost, d.URL+"/v1/failed-alerts/"+f.ID+"/retry", strings.NewReader(`{"reason":"checking"}`))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+d.AdminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	require.Eventually(t, func() bool {
		getJSON(t, d.URL+"/v1/failed-alerts", &failed)
		for _, g := range failed.FailedAlerts {
			if g.ID == f.ID {
				return g.FailedAt.After(f.FailedAt) && g.StreamSeq == f.StreamSeq
			}
		}
		return false
	}, 30*time.Second, 100*time.Millisecond, "the retried alert was not handled (and parked) again")
	require.Eventually(t, func() bool {
		return len(auditEvents(t, d.URL, "action="+domain.ActionTriggerRetried)) == 1
	}, 30*time.Second, 200*time.Millisecond, "the retry is audited with who and why")
}

// metricLine returns the value of an unlabelled metric from /metrics.
func metricLine(t *testing.T, base, name string) string {
	t.Helper()
	resp, err := apiGet(base + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	return ""
}
