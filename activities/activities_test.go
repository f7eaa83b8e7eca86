package activities_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/salve-sre/salve/activities"
	"github.com/salve-sre/salve/activities/step"
	"github.com/salve-sre/salve/internal/domain"
)

// fakeRecorder keeps audit events in memory and fails the actions it is
// told to fail.
type fakeRecorder struct {
	mu     sync.Mutex
	events []domain.AuditEvent
	failOn map[string]error // action -> error
}

func (r *fakeRecorder) Record(_ context.Context, ev domain.AuditEvent) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.failOn[ev.Action]; err != nil {
		return err
	}
	r.events = append(r.events, ev)
	return nil
}

func (r *fakeRecorder) recorded() []domain.AuditEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]domain.AuditEvent(nil), r.events...)
}

func (r *fakeRecorder) actions() []string {
	var out []string
	for _, ev := range r.recorded() {
		out = append(out, ev.Action)
	}
	return out
}

const fakeKind = "fake.step"

func request() step.Request {
	return step.Request{
		WorkflowID:     "salve/restart/abc123",
		RunID:          "run-7",
		Runbook:        "restart",
		Step:           "bounce",
		Kind:           fakeKind,
		Params:         map[string]any{"target": "api"},
		IdempotencyKey: "salve/restart/abc123/bounce",
	}
}

// harness registers one fake step kind as a Temporal activity in a test
// activity environment.
type harness struct {
	env   *testsuite.TestActivityEnvironment
	audit *fakeRecorder
	acts  *activities.Activities
}

func newHarness(t *testing.T, exec step.ExecutorFunc, audit *fakeRecorder) *harness {
	t.Helper()
	reg := step.NewRegistry()
	require.NoError(t, reg.Register(step.Spec{Kind: fakeKind, Summary: "test step", Executor: exec}))
	acts := activities.New(reg, audit, slog.New(slog.DiscardHandler))
	fn, err := acts.Step(fakeKind)
	require.NoError(t, err)

	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	env.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: step.ActivityName(fakeKind)})
	return &harness{env: env, audit: audit, acts: acts}
}

func (h *harness) run(req step.Request) (step.Result, error) {
	val, err := h.env.ExecuteActivity(step.ActivityName(fakeKind), req)
	if err != nil {
		return step.Result{}, err
	}
	var res step.Result
	if err := val.Get(&res); err != nil {
		return step.Result{}, fmt.Errorf("decode result: %w", err)
	}
	return res, nil
}

func TestStepSuccessIsAudited(t *testing.T) {
	audit := &fakeRecorder{}
	var (
		calls      atomic.Int32
		gotReq     step.Request
		auditAtRun []string
	)
	h := newHarness(t, func(_ context.Context, req step.Request) (step.Result, error) {
		calls.Add(1)
		gotReq = req
		auditAtRun = audit.actions()
		return step.Result{Output: map[string]any{"status": 200, "body": "ok"}}, nil
	}, audit)

	res, err := h.run(request())
	require.NoError(t, err)
	require.EqualValues(t, 1, calls.Load())
	require.False(t, gotReq.ScheduledAt.IsZero(), "the adapter tells the executor when the step was first scheduled")
	gotReq.ScheduledAt = time.Time{}
	require.Equal(t, request(), gotReq, "the executor gets the request as sent")
	require.Equal(t, []string{domain.ActionStepStarted}, auditAtRun, "step.started is stored before the action")
	require.Equal(t, map[string]any{"status": float64(200), "body": "ok"}, res.Output)

	evs := audit.recorded()
	require.Len(t, evs, 2)
	for i, want := range []struct{ action, outcome string }{
		{domain.ActionStepStarted, ""},
		{domain.ActionStepSucceeded, "succeeded"},
	} {
		ev := evs[i]
		require.Equal(t, want.action, ev.Action)
		require.Equal(t, want.outcome, ev.Outcome)
		// Deterministic: workflow/run/step/attempt/action, so a retried
		// publish of the same event is stored once.
		require.Equal(t, "salve/restart/abc123/run-7/bounce/1/"+want.action, ev.ID)
		require.Equal(t, "salve/restart/abc123", ev.WorkflowID)
		require.Equal(t, "run-7", ev.RunID)
		require.Equal(t, "restart", ev.Runbook)
		require.Equal(t, "bounce", ev.Step)
		require.Equal(t, domain.Actor{Kind: domain.ActorSystem, Name: "worker"}, ev.Actor)
		require.Equal(t, map[string]string{"kind": fakeKind, "attempt": "1"}, ev.Detail)
		require.Empty(t, ev.Error)
		require.False(t, ev.Time.IsZero())
		require.Equal(t, time.UTC, ev.Time.Location())
	}

	// The same attempt run again yields the same IDs.
	audit2 := &fakeRecorder{}
	h2 := newHarness(t, func(context.Context, step.Request) (step.Result, error) { return step.Result{}, nil }, audit2)
	_, err = h2.run(request())
	require.NoError(t, err)
	ev2 := audit2.recorded()
	require.Len(t, ev2, 2)
	require.Equal(t, evs[0].ID, ev2[0].ID)
	require.Equal(t, evs[1].ID, ev2[1].ID)
}

func TestNoStartRecordNoAction(t *testing.T) {
	for _, tc := range []struct {
		name string
		exec func(context.Context, step.Request) (step.Result, error)
	}{
		{name: "executor would succeed", exec: func(context.Context, step.Request) (step.Result, error) { return step.Result{}, nil }},
		{name: "executor would fail", exec: func(context.Context, step.Request) (step.Result, error) { return step.Result{}, errors.New("boom") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			audit := &fakeRecorder{failOn: map[string]error{domain.ActionStepStarted: errors.New("audit stream unavailable")}}
			var calls atomic.Int32
			h := newHarness(t, func(ctx context.Context, req step.Request) (step.Result, error) {
				calls.Add(1)
				return tc.exec(ctx, req)
			}, audit)

			_, err := h.run(request())
			require.Error(t, err)
			require.Zero(t, calls.Load(), "the executor must never run when step.started cannot be recorded")
			require.Contains(t, err.Error(), "step not run")
			require.Contains(t, err.Error(), "audit stream unavailable")
			var appErr *temporal.ApplicationError
			require.ErrorAs(t, err, &appErr)
			require.False(t, appErr.NonRetryable(), "an audit outage is transient: Temporal retries the attempt")
			require.Empty(t, audit.recorded())
		})
	}
}

func TestExecutorErrorsMapToRetrySemantics(t *testing.T) {
	for _, tc := range []struct {
		name         string
		err          error
		nonRetryable bool
		errType      string
	}{
		{
			name:         "invalid params",
			err:          fmt.Errorf("%w: url: required", step.ErrInvalidParams),
			nonRetryable: true,
			errType:      "StepPermanent",
		},
		{
			name:         "permanent",
			err:          fmt.Errorf("%w: POST http://x/hook: unexpected status 404", step.ErrPermanent),
			nonRetryable: true,
			errType:      "StepPermanent",
		},
		{
			name:         "permanent wrapped twice",
			err:          fmt.Errorf("restart api: %w", fmt.Errorf("%w: conflict", step.ErrPermanent)),
			nonRetryable: true,
			errType:      "StepPermanent",
		},
		{
			name:    "plain error",
			err:     errors.New("POST http://x/hook: unexpected status 503"),
			errType: "StepFailed",
		},
		{
			name:    "context deadline",
			err:     fmt.Errorf("GET http://x/: %w", context.DeadlineExceeded),
			errType: "StepFailed",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			audit := &fakeRecorder{}
			h := newHarness(t, func(context.Context, step.Request) (step.Result, error) {
				return step.Result{Output: map[string]any{"status": 404}}, tc.err
			}, audit)

			_, err := h.run(request())
			require.Error(t, err)
			var appErr *temporal.ApplicationError
			require.ErrorAs(t, err, &appErr)
			require.Equal(t, tc.nonRetryable, appErr.NonRetryable())
			require.Equal(t, tc.errType, appErr.Type())
			require.Contains(t, err.Error(), tc.err.Error())

			evs := audit.recorded()
			require.Len(t, evs, 2)
			require.Equal(t, domain.ActionStepStarted, evs[0].Action)
			failed := evs[1]
			require.Equal(t, domain.ActionStepFailed, failed.Action)
			require.Equal(t, "failed", failed.Outcome)
			require.Equal(t, tc.err.Error(), failed.Error)
			require.Equal(t, "salve/restart/abc123/run-7/bounce/1/step.failed", failed.ID)
		})
	}
}

func TestOutcomeAuditFailureDoesNotChangeTheResult(t *testing.T) {
	t.Run("success stays a success", func(t *testing.T) {
		// The action happened: failing now would make Temporal redo it.
		audit := &fakeRecorder{failOn: map[string]error{domain.ActionStepSucceeded: errors.New("audit down")}}
		var calls atomic.Int32
		h := newHarness(t, func(context.Context, step.Request) (step.Result, error) {
			calls.Add(1)
			return step.Result{Output: map[string]any{"done": true}}, nil
		}, audit)
		res, err := h.run(request())
		require.NoError(t, err)
		require.EqualValues(t, 1, calls.Load())
		require.Equal(t, map[string]any{"done": true}, res.Output)
		require.Equal(t, []string{domain.ActionStepStarted}, audit.actions())
	})
	t.Run("failure keeps the executor's error", func(t *testing.T) {
		audit := &fakeRecorder{failOn: map[string]error{domain.ActionStepFailed: errors.New("audit down")}}
		h := newHarness(t, func(context.Context, step.Request) (step.Result, error) {
			return step.Result{}, fmt.Errorf("%w: gone", step.ErrPermanent)
		}, audit)
		_, err := h.run(request())
		var appErr *temporal.ApplicationError
		require.ErrorAs(t, err, &appErr)
		require.True(t, appErr.NonRetryable())
		require.Contains(t, err.Error(), "gone")
		require.NotContains(t, err.Error(), "audit down")
	})
}

func TestAuditActivity(t *testing.T) {
	ev := domain.AuditEvent{
		ID:          "salve/restart/abc123/run-7/run.started",
		Time:        time.Date(2026, 11, 24, 9, 30, 0, 123456789, time.UTC),
		Actor:       domain.Actor{Kind: domain.ActorAlert, Name: "HighErrorRate"},
		Action:      domain.ActionRunStarted,
		Runbook:     "restart",
		RunbookHash: "sha256:abc",
		WorkflowID:  "salve/restart/abc123",
		RunID:       "run-7",
		IncidentKey: "abc123",
		Target:      "deploy/api",
		Detail:      map[string]string{"a": "1"},
	}
	const name = "salve.audit"
	for _, tc := range []struct {
		name    string
		failErr error
	}{
		{name: "passes the event through"},
		{name: "wraps recorder errors", failErr: errors.New("nats: no responders")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			audit := &fakeRecorder{}
			if tc.failErr != nil {
				audit.failOn = map[string]error{domain.ActionRunStarted: tc.failErr}
			}
			acts := activities.New(step.NewRegistry(), audit, slog.New(slog.DiscardHandler))

			// Through Temporal (the event crosses the data converter).
			var suite testsuite.WorkflowTestSuite
			env := suite.NewTestActivityEnvironment()
			env.RegisterActivityWithOptions(acts.Audit, activity.RegisterOptions{Name: name})
			_, err := env.ExecuteActivity(name, ev)
			if tc.failErr != nil {
				require.Error(t, err)
				require.Contains(t, err.Error(), "record audit event run.started")
				require.Contains(t, err.Error(), tc.failErr.Error())
				require.Empty(t, audit.recorded())
			} else {
				require.NoError(t, err)
				got := audit.recorded()
				require.Len(t, got, 1)
				require.True(t, ev.Time.Equal(got[0].Time))
				got[0].Time = ev.Time
				require.Equal(t, ev, got[0])
			}

			// Called directly: the cause stays matchable with errors.Is.
			err = acts.Audit(context.Background(), ev)
			if tc.failErr != nil {
				require.ErrorIs(t, err, tc.failErr)
				require.Contains(t, err.Error(), "record audit event run.started")
			} else {
				require.NoError(t, err)
				require.Len(t, audit.recorded(), 2)
			}
		})
	}
}

func TestNewRegistry(t *testing.T) {
	reg, err := activities.NewRegistry()
	require.NoError(t, err)
	require.Contains(t, reg.Kinds(), "http.request")
	spec, ok := reg.Lookup("http.request")
	require.True(t, ok)
	require.NotNil(t, spec.Executor)
	require.Equal(t, "step.http.request", step.ActivityName(spec.Kind))

	acts := activities.New(reg, &fakeRecorder{}, slog.New(slog.DiscardHandler))
	for _, tc := range []struct {
		kind    string
		wantErr bool
	}{
		{kind: "http.request"},
		{kind: "nope", wantErr: true},
		{kind: "", wantErr: true},
		{kind: "HTTP.REQUEST", wantErr: true},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			fn, err := acts.Step(tc.kind)
			if tc.wantErr {
				require.Error(t, err)
				require.Contains(t, err.Error(), "unknown step kind")
				require.Contains(t, err.Error(), fmt.Sprintf("%q", tc.kind))
				require.Nil(t, fn)
				return
			}
			require.NoError(t, err)
			require.NotNil(t, fn)
		})
	}
}

// Dry-run mode: a mutating step records what it would do and does not run;
// a read-only step runs, so the plan sees real state.
func TestDryRunDoesNotRunMutatingSteps(t *testing.T) {
	for _, mutating := range []bool{true, false} {
		var calls atomic.Int32
		audit := &fakeRecorder{}
		reg := step.NewRegistry()
		require.NoError(t, reg.Register(step.Spec{Kind: fakeKind, Mutating: mutating, Executor: step.ExecutorFunc(func(context.Context, step.Request) (step.Result, error) {
			calls.Add(1)
			return step.Result{Output: map[string]any{"acted": true}}, nil
		})}))
		acts := activities.New(reg, audit, slog.New(slog.DiscardHandler))
		fn, err := acts.Step(fakeKind)
		require.NoError(t, err)
		var suite testsuite.WorkflowTestSuite
		env := suite.NewTestActivityEnvironment()
		env.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: step.ActivityName(fakeKind)})
		req := request()
		req.DryRun = true
		val, err := env.ExecuteActivity(step.ActivityName(fakeKind), req)
		require.NoError(t, err)
		var res step.Result
		require.NoError(t, val.Get(&res))
		if mutating {
			require.Zero(t, calls.Load(), "a mutating step must not act in a dry run")
			require.Equal(t, map[string]any{"dryRun": true}, res.Output)
			require.Equal(t, []string{domain.ActionStepPlanned}, audit.actions())
		} else {
			require.EqualValues(t, 1, calls.Load(), "read-only steps run in a dry run")
			require.Equal(t, map[string]any{"acted": true}, res.Output)
		}
	}
}

type fakeSafety struct {
	mu    sync.Mutex
	calls []string
	err   error
}

func (f *fakeSafety) Finished(_ context.Context, runbook, workflowID, outcome string, _ time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, runbook+" "+workflowID+" "+outcome)
	return f.err
}

// Recording an event has no other effect; applying a finished run to the
// safety state is an activity of its own. The legacy audit activity (runs
// of revision 2 and earlier) still does both, as those runs expect.
func TestRecordRunFinishedAndLegacyAudit(t *testing.T) {
	finished := domain.AuditEvent{ID: "w/r/run.finished", Time: time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC), Action: domain.ActionRunFinished,
		Runbook: "restart", WorkflowID: "salve/restart/k", Outcome: "failed"}
	newActs := func() (*activities.Activities, *fakeRecorder, *fakeSafety) {
		rec, saf := &fakeRecorder{}, &fakeSafety{}
		acts := activities.New(step.NewRegistry(), rec, slog.New(slog.DiscardHandler))
		acts.Safety = saf
		return acts, rec, saf
	}
	ctx := context.Background()

	acts, rec, saf := newActs()
	require.NoError(t, acts.Record(ctx, finished))
	require.Len(t, rec.recorded(), 1)
	require.Empty(t, saf.calls, "recording has no side effect")
	require.NoError(t, acts.RunFinished(ctx, finished))
	require.Equal(t, []string{"restart salve/restart/k failed"}, saf.calls)

	acts, rec, saf = newActs()
	require.NoError(t, acts.Audit(ctx, finished))
	require.Len(t, rec.recorded(), 1)
	require.Equal(t, []string{"restart salve/restart/k failed"}, saf.calls, "the legacy activity applies it too")

	acts, _, saf = newActs()
	saf.err = errors.New("kv down")
	require.ErrorContains(t, acts.RunFinished(ctx, finished), "kv down", "retried by Temporal, never dropped")

	acts = activities.New(step.NewRegistry(), &fakeRecorder{}, slog.New(slog.DiscardHandler))
	require.NoError(t, acts.RunFinished(ctx, finished), "a worker without safety state has nothing to apply")
}
