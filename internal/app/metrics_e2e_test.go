package app_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/internal/runs"
)

const tidyRunbook = `apiVersion: salve/v1
kind: Runbook
metadata: {name: tidy, owner: team-ops}
spec:
  trigger:
    matchers: ['alertname="DiskFull"']
    incidentKey: '{{ .Labels.instance }}'
  params:
    url: {fromAnnotation: target, required: true, pattern: 'http://127\.0\.0\.1:[0-9]+'}
  toil: {manualMinutes: 20}
  steps:
    - {name: clean, action: http.request, with: {url: '{{ .Params.url }}/clean', method: POST}}
`

const idleRunbook = `apiVersion: salve/v1
kind: Runbook
metadata: {name: idle}
spec:
  trigger:
    matchers: ['alertname="NeverFires"']
  toil: {manualMinutes: 5}
  steps:
    - {name: noop, action: http.request, with: {url: 'http://127.0.0.1:1/never'}}
`

// groupWebhook is one Alertmanager group of alerts with the same name, one
// per instance (fingerprint "fp-<instance>").
func groupWebhook(status, alertname, target string, startsAt time.Time, instances ...string) string {
	var alerts []string
	for _, in := range instances {
		alerts = append(alerts, fmt.Sprintf(`{"status":%q,"labels":{"alertname":%q,"instance":%q},"annotations":{"target":%q},
"startsAt":%q,"endsAt":"0001-01-01T00:00:00Z","fingerprint":%q}`, status, alertname, in, target, startsAt.UTC().Format(time.RFC3339Nano), fingerprintOf("fp-"+in)))
	}
	return fmt.Sprintf(`{"version":"4","groupKey":"g","status":%q,"receiver":"salve","externalURL":"http://am","alerts":[%s]}`,
		status, strings.Join(alerts, ","))
}

// scrape reads GET /metrics (no token: Prometheus scrapes it) and parses
// the text exposition format.
func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+"/metrics", nil)
	require.NoError(t, err)
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	return mfs
}

// sampleValue finds the series of name with exactly these labels
// ("k=v" pairs): a counter's or gauge's value, a histogram's count.
func sampleValue(mfs map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	mf, ok := mfs[name]
	if !ok {
		return 0, false
	}
	for _, m := range mf.GetMetric() {
		got := map[string]string{}
		for _, lp := range m.GetLabel() {
			got[lp.GetName()] = lp.GetValue()
		}
		want := map[string]string{}
		for _, l := range labels {
			k, v, _ := strings.Cut(l, "=")
			want[k] = v
		}
		// The text format drops empty label values: runbook="" is absent.
		for k, v := range want {
			if v == "" {
				if _, present := got[k]; !present {
					got[k] = ""
				}
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		case m.Untyped != nil:
			return m.GetUntyped().GetValue(), true
		}
	}
	return 0, false
}

// A real `salve dev` counts what it did: two incidents run to success, the
// same webhook again (JetStream deduplicates), a resolution, an alert no
// runbook wants, a webhook with a wrong token. A runbook that never ran
// shows zeros, not missing series.
func TestMetricsScenario(t *testing.T) {
	tg := newTarget(t)
	dir := t.TempDir()
	writeRunbook(t, dir, "tidy", tidyRunbook)
	writeRunbook(t, dir, "idle", idleRunbook)
	d := startDev(t, dir)
	t0 := time.Now().Add(-time.Minute).Truncate(time.Second)

	// Before anything happened, the runbooks' series exist at zero.
	mfs := scrape(t, d.URL)
	v, ok := sampleValue(mfs, "salve_runs_total", "runbook=tidy", "outcome=succeeded")
	require.True(t, ok)
	require.Zero(t, v)

	require.Equal(t, http.StatusUnauthorized, postWebhook(t, d.URL, "wrong-token", groupWebhook("firing", "DiskFull", tg.URL, t0, "web-1")))
	firing := groupWebhook("firing", "DiskFull", tg.URL, t0, "web-1", "web-2")
	require.Equal(t, http.StatusOK, postWebhook(t, d.URL, d.WebhookToken, firing))
	waitRunStatus(t, d.URL, "salve/tidy/web-1", runs.StatusSucceeded, time.Minute)
	waitRunStatus(t, d.URL, "salve/tidy/web-2", runs.StatusSucceeded, time.Minute)
	require.Equal(t, 2, tg.count("/clean"))

	// Alertmanager retries the same group: stored once, counted as duplicates.
	require.Equal(t, http.StatusOK, postWebhook(t, d.URL, d.WebhookToken, firing))
	require.Equal(t, http.StatusOK, postWebhook(t, d.URL, d.WebhookToken, groupWebhook("resolved", "DiskFull", tg.URL, t0, "web-1")))
	require.Equal(t, http.StatusOK, postWebhook(t, d.URL, d.WebhookToken, groupWebhook("firing", "NobodyCares", tg.URL, t0, "db-1")))

	// The trigger handles stored alerts asynchronously: wait for the last
	// two decisions, then check every count exactly.
	require.Eventually(t, func() bool {
		mfs = scrape(t, d.URL)
		res, _ := sampleValue(mfs, "salve_trigger_decisions_total", "runbook=tidy", "decision=resolved_signalled")
		nm, _ := sampleValue(mfs, "salve_trigger_decisions_total", "runbook=", "decision=no_match")
		return res == 1 && nm == 1
	}, 30*time.Second, 100*time.Millisecond)

	const manualMinutes = 20
	type expect struct {
		name   string
		labels []string
		value  float64
	}
	want := []expect{
		{"salve_ingest_requests_total", []string{"code=200"}, 4},
		{"salve_ingest_requests_total", []string{"code=401"}, 1},
		{"salve_ingest_requests_total", []string{"code=503"}, 0},
		{"salve_ingest_publish_seconds", nil, 4}, // count: the 401 never reached JetStream
		{"salve_alerts_received_total", []string{"status=firing"}, 5},
		{"salve_alerts_received_total", []string{"status=resolved"}, 1},
		{"salve_alerts_deduplicated_total", nil, 2},
		{"salve_trigger_decisions_total", []string{"runbook=tidy", "decision=started"}, 2},
		{"salve_trigger_decisions_total", []string{"runbook=tidy", "decision=joined"}, 0},
		{"salve_trigger_decisions_total", []string{"runbook=tidy", "decision=resolved_signalled"}, 1},
		{"salve_trigger_decisions_total", []string{"runbook=tidy", "decision=suppressed"}, 0},
		{"salve_trigger_decisions_total", []string{"runbook=", "decision=no_match"}, 1},
		{"salve_runs_total", []string{"runbook=tidy", "outcome=succeeded"}, 2},
		{"salve_runs_total", []string{"runbook=tidy", "outcome=failed"}, 0},
		{"salve_run_duration_seconds", []string{"runbook=tidy"}, 2},
		{"salve_toil_saved_seconds_total", []string{"runbook=tidy"}, 2 * manualMinutes * 60},
		{"salve_step_duration_seconds", []string{"kind=http.request", "outcome=succeeded"}, 2},
		{"salve_step_duration_seconds", []string{"kind=http.request", "outcome=failed"}, 0},
		{"salve_approvals_pending", nil, 0},
		{"salve_approval_wait_seconds", nil, 0},
		{"salve_credentials_issued_total", nil, 0},
		{"salve_credentials_revoked_total", nil, 0},
		{"salve_runbooks_loaded", nil, 2},
		// The runbook that never ran: its series are there, at zero.
		{"salve_toil_saved_seconds_total", []string{"runbook=idle"}, 0},
		{"salve_run_duration_seconds", []string{"runbook=idle"}, 0},
	}
	for _, o := range []string{"succeeded", "failed", "cancelled", "rejected"} {
		want = append(want, expect{"salve_runs_total", []string{"runbook=idle", "outcome=" + o}, 0})
	}
	for _, dec := range []string{"started", "joined", "resolved_signalled", "suppressed"} {
		want = append(want, expect{"salve_trigger_decisions_total", []string{"runbook=idle", "decision=" + dec}, 0})
	}
	for _, w := range want {
		got, ok := sampleValue(mfs, w.name, w.labels...)
		require.True(t, ok, "no series %s%v", w.name, w.labels)
		require.Equal(t, w.value, got, "%s%v", w.name, w.labels)
	}

	// No label anywhere carries an instance, fingerprint, run or incident.
	for name, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				require.NotRegexp(t, `web-|db-1|fp-|salve/`, lp.GetValue(), "%s{%s}", name, lp.GetName())
			}
		}
	}
}
