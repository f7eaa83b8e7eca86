package activities_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/testsuite"

	"github.com/salve-sre/salve/activities"
	"github.com/salve-sre/salve/activities/step"
	"github.com/salve-sre/salve/internal/domain"
)

type stepObs struct {
	kind, outcome string
	took          time.Duration
}

type fakeMetrics struct {
	mu      sync.Mutex
	steps   []stepObs
	audited []string
}

func (f *fakeMetrics) StepFinished(_ context.Context, kind, outcome string, took time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.steps = append(f.steps, stepObs{kind, outcome, took})
}

func (f *fakeMetrics) AuditRecorded(ev domain.AuditEvent) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.audited = append(f.audited, ev.Action)
}

func TestStepMetrics(t *testing.T) {
	tests := []struct {
		name     string
		mutating bool
		dryRun   bool
		err      error
		want     string
	}{
		{name: "succeeded", want: "succeeded"},
		{name: "failed", err: errors.New("connection refused"), want: "failed"},
		{name: "permanently failed", err: step.ErrPermanent, want: "failed"},
		{name: "planned", mutating: true, dryRun: true, want: "planned"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := step.NewRegistry()
			require.NoError(t, reg.Register(step.Spec{Kind: fakeKind, Mutating: tt.mutating,
				Executor: step.ExecutorFunc(func(context.Context, step.Request) (step.Result, error) {
					time.Sleep(20 * time.Millisecond) // the action's time is what is measured
					return step.Result{}, tt.err
				})}))
			fm := &fakeMetrics{}
			acts := activities.New(reg, &fakeRecorder{}, slog.New(slog.DiscardHandler))
			acts.Metrics = fm
			fn, err := acts.Step(fakeKind)
			require.NoError(t, err)
			var suite testsuite.WorkflowTestSuite
			env := suite.NewTestActivityEnvironment()
			env.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: step.ActivityName(fakeKind)})
			req := request()
			req.DryRun = tt.dryRun
			_, err = env.ExecuteActivity(step.ActivityName(fakeKind), req)
			require.Equal(t, tt.err != nil, err != nil, "%v", err)

			require.Len(t, fm.steps, 1)
			require.Equal(t, fakeKind, fm.steps[0].kind)
			require.Equal(t, tt.want, fm.steps[0].outcome)
			if tt.want == "planned" {
				require.Zero(t, fm.steps[0].took)
			} else {
				require.GreaterOrEqual(t, fm.steps[0].took, 20*time.Millisecond)
			}
		})
	}
}

func TestStepNotRunIsNotObserved(t *testing.T) {
	audit := &fakeRecorder{failOn: map[string]error{domain.ActionStepStarted: errors.New("audit down")}}
	h := newHarness(t, func(context.Context, step.Request) (step.Result, error) { return step.Result{}, nil }, audit)
	fm := &fakeMetrics{}
	h.acts.Metrics = fm
	_, err := h.run(request())
	require.Error(t, err)
	require.Empty(t, fm.steps, "a step refused for want of its audit record did not run")
}

func TestAuditActivityReportsRecordedEventsOnly(t *testing.T) {
	audit := &fakeRecorder{failOn: map[string]error{domain.ActionApprovalGranted: errors.New("audit down")}}
	fm := &fakeMetrics{}
	acts := activities.New(step.NewRegistry(), audit, slog.New(slog.DiscardHandler))
	acts.Metrics = fm
	ctx := context.Background()
	require.NoError(t, acts.Audit(ctx, domain.AuditEvent{ID: "a", Action: domain.ActionRunFinished, Runbook: "r", Outcome: "succeeded"}))
	require.Error(t, acts.Audit(ctx, domain.AuditEvent{ID: "b", Action: domain.ActionApprovalGranted}))
	require.Equal(t, []string{domain.ActionRunFinished}, fm.audited, "a record that failed is retried, and counted when stored")

	acts.Metrics = nil
	require.NoError(t, acts.Audit(ctx, domain.AuditEvent{ID: "c", Action: domain.ActionRunFinished}))
}
