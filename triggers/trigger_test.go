package triggers_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/activities"
	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/runbooks"
	"github.com/salve-sre/salve/triggers"
)

type fakeStarter struct {
	mu       sync.Mutex
	err      error
	running  map[string]bool
	starts   []triggers.StartRequest
	notified []string
	// told counts the notifications runs were told (signals' contents).
	told map[string]int
}

func (f *fakeStarter) tell(id string, n int) {
	if f.told == nil {
		f.told = map[string]int{}
	}
	f.told[id] += n
}

func (f *fakeStarter) StartOrJoin(_ context.Context, req triggers.StartRequest) (triggers.StartResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return triggers.StartResult{}, f.err
	}
	f.starts = append(f.starts, req)
	if f.running[req.WorkflowID] {
		if !req.Quiet {
			f.tell(req.WorkflowID, 1)
		}
		return triggers.StartResult{RunID: "r1"}, nil
	}
	f.running[req.WorkflowID] = true
	return triggers.StartResult{RunID: "r1", Started: true}, nil
}

func (f *fakeStarter) Notify(_ context.Context, id string, evs ...domain.AlertEvent) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return false, f.err
	}
	f.notified = append(f.notified, id)
	if f.running[id] {
		f.tell(id, len(evs))
	}
	return f.running[id], nil
}

func testSet(t *testing.T, docs ...string) *runbooks.Set {
	t.Helper()
	reg, err := activities.NewRegistry()
	require.NoError(t, err)
	var list []*runbooks.Runbook
	for i, d := range docs {
		rb, err := runbooks.Parse("rb"+string(rune('a'+i))+".yaml", []byte(d), reg)
		require.NoError(t, err)
		list = append(list, rb)
	}
	set, err := runbooks.NewSet(list...)
	require.NoError(t, err)
	return set
}

const restartRunbook = `apiVersion: salve/v1
kind: Runbook
metadata: {name: restart}
spec:
  trigger:
    matchers: ['alertname="Crash"', 'severity=~"warning|critical"']
    incidentKey: '{{ .Labels.namespace }}/{{ .Labels.deployment }}'
  steps:
    - {name: call, action: http.request, with: {url: "http://127.0.0.1:1/x"}}
`

const pageRunbook = `apiVersion: salve/v1
kind: Runbook
metadata: {name: page}
spec:
  trigger:
    matchers: ['severity="critical"']
  steps:
    - {name: call, action: http.request, with: {url: "http://127.0.0.1:1/x"}}
`

func alert(status string, labels map[string]string, startsAt time.Time) domain.AlertEvent {
	return domain.AlertEvent{
		ID: domain.AlertEventID("fp1", status, startsAt), Fingerprint: "fp1", Status: status,
		Labels: labels, StartsAt: startsAt,
	}
}

func TestTriggerDecisions(t *testing.T) {
	set := testSet(t, restartRunbook, pageRunbook)
	t0 := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
	crash := map[string]string{"alertname": "Crash", "severity": "warning", "namespace": "shop", "deployment": "cart"}
	crit := map[string]string{"alertname": "Crash", "severity": "critical", "namespace": "shop", "deployment": "cart"}

	st := &fakeStarter{running: map[string]bool{}}
	audit := &fakeAudit{}
	tr := &triggers.Trigger{Runbooks: triggers.StaticRunbooks{Set: set}, Starter: st, Audit: audit, Log: slog.New(slog.DiscardHandler)}
	ctx := context.Background()

	// No runbook matches: audited, nothing started.
	require.NoError(t, tr.Handle(ctx, alert("firing", map[string]string{"alertname": "Other"}, t0)))
	require.Empty(t, st.starts)
	require.Equal(t, []string{domain.ActionTriggerNoMatch}, audit.actions())

	// A match starts the run with the incident key and the alert ID as
	// request ID; a repeat joins.
	require.NoError(t, tr.Handle(ctx, alert("firing", crash, t0)))
	require.NoError(t, tr.Handle(ctx, alert("firing", crash, t0.Add(time.Minute))))
	require.Len(t, st.starts, 2)
	require.Equal(t, "salve/restart/shop/cart", st.starts[0].WorkflowID)
	require.Equal(t, "shop/cart", st.starts[0].IncidentKey)
	require.Equal(t, domain.AlertEventID("fp1", "firing", t0), st.starts[0].RequestID)
	require.Equal(t, []string{domain.ActionTriggerNoMatch, domain.ActionTriggerMatched, domain.ActionRunJoined}, audit.actions())

	// Resolved alerts notify; they never start a run.
	require.NoError(t, tr.Handle(ctx, alert("resolved", crash, t0)))
	require.Equal(t, []string{"salve/restart/shop/cart"}, st.notified)
	require.Len(t, st.starts, 2)

	// One alert matching two runbooks starts one run for each; the
	// default incident key is the fingerprint.
	st.starts = nil
	require.NoError(t, tr.Handle(ctx, alert("firing", crit, t0)))
	require.Len(t, st.starts, 2)
	require.Equal(t, "salve/page/fp1", st.starts[0].WorkflowID)
	require.Equal(t, "salve/restart/shop/cart", st.starts[1].WorkflowID)
}

func TestTriggerErrorsAskForRedelivery(t *testing.T) {
	set := testSet(t, restartRunbook)
	crash := map[string]string{"alertname": "Crash", "severity": "warning", "namespace": "shop", "deployment": "cart"}
	ev := alert("firing", crash, time.Now())

	tr := &triggers.Trigger{Runbooks: triggers.StaticRunbooks{Set: set}, Starter: &fakeStarter{err: errors.New("temporal unavailable")},
		Audit: &fakeAudit{}, Log: slog.New(slog.DiscardHandler)}
	require.ErrorContains(t, tr.Handle(context.Background(), ev), "temporal unavailable")

	tr = &triggers.Trigger{Runbooks: triggers.StaticRunbooks{Set: set}, Starter: &fakeStarter{running: map[string]bool{}},
		Audit: &fakeAudit{err: errors.New("audit down")}, Log: slog.New(slog.DiscardHandler)}
	require.ErrorContains(t, tr.Handle(context.Background(), ev), "audit down")
}

type fakeFailed struct{ parked []triggers.FailedAlert }

func (f *fakeFailed) Park(_ context.Context, a triggers.FailedAlert) error {
	f.parked = append(f.parked, a)
	return nil
}

func TestTriggerMissingKeyLabelIsParkedNotRetried(t *testing.T) {
	set := testSet(t, restartRunbook)
	st := &fakeStarter{running: map[string]bool{}}
	audit := &fakeAudit{}
	failed := &fakeFailed{}
	tr := &triggers.Trigger{Runbooks: triggers.StaticRunbooks{Set: set}, Starter: st, Audit: audit, Log: slog.New(slog.DiscardHandler), Failed: failed}
	// No deployment label: the key template cannot render.
	ev := alert("firing", map[string]string{"alertname": "Crash", "severity": "warning", "namespace": "shop"}, time.Now())
	require.NoError(t, tr.Handle(context.Background(), ev))
	require.Empty(t, st.starts)
	require.Equal(t, []string{domain.ActionTriggerFailed}, audit.actions())
	require.Contains(t, audit.events[0].Error, "deployment")
	require.Len(t, failed.parked, 1)
	require.Equal(t, triggers.FailedID(ev.ID, "restart"), failed.parked[0].ID)
	require.Equal(t, "restart", failed.parked[0].Runbook)
	require.Equal(t, failed.parked[0].ID, audit.events[0].Detail["failedId"])
}

// An error Temporal will give again (an invalid argument) parks the alert
// and lets the next one through; an error a retry may fix is returned.
func TestTriggerPermanentErrorParksRetryableErrorRetries(t *testing.T) {
	set := testSet(t, restartRunbook)
	audit, failed := &fakeAudit{}, &fakeFailed{}
	st := &fakeStarter{running: map[string]bool{}, err: triggers.Permanent(errors.New("InvalidArgument: workflow ID refused"))}
	tr := &triggers.Trigger{Runbooks: triggers.StaticRunbooks{Set: set}, Starter: st, Audit: audit, Log: slog.New(slog.DiscardHandler), Failed: failed}
	ev := alert("firing", map[string]string{"alertname": "Crash", "severity": "warning", "namespace": "shop", "deployment": "cart"}, time.Now())
	require.NoError(t, tr.Handle(context.Background(), ev))
	require.Equal(t, []string{domain.ActionTriggerFailed}, audit.actions())
	require.Len(t, failed.parked, 1)
	require.Equal(t, "salve/restart/shop/cart", failed.parked[0].WorkflowID)
	require.Contains(t, failed.parked[0].Reason, "workflow ID refused")

	st.err = errors.New("unavailable")
	err := tr.Handle(context.Background(), alert("firing", map[string]string{"alertname": "Crash", "severity": "warning", "namespace": "shop", "deployment": "web"}, time.Now()))
	require.ErrorContains(t, err, "unavailable")
	require.False(t, triggers.IsPermanent(err))
	require.Len(t, failed.parked, 1)
}
