package app_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/internal/audit"
	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/internal/runs"
)

// The safety envelope against a real `salve dev`: a cooldown suppresses a
// repeat incident (audited with its reason), and a circuit breaker opened
// by failed runs turns the next run into a dry-run plan that touches
// nothing, until an admin resets it.
func TestSafetyEnvelopeEndToEnd(t *testing.T) {
	tg := newTarget(t)
	rbDir := t.TempDir()
	writeRunbook(t, rbDir, "cool", `apiVersion: salve/v1
kind: Runbook
metadata: {name: cool}
spec:
  trigger: {matchers: ['alertname="Cool"'], incidentKey: '{{ .Labels.instance }}'}
  params: {target: {fromAnnotation: target, required: true, pattern: 'http://127\.0\.0\.1:[0-9]+'}}
  safety: {cooldown: 1h}
  steps:
    - {name: act, action: http.request, with: {url: '{{ .Params.target }}/cool', method: POST}}
`)
	writeRunbook(t, rbDir, "flaky", `apiVersion: salve/v1
kind: Runbook
metadata: {name: flaky}
spec:
  trigger: {matchers: ['alertname="Flaky"'], incidentKey: '{{ .Labels.instance }}'}
  params: {target: {fromAnnotation: target, required: true, pattern: 'http://127\.0\.0\.1:[0-9]+'}}
  safety: {circuitBreaker: {failures: 2, window: 1h}}
  steps:
    - {name: act, action: http.request, with: {url: '{{ .Params.target }}/flaky', method: POST}}
    - {name: verify, action: http.request, with: {url: '{{ .Params.target }}/verify-{{ .Labels.instance | pathEscape }}', expectStatus: [299]}, retry: {maxAttempts: 1}}
`)
	// Two runbooks acting on the same target: the second waits for the
	// first to finish (the default policy), a third is suppressed.
	for _, rb := range []struct{ name, policy, steps string }{
		{"hold", "", "- {name: act, action: http.request, with: {url: '{{ .Params.target }}/hold', method: POST}}"},
		{"follow", "", "- {name: act, action: http.request, with: {url: '{{ .Params.target }}/follow', method: POST}}\n    - {name: settle, action: sleep, with: {duration: 3s}}"},
		{"shy", ", targetLock: {onBusy: suppress}", "- {name: act, action: http.request, with: {url: '{{ .Params.target }}/shy', method: POST}}"},
	} {
		writeRunbook(t, rbDir, rb.name, `apiVersion: salve/v1
kind: Runbook
metadata: {name: `+rb.name+`}
spec:
  trigger: {matchers: ['alertname="Locked"'], incidentKey: '{{ .Labels.instance }}'}
  params: {target: {fromAnnotation: target, required: true, pattern: 'http://127\.0\.0\.1:[0-9]+'}}
  safety: {target: 'db/{{ .Labels.instance }}'`+rb.policy+`}
  steps:
    `+rb.steps+`
`)
	}
	d := startDev(t, rbDir)
	base := d.URL
	ann := map[string]string{"target": tg.URL}
	t0 := time.Now().Add(-time.Minute)

	// Cooldown: the first occurrence runs; a new occurrence of the same
	// incident right after is suppressed, and says why.
	require.Equal(t, 200, postWebhook(t, base, d.WebhookToken, webhook("firing", "Cool", "db-1", "c1", t0, ann)))
	waitRunStatus(t, base, "salve/cool/db-1", runs.StatusSucceeded, time.Minute)
	require.Equal(t, 200, postWebhook(t, base, d.WebhookToken, webhook("firing", "Cool", "db-1", "c1", t0.Add(30*time.Second), ann)))
	sup := waitAuditAction(t, base, domain.ActionTriggerSuppressed, 1)
	require.Equal(t, "cooldown", sup[0].Event.Outcome)
	require.Contains(t, sup[0].Event.Error, `incident "db-1" finished recently: cooldown 1h0m0s`)
	require.Equal(t, 1, tg.count("/cool"), "the repeat acted on nothing")

	// Target lock: one alert matches all three runbooks, which the
	// trigger takes in name order. follow takes db/db-7; hold waits for it;
	// shy (onBusy: suppress) is suppressed. hold acts only after follow
	// finished.
	require.Equal(t, 200, postWebhook(t, base, d.WebhookToken, webhook("firing", "Locked", "db-7", "l1", t0, ann)))
	follow := waitRunStatus(t, base, "salve/follow/db-7", runs.StatusSucceeded, time.Minute)
	hold := waitRunStatus(t, base, "salve/hold/db-7", runs.StatusSucceeded, time.Minute)
	saveHistory(t, d.TemporalAddr, "salve/hold/db-7", hold.RunID, "target-wait")
	require.Equal(t, "db/db-7", hold.Run.Target)
	require.True(t, hold.Run.Steps[0].StartedAt.After(follow.Run.Steps[1].FinishedAt),
		"hold acted at %s, before follow released the target (its last step ended %s)", hold.Run.Steps[0].StartedAt, follow.Run.Steps[1].FinishedAt)
	waiting := waitAuditAction(t, base, domain.ActionTargetWaiting, 1)
	require.Equal(t, "salve/follow/db-7", waiting[0].Event.Detail["holder"])
	waitAuditAction(t, base, domain.ActionTargetAcquired, 1)
	var suppressed []string
	for _, r := range auditEvents(t, base, "action="+domain.ActionTriggerSuppressed) {
		if r.Event.Outcome == "target_locked" {
			suppressed = append(suppressed, r.Event.Runbook+": "+r.Event.Error)
		}
	}
	require.Len(t, suppressed, 1)
	require.Contains(t, suppressed[0], `shy: target "db/db-7" is held by run salve/follow/db-7 (runbook follow)`)
	require.Equal(t, 0, tg.count("/shy"))
	require.Equal(t, 1, tg.count("/hold"))
	require.Equal(t, 1, tg.count("/follow"))

	// Circuit breaker: two failed runs open it.
	for i, inst := range []string{"w-1", "w-2"} {
		require.Equal(t, 200, postWebhook(t, base, d.WebhookToken, webhook("firing", "Flaky", inst, "f"+inst, t0, ann)))
		failed := waitRunStatus(t, base, "salve/flaky/"+inst, runs.StatusFailed, time.Minute)
		if i == 0 {
			saveHistory(t, d.TemporalAddr, "salve/flaky/"+inst, failed.RunID, "failed")
		}
		require.Equal(t, i+1, tg.count("/flaky"))
	}
	var detail struct {
		Safety struct {
			Open           bool
			RecentFailures int
		}
	}
	require.Eventually(t, func() bool {
		getJSON(t, base+"/v1/runbooks/flaky", &detail)
		return detail.Safety.Open
	}, 10*time.Second, 100*time.Millisecond, "the breaker did not open after 2 failures")
	require.Equal(t, 2, detail.Safety.RecentFailures)

	// The next alert runs as a dry-run plan: the mutating step does not act.
	require.Equal(t, 200, postWebhook(t, base, d.WebhookToken, webhook("firing", "Flaky", "w-3", "fw-3", t0, ann)))
	// (The plan "succeeds": its mutating steps are recorded as planned.)
	plan := waitRunStatus(t, base, "salve/flaky/w-3", runs.StatusSucceeded, time.Minute)
	saveHistory(t, d.TemporalAddr, "salve/flaky/w-3", plan.RunID, "dryrun")
	require.True(t, plan.Run.DryRun)
	require.Contains(t, plan.Run.DryRunReason, "circuit breaker of runbook flaky is open")
	require.Equal(t, 2, tg.count("/flaky"), "an open breaker lets nothing act")

	// An admin resets it (audited); the next run acts again.
	code, body := call(t, "POST", base+"/v1/runbooks/flaky/breaker/reset", d.AdminToken, map[string]string{"reason": "fixed the verify endpoint"})
	require.Equal(t, http.StatusOK, code, body)
	require.Equal(t, true, body["wasOpen"])
	waitAuditAction(t, base, domain.ActionBreakerReset, 1)
	require.Equal(t, 200, postWebhook(t, base, d.WebhookToken, webhook("firing", "Flaky", "w-4", "fw-4", t0, ann)))
	waitRunStatus(t, base, "salve/flaky/w-4", runs.StatusFailed, time.Minute)
	require.Equal(t, 3, tg.count("/flaky"), "after the reset the runbook acts again")
}

func waitAuditAction(t *testing.T, base, action string, n int) []audit.Record {
	t.Helper()
	var recs []audit.Record
	require.Eventually(t, func() bool {
		recs = auditEvents(t, base, "action="+action)
		return len(recs) >= n
	}, 15*time.Second, 100*time.Millisecond, "want %d %s records", n, action)
	return recs
}
