package app_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/converter"

	"github.com/salve-sre/salve/internal/audit"
	"github.com/salve-sre/salve/internal/runs"
	"github.com/salve-sre/salve/internal/testenv"
	"github.com/salve-sre/salve/internal/timeline"
	"github.com/salve-sre/salve/workflows"
)

const flapRunbook = `apiVersion: salve/v1
kind: Runbook
metadata: {name: flap}
spec:
  trigger:
    matchers: ['alertname="Flappy"']
    incidentKey: '{{ .Labels.instance }}'
  params:
    url: {fromAnnotation: target, required: true, pattern: 'http://127\.0\.0\.1:[0-9]+'}
  steps:
    - {name: act, action: http.request, with: {url: '{{ .Params.url }}/act', method: POST}}
    - {name: hold, action: sleep, with: {duration: 3s}}
`

// The same webhook twice (an Alertmanager retry or HA pair), then the alert
// resolving and firing again while the run is going: one run, one action.
func TestDuplicatesAndFlapsMakeExactlyOneRun(t *testing.T) {
	tg := newTarget(t)
	dir := t.TempDir()
	writeRunbook(t, dir, "flap", flapRunbook)
	d := startDev(t, dir)

	t0 := time.Now().Add(-time.Minute).Truncate(time.Second)
	ann := map[string]string{"target": tg.URL}
	firing := webhook("firing", "Flappy", "web-1", "f00d", t0, ann)
	require.Equal(t, http.StatusOK, postWebhook(t, d.URL, d.WebhookToken, firing))
	require.Equal(t, http.StatusOK, postWebhook(t, d.URL, d.WebhookToken, firing))
	require.Eventually(t, func() bool { return tg.count("/act") >= 1 }, 30*time.Second, 50*time.Millisecond)
	require.Equal(t, http.StatusOK, postWebhook(t, d.URL, d.WebhookToken, webhook("resolved", "Flappy", "web-1", "f00d", t0, ann)))
	require.Equal(t, http.StatusOK, postWebhook(t, d.URL, d.WebhookToken, webhook("firing", "Flappy", "web-1", "f00d", t0.Add(20*time.Second), ann)))

	const wfID = "salve/flap/web-1"
	det := waitRunStatus(t, d.URL, wfID, runs.StatusSucceeded, time.Minute)
	require.NotNil(t, det.Run, det.RunError)
	// The run saw the first firing, the resolution and the re-fire; the
	// duplicate post was collapsed by JetStream.
	require.Len(t, det.Run.Alerts, 3, "%+v", det.Run.Alerts)
	require.Equal(t, "firing", det.Run.Alerts[2].Status)

	var ours []runs.Summary
	for _, r := range listRuns(t, d.URL) {
		if r.WorkflowID == wfID {
			ours = append(ours, r)
		}
	}
	require.Len(t, ours, 1, "exactly one run for the incident")
	require.Equal(t, 1, tg.count("/act"), "the action ran exactly once")

	// Every decision and action of the run is in the audit chain, once.
	want := []string{"trigger.matched", "run.started", "step.started", "step.succeeded", "run.signalled", "run.joined", "run.finished"}
	var got map[string]int
	require.Eventually(t, func() bool {
		got = map[string]int{}
		for _, r := range auditEvents(t, d.URL, "workflowId="+wfID) {
			got[r.Event.Action]++
		}
		return got["run.finished"] == 1
	}, 30*time.Second, 100*time.Millisecond, "audit events of the run: %v", got)
	for _, a := range want {
		require.Equal(t, 1, got[a], "audit action %s: %v", a, got)
	}
	saveHistory(t, d.TemporalAddr, wfID, det.RunID, "flap")
	// Every worker polling runs the current revision: the run has it.
	h := fetchHistory(t, d.TemporalAddr, wfID, det.RunID)
	var in workflows.Input
	require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(h.Events[0].GetWorkflowExecutionStartedEventAttributes().GetInput(), &in))
	require.Equal(t, workflows.CurrentRevision, in.Revision)

	// The incident timeline tells the story in order, from the real run.
	var tl timeline.Timeline
	getJSON(t, d.URL+"/v1/timelines/"+wfID+"?format=json", &tl)
	require.Equal(t, "web-1", tl.Incident)
	require.Equal(t, []string{wfID}, tl.Runs)
	var story []string
	for _, e := range tl.Entries {
		story = append(story, e.Text)
	}
	requireInOrder(t, story,
		"alert Flappy fired",
		"runbook flap matched; run started",
		"run of flap started",
		"step act (http.request) started",
		"step act succeeded",
		"alert Flappy resolved",
		"run of flap finished: succeeded",
	)
	resp, err := apiGet(d.URL + "/v1/timelines/web-1?format=markdown")
	require.NoError(t, err)
	md, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, string(md), "# Incident timeline: web-1")

	// The incidents read model knows when the alert fired and resolved.
	var alerts struct {
		Alerts []struct {
			Fingerprint     string  `json:"fingerprint"`
			DurationSeconds float64 `json:"durationSeconds"`
		} `json:"alerts"`
	}
	require.Eventually(t, func() bool {
		getJSON(t, d.URL+"/v1/alerts?alertname=Flappy", &alerts)
		return len(alerts.Alerts) == 2
	}, 30*time.Second, 100*time.Millisecond, "%+v", alerts)

	var res audit.VerifyResult
	getJSON(t, d.URL+"/v1/audit/verify", &res)
	require.True(t, res.OK, res.Problem)
	require.NotNil(t, res.Anchor, "the recorder anchors the chain head")
}

const amRunbook = `apiVersion: salve/v1
kind: Runbook
metadata: {name: am-e2e}
spec:
  trigger:
    matchers: ['alertname="SalveE2E"']
  params:
    url: {fromAnnotation: target, required: true, pattern: 'http://127\.0\.0\.1:[0-9]+'}
  steps:
    - {name: fix, action: http.request, with: {url: '{{ .Params.url }}/fix', method: POST}}
`

// A real Alertmanager delivers an alert added with amtool; the runbook's
// HTTP step hits the target exactly once and the run shows as succeeded.
func TestAlertmanagerEndToEnd(t *testing.T) {
	tg := newTarget(t)
	dir := t.TempDir()
	writeRunbook(t, dir, "am", amRunbook)
	d := startDev(t, dir)
	am := testenv.StartAlertmanager(t, d.URL+"/v1/alertmanager", d.WebhookToken)

	am.AddAlert(t, "alertname=SalveE2E", "instance=db-1", "severity=warning", "--annotation=target="+tg.URL)

	var run runs.Summary
	require.Eventually(t, func() bool {
		for _, r := range listRuns(t, d.URL) {
			if r.Runbook == "am-e2e" && r.Status == runs.StatusSucceeded {
				run = r
				return true
			}
		}
		return false
	}, 90*time.Second, 250*time.Millisecond, "no succeeded am-e2e run")
	require.Equal(t, 1, tg.count("/fix"))
	det, code := getRun(t, d.URL, run.WorkflowID)
	require.Equal(t, http.StatusOK, code)
	require.NotNil(t, det.Run, det.RunError)
	require.Equal(t, "succeeded", det.Run.Steps[0].State)
	require.Len(t, listRunsOf(t, d.URL, "am-e2e"), 1)
}

func listRunsOf(t *testing.T, url, runbook string) []runs.Summary {
	var out []runs.Summary
	for _, r := range listRuns(t, url) {
		if r.Runbook == runbook {
			out = append(out, r)
		}
	}
	return out
}

// requireInOrder checks that each want is a prefix of some line, in order.
func requireInOrder(t *testing.T, lines []string, wants ...string) {
	t.Helper()
	i := 0
	for _, l := range lines {
		if i < len(wants) && strings.HasPrefix(l, wants[i]) {
			i++
		}
	}
	require.Equal(t, len(wants), i, "missing or out of order: %q\nin:\n%s", wants[min(i, len(wants)-1)], strings.Join(lines, "\n"))
}

// The audit store can be PostgreSQL, chosen by configuration.
func TestDevWithPostgresAuditStore(t *testing.T) {
	d := startDevWith(t, t.TempDir(), testenv.Postgres(t))
	body := webhook("firing", "NobodyHandlesThis", "x-1", "abba", time.Now().Add(-time.Minute), nil)
	require.Equal(t, http.StatusOK, postWebhook(t, d.URL, d.WebhookToken, body))
	require.Eventually(t, func() bool {
		got := map[string]bool{}
		for _, r := range auditEvents(t, d.URL, "") {
			got[r.Event.Action] = true
		}
		return got["alert.accepted"] && got["trigger.no_match"]
	}, 30*time.Second, 100*time.Millisecond)
	var res audit.VerifyResult
	getJSON(t, d.URL+"/v1/audit/verify", &res)
	require.True(t, res.OK, res.Problem)
}
