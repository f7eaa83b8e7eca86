package triggers_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/internal/safety"
	"github.com/salve-sre/salve/internal/testenv"
	"github.com/salve-sre/salve/triggers"
)

// endingStarter is a Temporal whose incident runs end just after an alert
// was admitted to join them: the race a fast run opens between the
// safety admission and the start request.
type endingStarter struct {
	mu      sync.Mutex
	guard   *safety.Guard
	running map[string]bool
	starts  int
}

func (s *endingStarter) StartOrJoin(ctx context.Context, req triggers.StartRequest) (triggers.StartResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running[req.WorkflowID] {
		// The run finishes now, as a real one would report it.
		s.running[req.WorkflowID] = false
		if err := s.guard.Finished(ctx, req.Runbook.Name(), req.WorkflowID, "succeeded", time.Now()); err != nil {
			return triggers.StartResult{}, err
		}
		if req.JoinOnly {
			return triggers.StartResult{}, triggers.ErrRunEnded
		}
	}
	s.running[req.WorkflowID] = true
	s.starts++
	return triggers.StartResult{RunID: "r", Started: true}, nil
}

func (s *endingStarter) Notify(_ context.Context, id string, _ ...domain.AlertEvent) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.running[id], nil
}

// An alert admitted to join a running run must not start a second run of
// the incident when that run ends before the alert reaches Temporal: it
// is admitted again and meets the cooldown.
func TestAlertAdmittedToJoinNeverStartsAfterTheRunEnded(t *testing.T) {
	_, js := testenv.NATS(t)
	guard, err := safety.Open(context.Background(), js, 1)
	require.NoError(t, err)
	set := testSet(t, `apiVersion: salve/v1
kind: Runbook
metadata: {name: restart}
spec:
  trigger:
    matchers: ['alertname="Crash"']
    incidentKey: '{{ .Labels.deployment }}'
  safety: {cooldown: 30m}
  steps:
    - {name: call, action: http.request, with: {url: "http://127.0.0.1:1/x"}}
`)
	st := &endingStarter{guard: guard, running: map[string]bool{}}
	audit := &fakeAudit{}
	tr := &triggers.Trigger{Runbooks: triggers.StaticRunbooks{Set: set}, Starter: st, Audit: audit, Guard: guard, Log: slog.New(slog.DiscardHandler)}
	ctx := context.Background()
	labels := map[string]string{"alertname": "Crash", "deployment": "cart"}
	t0 := time.Now().Add(-time.Minute)

	first := alert("firing", labels, t0)
	require.NoError(t, tr.Handle(ctx, first))
	second := alert("firing", labels, t0.Add(time.Second)) // a repeat: another alert ID
	require.NoError(t, tr.Handle(ctx, second))

	require.Equal(t, 1, st.starts, "one run for the incident")
	require.Equal(t, []string{domain.ActionTriggerMatched, domain.ActionTriggerSuppressed}, audit.actions())
}
