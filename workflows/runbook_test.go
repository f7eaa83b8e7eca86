package workflows_test

import (
	"context"
	"errors"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/salve-sre/salve/activities"
	"github.com/salve-sre/salve/activities/step"
	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/internal/snapshot"
	"github.com/salve-sre/salve/runbooks"
	"github.com/salve-sre/salve/workflows"
)

// testWorkflowID has the production shape salve/<runbook>/<incident key>,
// slashes included, so idempotency keys are checked on a realistic ID.
const testWorkflowID = "salve/restart-web/shop/web"

var (
	httpActivity = step.ActivityName("http.request")
	t0           = time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
)

// stepFunc answers one mocked step activity call.
type stepFunc func(ctx context.Context, req step.Request) (step.Result, error)

// recorder collects what the workflow asked of its activities. Activity
// mocks run on their own goroutines, hence the mutex.
type recorder struct {
	mu       sync.Mutex
	requests []step.Request
	attempts []int32
	infos    []activity.Info
	audits   []domain.AuditEvent
	hooks    []step.HookEvent
	// finished are the events RunFinishedActivity was given; legacy are
	// the events recorded through AuditActivity (revision 2 and earlier).
	finished []domain.AuditEvent
	legacy   []domain.AuditEvent
}

func (r *recorder) hookEvents() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, len(r.hooks))
	for i, h := range r.hooks {
		out[i] = h.Event
		if h.Step != "" {
			out[i] += ":" + h.Step
		}
	}
	return out
}

func (r *recorder) steps() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, len(r.requests))
	for i, q := range r.requests {
		out[i] = q.Step
	}
	return out
}

func (r *recorder) request(t *testing.T, stepName string) step.Request {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, q := range r.requests {
		if q.Step == stepName {
			return q
		}
	}
	t.Fatalf("step %q was never called; calls: %v", stepName, r.requests)
	return step.Request{}
}

func (r *recorder) auditActions() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, len(r.audits))
	for i, ev := range r.audits {
		out[i] = ev.Action
		if ev.Step != "" {
			out[i] += ":" + ev.Step
		}
	}
	return out
}

func (r *recorder) audit(t *testing.T, action string) domain.AuditEvent {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ev := range r.audits {
		if ev.Action == action {
			return ev
		}
	}
	t.Fatalf("no %s audit event; got %v", action, r.audits)
	return domain.AuditEvent{}
}

// newEnv returns a test environment in which the step kind http.request and
// the audit activity are registered by name, exactly as the worker registers
// them, and mocked: steps are answered by handle (nil = succeed with no
// output), audit events are recorded. kinds are more step kinds to
// register (a test mocks them).
func newEnv(t *testing.T, handle stepFunc, kinds ...string) (*testsuite.TestWorkflowEnvironment, *recorder) {
	t.Helper()
	var suite testsuite.WorkflowTestSuite
	// The SDK's logs (e.g. every failed attempt) go to the test's output,
	// shown for failing tests and with -v.
	suite.SetLogger(log.NewStructuredLogger(slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))))
	env := suite.NewTestWorkflowEnvironment()
	env.SetStartTime(t0)
	env.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: testWorkflowID, TaskQueue: "salve"})
	env.RegisterWorkflowWithOptions(workflows.Runbook, workflow.RegisterOptions{Name: workflows.WorkflowName})
	env.RegisterActivityWithOptions(func(context.Context, step.Request) (step.Result, error) {
		return step.Result{}, errors.New("the real step must not run in unit tests")
	}, activity.RegisterOptions{Name: httpActivity})
	for _, kind := range kinds {
		env.RegisterActivityWithOptions(func(context.Context, step.Request) (step.Result, error) {
			return step.Result{}, errors.New("the real step must not run in unit tests")
		}, activity.RegisterOptions{Name: step.ActivityName(kind)})
	}
	for _, name := range []string{workflows.AuditActivity, workflows.RecordActivity, workflows.RunFinishedActivity} {
		env.RegisterActivityWithOptions(func(context.Context, domain.AuditEvent) error {
			return errors.New("the real audit recorder and safety state must not run in unit tests")
		}, activity.RegisterOptions{Name: name})
	}
	env.RegisterActivityWithOptions(func(context.Context, step.HookEvent) error {
		return errors.New("real notification hooks must not run in unit tests")
	}, activity.RegisterOptions{Name: step.HookActivity})
	env.RegisterActivityWithOptions(func(context.Context, step.TargetRequest) (step.TargetResult, error) {
		return step.TargetResult{}, errors.New("the real target lock must not run in unit tests")
	}, activity.RegisterOptions{Name: step.TargetActivity})
	acts := activities.New(step.NewRegistry(), nil, slog.New(slog.DiscardHandler))
	acts.VerifySnapshot = testKey.Verify
	env.RegisterActivityWithOptions(acts.VerifyRunbook, activity.RegisterOptions{Name: workflows.VerifyActivity})
	env.RegisterActivityWithOptions(acts.Prepare, activity.RegisterOptions{Name: workflows.PrepareActivity})

	rec := &recorder{}
	env.OnActivity(step.HookActivity, mock.Anything, mock.Anything).Return(
		func(_ context.Context, ev step.HookEvent) error {
			rec.mu.Lock()
			defer rec.mu.Unlock()
			rec.hooks = append(rec.hooks, ev)
			return nil
		}).Maybe()
	env.OnActivity(httpActivity, mock.Anything, mock.Anything).Return(
		func(ctx context.Context, req step.Request) (step.Result, error) {
			info := activity.GetInfo(ctx)
			rec.mu.Lock()
			rec.requests = append(rec.requests, req)
			rec.attempts = append(rec.attempts, info.Attempt)
			rec.infos = append(rec.infos, info)
			rec.mu.Unlock()
			if handle == nil {
				return step.Result{}, nil
			}
			return handle(ctx, req)
		}).Maybe()
	env.OnActivity(workflows.RecordActivity, mock.Anything, mock.Anything).Return(
		func(_ context.Context, ev domain.AuditEvent) error {
			rec.mu.Lock()
			defer rec.mu.Unlock()
			rec.audits = append(rec.audits, ev)
			return nil
		}).Maybe()
	env.OnActivity(workflows.AuditActivity, mock.Anything, mock.Anything).Return(
		func(_ context.Context, ev domain.AuditEvent) error {
			rec.mu.Lock()
			defer rec.mu.Unlock()
			rec.audits = append(rec.audits, ev)
			rec.legacy = append(rec.legacy, ev)
			return nil
		}).Maybe()
	env.OnActivity(workflows.RunFinishedActivity, mock.Anything, mock.Anything).Return(
		func(_ context.Context, ev domain.AuditEvent) error {
			rec.mu.Lock()
			defer rec.mu.Unlock()
			rec.finished = append(rec.finished, ev)
			return nil
		}).Maybe()
	return env, rec
}

func parseRunbook(t *testing.T, doc string) runbooks.Runbook {
	t.Helper()
	reg, err := activities.NewRegistry()
	require.NoError(t, err)
	rb, err := runbooks.Parse("test.yaml", []byte(doc), reg)
	require.NoError(t, err)
	return *rb
}

func firing() *domain.AlertEvent {
	return &domain.AlertEvent{
		ID:          domain.AlertEventID("fp1", domain.StatusFiring, t0.Add(-time.Minute)),
		Fingerprint: "fp1",
		Status:      domain.StatusFiring,
		Labels:      map[string]string{"alertname": "WebDown", "namespace": "shop", "service": "web"},
		Annotations: map[string]string{"summary": "web is down", "hook": "http://hooks.internal"},
		StartsAt:    t0.Add(-time.Minute),
		ReceivedAt:  t0,
	}
}

// testKey signs the snapshots of unit-test runs, as Salve's own key does.
var testKey = snapshot.Random()

// run signs in's snapshot (unless the test set a signature) and runs it.
func run(t *testing.T, env *testsuite.TestWorkflowEnvironment, in workflows.Input) (workflows.Status, error) {
	t.Helper()
	if in.Revision == 0 {
		in.Revision = workflows.CurrentRevision // as every start does now
	}
	if in.RunbookSignature == "" {
		sig, err := testKey.Sign(in.Runbook)
		require.NoError(t, err)
		in.RunbookSignature = sig
	}
	env.ExecuteWorkflow(workflows.Runbook, in)
	require.True(t, env.IsWorkflowCompleted())
	werr := env.GetWorkflowError()
	var st workflows.Status
	if werr == nil {
		require.NoError(t, env.GetWorkflowResult(&st))
	} else {
		// A failed run still answers the status query with its final state.
		v, err := env.QueryWorkflow(workflows.QueryStatus)
		require.NoError(t, err)
		require.NoError(t, v.Get(&st))
	}
	return st, werr
}

func failNonRetryable(msg string) (step.Result, error) {
	return step.Result{}, temporal.NewNonRetryableApplicationError(msg, "StepPermanent", nil)
}

const orderRunbook = `apiVersion: salve/v1
kind: Runbook
metadata: {name: restart-web, owner: team-web}
spec:
  trigger:
    matchers: ['alertname="WebDown"']
    incidentKey: '{{ .Labels.namespace }}/{{ .Labels.service }}'
  params:
    namespace: {fromLabel: namespace, required: true}
    hook: {fromAnnotation: hook, default: "http://default.internal", pattern: 'http://[a-z.]+\.internal'}
    env: {default: staging}
  steps:
    - name: restart
      action: http.request
      with:
        url: '{{ .Params.hook }}/restart/{{ .Params.namespace | pathEscape }}/{{ .Labels.service | pathEscape }}'
        method: POST
        headers: {X-Env: '{{ .Params.env }}', X-Summary: '{{ .Annotations.summary }}'}
        body: 'incident {{ .Run.IncidentKey }} of {{ .Run.Runbook }}'
        expectStatus: [200, 202]
      timeout: 45s
      retry: {maxAttempts: 7, initialInterval: 2s, maxInterval: 10s}
    - name: verify
      action: http.request
      with:
        url: 'http://verify.internal/{{ .Steps.restart.Output.status | pathEscape }}'
        body: '{{ .Steps.restart.Output.body }} ({{ .Steps.restart.Status }})'
    - name: report
      action: http.request
      with:
        url: 'http://report.internal/?run={{ .Run.WorkflowID | queryEscape }}&fp={{ .Alert.Fingerprint | queryEscape }}'
`

func TestRunbookRunsStepsInOrderWithRenderedParams(t *testing.T) {
	env, rec := newEnv(t, func(_ context.Context, req step.Request) (step.Result, error) {
		switch req.Step {
		case "restart":
			return step.Result{Output: map[string]any{"status": 202, "body": "restarted"}}, nil
		case "verify":
			return step.Result{Output: map[string]any{"status": 200}}, nil
		}
		return step.Result{}, nil
	})
	rb := parseRunbook(t, orderRunbook)
	st, err := run(t, env, workflows.Input{
		Runbook:     rb,
		IncidentKey: "shop/web",
		Alert:       firing(),
		Params:      map[string]string{"env": "prod"},
		Actor:       domain.Actor{Kind: domain.ActorAlert, Name: "WebDown"},
	})
	require.NoError(t, err)

	require.Equal(t, []string{"restart", "verify", "report"}, rec.steps())

	restart := rec.request(t, "restart")
	require.Equal(t, step.Request{
		WorkflowID: testWorkflowID,
		RunID:      restart.RunID,
		Runbook:    "restart-web",
		Step:       "restart",
		Kind:       "http.request",
		Params: map[string]any{
			"url":          "http://hooks.internal/restart/shop/web", // annotation beats the default
			"method":       "POST",
			"headers":      map[string]any{"X-Env": "prod", "X-Summary": "web is down"}, // launch param beats the default
			"body":         "incident shop/web of restart-web",
			"expectStatus": []any{float64(200), float64(202)}, // JSON numbers after the history round trip
		},
		IdempotencyKey: testWorkflowID + "/default-test-run-id/restart",
	}, restart)
	require.NotEmpty(t, restart.RunID)

	verify := rec.request(t, "verify")
	require.Equal(t, map[string]any{
		"url":  "http://verify.internal/202",
		"body": "restarted (succeeded)",
	}, verify.Params)
	require.Equal(t, testWorkflowID+"/default-test-run-id/verify", verify.IdempotencyKey)

	report := rec.request(t, "report")
	require.Equal(t, "http://report.internal/?run="+url.QueryEscape(testWorkflowID)+"&fp=fp1", report.Params["url"])
	require.Equal(t, testWorkflowID+"/default-test-run-id/report", report.IdempotencyKey)

	// The runbook's timeout and retry settings reach Temporal.
	rec.mu.Lock()
	restartInfo := rec.infos[0]
	verifyInfo := rec.infos[1]
	rec.mu.Unlock()
	// (The test environment does not expose the retry policy in
	// activity.Info; TestRunbookRetries checks it by counting attempts.)
	require.Equal(t, 45*time.Second, restartInfo.StartToCloseTimeout)
	require.Equal(t, runbooks.DefaultStepTimeout, verifyInfo.StartToCloseTimeout)

	require.Equal(t, workflows.RunStateSucceeded, st.State)
	require.Equal(t, "restart-web", st.Runbook)
	require.Equal(t, rb.Hash, st.RunbookHash)
	require.Equal(t, "shop/web", st.IncidentKey)
	require.Equal(t, map[string]string{"namespace": "shop", "hook": "http://hooks.internal", "env": "prod"}, st.Params)
	require.Empty(t, st.Error)
	require.Empty(t, st.OnFailure)
	require.Len(t, st.Steps, 3)
	for i, name := range []string{"restart", "verify", "report"} {
		require.Equal(t, name, st.Steps[i].Name)
		require.Equal(t, "http.request", st.Steps[i].Action)
		require.Equal(t, workflows.StepStateSucceeded, st.Steps[i].State)
		require.False(t, st.Steps[i].StartedAt.IsZero())
		require.False(t, st.Steps[i].FinishedAt.Before(st.Steps[i].StartedAt))
	}
	require.Equal(t, map[string]any{"status": float64(202), "body": "restarted"}, st.Steps[0].Output)
	require.Equal(t, workflows.AlertRefs([]domain.AlertEvent{*firing()}), st.Alerts)
	require.False(t, st.Resolved)

	// Run-level audit: started and finished, with a deterministic ID.
	require.Equal(t, []string{domain.ActionRunStarted, domain.ActionRunFinished}, rec.auditActions())
	started := rec.audit(t, domain.ActionRunStarted)
	require.Equal(t, testWorkflowID+"/"+restart.RunID+"/"+domain.ActionRunStarted, started.ID)
	require.Equal(t, domain.Actor{Kind: domain.ActorAlert, Name: "WebDown"}, started.Actor)
	require.Equal(t, "restart-web", started.Runbook)
	require.Equal(t, rb.Hash, started.RunbookHash)
	require.Equal(t, testWorkflowID, started.WorkflowID)
	require.Equal(t, restart.RunID, started.RunID)
	require.Equal(t, "shop/web", started.IncidentKey)
	require.Equal(t, t0, started.Time.UTC())
	finished := rec.audit(t, domain.ActionRunFinished)
	require.Equal(t, workflows.RunStateSucceeded, finished.Outcome)
	require.Empty(t, finished.Error)
	require.Equal(t, testWorkflowID+"/"+restart.RunID+"/"+domain.ActionRunFinished, finished.ID)
}

func TestRunbookManualLaunch(t *testing.T) {
	env, rec := newEnv(t, nil)
	rb := parseRunbook(t, orderRunbook)
	st, err := run(t, env, workflows.Input{
		Runbook:     rb,
		IncidentKey: "manual-1",
		Params:      map[string]string{"namespace": "shop"},
		Actor:       domain.Actor{Kind: domain.ActorUser, Name: "alice"},
	})
	// The runbook reads the alert's labels and annotations, which a manual
	// launch does not have: rendering fails and the run says why instead of
	// calling a half-rendered URL. (Keys render in sorted order, so the
	// first error is about headers.X-Summary.)
	require.Error(t, err)
	require.Empty(t, rec.steps())
	require.Equal(t, workflows.RunStateFailed, st.State)
	require.Equal(t, workflows.StepStateFailed, st.Steps[0].State)
	require.Contains(t, st.Steps[0].Error, `headers: X-Summary: template "{{ .Annotations.summary }}"`)
	require.Contains(t, st.Steps[0].Error, `map has no entry for key "summary"`)
	require.Empty(t, st.Alerts)
	require.Equal(t, map[string]string{"namespace": "shop", "hook": "http://default.internal", "env": "staging"}, st.Params)
	require.Equal(t, domain.Actor{Kind: domain.ActorUser, Name: "alice"}, rec.audit(t, domain.ActionRunStarted).Actor)
}

const sleepRunbook = `apiVersion: salve/v1
kind: Runbook
metadata: {name: sleeper}
spec:
  params:
    wait: {default: 1h}
  steps:
    - {name: before, action: http.request, with: {url: "http://x/before"}}
    - {name: wait, action: sleep, with: {duration: '{{ .Params.wait }}'}}
    - {name: after, action: http.request, with: {url: "http://x/after"}}
`

func TestRunbookSleepIsADurableTimer(t *testing.T) {
	env, rec := newEnv(t, nil)
	var timers []string
	env.SetOnTimerScheduledListener(func(timerID string, d time.Duration) {
		timers = append(timers, d.String())
	})
	st, err := run(t, env, workflows.Input{Runbook: parseRunbook(t, sleepRunbook), IncidentKey: "k"})
	require.NoError(t, err)

	require.Equal(t, []string{"before", "after"}, rec.steps(), "sleep runs no activity")
	require.Equal(t, []string{"1h0m0s"}, timers, "sleep is one workflow timer")
	require.Len(t, st.Steps, 3)
	wait := st.Steps[1]
	require.Equal(t, "wait", wait.Name)
	require.Equal(t, runbooks.ActionSleep, wait.Action)
	require.Equal(t, workflows.StepStateSucceeded, wait.State)
	require.Equal(t, time.Hour, wait.FinishedAt.Sub(wait.StartedAt), "workflow.Now advances by the sleep in virtual time")
	require.False(t, st.Steps[2].StartedAt.Before(wait.FinishedAt))
	require.GreaterOrEqual(t, env.Now().Sub(t0), time.Hour)

	started := rec.audit(t, domain.ActionRunStarted)
	finished := rec.audit(t, domain.ActionRunFinished)
	require.GreaterOrEqual(t, finished.Time.Sub(started.Time), time.Hour)
}

func TestRunbookSleepWithABadRenderedDuration(t *testing.T) {
	env, rec := newEnv(t, nil)
	st, err := run(t, env, workflows.Input{
		Runbook:     parseRunbook(t, sleepRunbook),
		IncidentKey: "k",
		Params:      map[string]string{"wait": "soon"},
	})
	require.Error(t, err)
	require.Equal(t, []string{"before"}, rec.steps())
	require.Equal(t, workflows.StepStateFailed, st.Steps[1].State)
	require.Contains(t, st.Steps[1].Error, `sleep duration: want a duration such as "30s", got "soon"`)
	require.Len(t, st.Steps, 2, "the step after the failed sleep does not run")
}

const whenRunbook = `apiVersion: salve/v1
kind: Runbook
metadata: {name: guarded}
spec:
  params:
    env: {required: true}
  steps:
    - {name: always, action: http.request, with: {url: "http://x/always"}}
    - name: prodonly
      action: http.request
      when: '{{ eq .Params.env "prod" }}'
      with: {url: "http://x/prod"}
    - name: afterprod
      action: http.request
      when: '{{ eq .Steps.prodonly.Status "succeeded" }}'
      with: {url: "http://x/after"}
    - {name: last, action: http.request, with: {url: "http://x/last"}}
`

func TestRunbookWhen(t *testing.T) {
	tests := []struct {
		env       string
		wantCalls []string
		wantState []string
	}{
		{
			env:       "prod",
			wantCalls: []string{"always", "prodonly", "afterprod", "last"},
			wantState: []string{workflows.StepStateSucceeded, workflows.StepStateSucceeded, workflows.StepStateSucceeded, workflows.StepStateSucceeded},
		},
		{
			env:       "staging",
			wantCalls: []string{"always", "last"},
			wantState: []string{workflows.StepStateSucceeded, workflows.StepStateSkipped, workflows.StepStateSkipped, workflows.StepStateSucceeded},
		},
	}
	for _, tt := range tests {
		t.Run(tt.env, func(t *testing.T) {
			env, rec := newEnv(t, nil)
			st, err := run(t, env, workflows.Input{
				Runbook:     parseRunbook(t, whenRunbook),
				IncidentKey: "k",
				Params:      map[string]string{"env": tt.env},
			})
			require.NoError(t, err)
			require.Equal(t, workflows.RunStateSucceeded, st.State)
			require.Equal(t, tt.wantCalls, rec.steps())
			states := make([]string, len(st.Steps))
			for i, s := range st.Steps {
				states[i] = s.State
				if s.State == workflows.StepStateSkipped {
					require.True(t, s.StartedAt.IsZero(), "a skipped step never started")
				}
			}
			require.Equal(t, tt.wantState, states)

			var skipped []string
			for _, a := range rec.auditActions() {
				if len(a) > len(domain.ActionStepSkipped) && a[:len(domain.ActionStepSkipped)] == domain.ActionStepSkipped {
					skipped = append(skipped, a)
				}
			}
			if tt.env == "prod" {
				require.Empty(t, skipped)
			} else {
				require.Equal(t, []string{"step.skipped:prodonly", "step.skipped:afterprod"}, skipped)
				ev := rec.audit(t, domain.ActionStepSkipped)
				require.Equal(t, workflows.StepStateSkipped, ev.Outcome)
				require.Equal(t, testWorkflowID+"/"+ev.RunID+"/step.skipped/prodonly", ev.ID)
			}
		})
	}
}

func TestRunbookWhenMustRenderABool(t *testing.T) {
	env, rec := newEnv(t, nil)
	rb := parseRunbook(t, `apiVersion: salve/v1
kind: Runbook
metadata: {name: guarded}
spec:
  params:
    env: {default: prod}
  steps:
    - {name: typo, action: http.request, when: '{{ .Params.env }}', with: {url: "http://x"}}
`)
	st, err := run(t, env, workflows.Input{Runbook: rb, IncidentKey: "k"})
	require.Error(t, err)
	require.Empty(t, rec.steps(), "a guard that is neither true nor false must not run the step")
	require.Equal(t, workflows.StepStateFailed, st.Steps[0].State)
	require.Contains(t, st.Steps[0].Error, "it must render true or false")
}

const failingRunbook = `apiVersion: salve/v1
kind: Runbook
metadata: {name: fragile}
spec:
  steps:
    - {name: first, action: http.request, with: {url: "http://x/first"}}
    - {name: breaks, action: http.request, with: {url: "http://x/breaks"}}
    - {name: never, action: http.request, with: {url: "http://x/never"}}
  onFailure:
    - name: rollback
      action: http.request
      with: {url: 'http://x/rollback?failed={{ .Steps.breaks.Status }}&first={{ .Steps.first.Status }}'}
    - {name: notify, action: http.request, with: {url: "http://x/notify"}}
`

func TestRunbookStepFailureRunsOnFailure(t *testing.T) {
	env, rec := newEnv(t, func(_ context.Context, req step.Request) (step.Result, error) {
		if req.Step == "breaks" {
			return failNonRetryable("upstream said 409")
		}
		return step.Result{}, nil
	})
	st, err := run(t, env, workflows.Input{Runbook: parseRunbook(t, failingRunbook), IncidentKey: "k"})

	require.Error(t, err)
	var appErr *temporal.ApplicationError
	require.ErrorAs(t, err, &appErr)
	require.Equal(t, "RunFailed", appErr.Type())
	require.True(t, appErr.NonRetryable(), "a failed run is not retried as a whole")

	require.Equal(t, []string{"first", "breaks", "rollback", "notify"}, rec.steps())
	require.Equal(t, testWorkflowID+"/default-test-run-id/breaks", rec.request(t, "breaks").IdempotencyKey)
	rollback := rec.request(t, "rollback")
	require.Equal(t, testWorkflowID+"/default-test-run-id/rollback/onFailure", rollback.IdempotencyKey)
	require.Equal(t, testWorkflowID+"/default-test-run-id/notify/onFailure", rec.request(t, "notify").IdempotencyKey)
	require.Equal(t, "http://x/rollback?failed=failed&first=succeeded", rollback.Params["url"])

	require.Equal(t, workflows.RunStateFailed, st.State)
	require.Contains(t, st.Error, `step "breaks"`)
	require.Contains(t, st.Error, "upstream said 409")
	require.Len(t, st.Steps, 2, "steps after the failure do not run")
	require.Equal(t, workflows.StepStateSucceeded, st.Steps[0].State)
	require.Equal(t, workflows.StepStateFailed, st.Steps[1].State)
	// The SDK's ApplicationError text adds "(type: ..., retryable: ...)".
	require.Contains(t, st.Steps[1].Error, "upstream said 409")
	require.Len(t, st.OnFailure, 2)
	require.Equal(t, workflows.StepStateSucceeded, st.OnFailure[0].State)
	require.Equal(t, workflows.StepStateSucceeded, st.OnFailure[1].State)

	require.Equal(t, []string{domain.ActionRunStarted, domain.ActionRunFinished}, rec.auditActions())
	finished := rec.audit(t, domain.ActionRunFinished)
	require.Equal(t, workflows.RunStateFailed, finished.Outcome)
	require.Contains(t, finished.Error, "upstream said 409")
}

func TestRunbookRetries(t *testing.T) {
	tests := []struct {
		name         string
		retry        string
		err          error
		wantAttempts []int32
	}{
		{name: "default policy retries a transient failure", err: errors.New("connection refused"), wantAttempts: []int32{1, 2, 3}},
		{name: "maxAttempts from the runbook", retry: "retry: {maxAttempts: 5, initialInterval: 1s}", err: errors.New("503"), wantAttempts: []int32{1, 2, 3, 4, 5}},
		{name: "maxAttempts 1 never retries", retry: "retry: {maxAttempts: 1}", err: errors.New("503"), wantAttempts: []int32{1}},
		{name: "a permanent failure is not retried", err: temporal.NewNonRetryableApplicationError("bad url", "StepPermanent", nil), wantAttempts: []int32{1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, rec := newEnv(t, func(context.Context, step.Request) (step.Result, error) {
				return step.Result{}, tt.err
			})
			rb := parseRunbook(t, `apiVersion: salve/v1
kind: Runbook
metadata: {name: retrying}
spec:
  steps:
    - name: flaky
      action: http.request
      with: {url: "http://x"}
      `+tt.retry+`
`)
			st, err := run(t, env, workflows.Input{Runbook: rb, IncidentKey: "k"})
			require.Error(t, err)
			rec.mu.Lock()
			attempts := append([]int32(nil), rec.attempts...)
			keys := make([]string, len(rec.requests))
			for i, q := range rec.requests {
				keys[i] = q.IdempotencyKey
			}
			rec.mu.Unlock()
			require.Equal(t, tt.wantAttempts, attempts)
			for _, k := range keys {
				require.Equal(t, testWorkflowID+"/default-test-run-id/flaky", k, "every attempt carries the same idempotency key")
			}
			require.Equal(t, workflows.StepStateFailed, st.Steps[0].State)
		})
	}
}

func TestRunbookCancelDuringSleepStillCompensates(t *testing.T) {
	env, rec := newEnv(t, nil)
	rb := parseRunbook(t, `apiVersion: salve/v1
kind: Runbook
metadata: {name: cancellable}
spec:
  steps:
    - {name: act, action: http.request, with: {url: "http://x/act"}}
    - {name: wait, action: sleep, with: {duration: 1h}}
    - {name: verify, action: http.request, with: {url: "http://x/verify"}}
  onFailure:
    - {name: rollback, action: http.request, with: {url: "http://x/rollback"}}
`)
	var during workflows.Status
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(workflows.QueryStatus)
		require.NoError(t, err)
		require.NoError(t, v.Get(&during))
		env.CancelWorkflow()
	}, 10*time.Minute)

	st, err := run(t, env, workflows.Input{Runbook: rb, IncidentKey: "k"})
	require.Error(t, err)
	var cancelled *temporal.CanceledError
	require.ErrorAs(t, err, &cancelled, "a cancelled run ends cancelled, not failed")

	// While sleeping, the status query shows where the run is.
	require.Equal(t, workflows.RunStateRunning, during.State)
	require.Len(t, during.Steps, 2)
	require.Equal(t, workflows.StepStateSucceeded, during.Steps[0].State)
	require.Equal(t, workflows.StepStateRunning, during.Steps[1].State)

	// Compensation ran in a disconnected context after the cancel, and the
	// finishing audit event was still written.
	require.Equal(t, []string{"act", "rollback"}, rec.steps())
	require.Equal(t, testWorkflowID+"/default-test-run-id/rollback/onFailure", rec.request(t, "rollback").IdempotencyKey)
	require.Equal(t, workflows.RunStateCancelled, st.State)
	require.Equal(t, workflows.StepStateFailed, st.Steps[1].State)
	require.Less(t, st.Steps[1].FinishedAt.Sub(st.Steps[1].StartedAt), time.Hour, "the sleep was interrupted")
	require.Len(t, st.OnFailure, 1)
	require.Equal(t, workflows.StepStateSucceeded, st.OnFailure[0].State)
	require.Equal(t, []string{domain.ActionRunStarted, domain.ActionRunFinished}, rec.auditActions())
	require.Equal(t, workflows.RunStateCancelled, rec.audit(t, domain.ActionRunFinished).Outcome)
}

func TestRunbookContinueOnError(t *testing.T) {
	env, rec := newEnv(t, func(_ context.Context, req step.Request) (step.Result, error) {
		if req.Step == "optional" {
			return failNonRetryable("cache flush failed")
		}
		return step.Result{}, nil
	})
	rb := parseRunbook(t, `apiVersion: salve/v1
kind: Runbook
metadata: {name: tolerant}
spec:
  steps:
    - {name: optional, action: http.request, with: {url: "http://x/flush"}, continueOnError: true}
    - name: main
      action: http.request
      with: {url: 'http://x/main?optional={{ .Steps.optional.Status }}'}
  onFailure:
    - {name: rollback, action: http.request, with: {url: "http://x/rollback"}}
`)
	st, err := run(t, env, workflows.Input{Runbook: rb, IncidentKey: "k"})
	require.NoError(t, err)
	require.Equal(t, []string{"optional", "main"}, rec.steps(), "onFailure does not run for a tolerated failure")
	require.Equal(t, "http://x/main?optional=failed", rec.request(t, "main").Params["url"])
	require.Equal(t, workflows.RunStateSucceeded, st.State)
	require.Equal(t, workflows.StepStateFailed, st.Steps[0].State)
	require.Contains(t, st.Steps[0].Error, "cache flush failed")
	require.Equal(t, workflows.StepStateSucceeded, st.Steps[1].State)
	require.Empty(t, st.OnFailure)
	require.Equal(t, workflows.RunStateSucceeded, rec.audit(t, domain.ActionRunFinished).Outcome)
}

func TestRunbookBadParamsFailBeforeAnyStep(t *testing.T) {
	const doc = `apiVersion: salve/v1
kind: Runbook
metadata: {name: strict}
spec:
  params:
    namespace: {fromLabel: namespace, required: true}
  steps:
    - {name: act, action: http.request, with: {url: 'http://x/{{ .Params.namespace | pathEscape }}'}}
`
	tests := []struct {
		name    string
		alert   *domain.AlertEvent
		launch  map[string]string
		wantErr string
	}{
		{
			name:    "missing required param",
			alert:   &domain.AlertEvent{ID: "a", Fingerprint: "fp", Status: domain.StatusFiring, Labels: map[string]string{"alertname": "X"}},
			wantErr: `missing required parameter "namespace" (from alert label "namespace" or a launch param)`,
		},
		{
			name:    "unknown launch param",
			launch:  map[string]string{"namespace": "shop", "namespce": "typo"},
			wantErr: `unknown parameter "namespce"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, rec := newEnv(t, nil)
			st, err := run(t, env, workflows.Input{Runbook: parseRunbook(t, doc), IncidentKey: "k", Alert: tt.alert, Params: tt.launch})
			require.Error(t, err)
			require.Contains(t, err.Error(), tt.wantErr)
			require.Empty(t, rec.steps(), "no step activity may run with bad parameters")
			require.Equal(t, workflows.RunStateFailed, st.State)
			require.Contains(t, st.Error, tt.wantErr)
			require.Empty(t, st.Steps)
			require.Equal(t, []string{domain.ActionRunStarted, domain.ActionRunFinished}, rec.auditActions())
			finished := rec.audit(t, domain.ActionRunFinished)
			require.Equal(t, workflows.RunStateFailed, finished.Outcome)
			require.Contains(t, finished.Error, tt.wantErr)
		})
	}
}

func TestRunbookAlertSignals(t *testing.T) {
	env, rec := newEnv(t, nil)
	rb := parseRunbook(t, sleepRunbook)
	first := firing()
	repeat := *first
	repeat.ReceivedAt = t0.Add(5 * time.Minute) // a redelivery: same ID, later receipt
	refire := *first
	refire.StartsAt = t0.Add(20 * time.Minute)
	refire.ID = domain.AlertEventID(refire.Fingerprint, domain.StatusFiring, refire.StartsAt)
	refire.ReceivedAt = t0.Add(20 * time.Minute)
	resolved := refire
	resolved.Status = domain.StatusResolved
	resolved.ID = domain.AlertEventID(resolved.Fingerprint, domain.StatusResolved, resolved.StartsAt)
	resolved.ReceivedAt = t0.Add(30 * time.Minute)

	var mid workflows.Status
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(workflows.SignalAlert, repeat)
		env.SignalWorkflow(workflows.SignalAlert, *first)
	}, 5*time.Minute)
	// Older triggers sent one whole alert per signal (SignalAlert); today's
	// send batches of compact references (SignalAlerts). Both are heard.
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(workflows.SignalAlerts, workflows.AlertRefs([]domain.AlertEvent{refire}))
	}, 20*time.Minute)
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(workflows.QueryStatus)
		require.NoError(t, err)
		require.NoError(t, v.Get(&mid))
	}, 25*time.Minute)
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(workflows.SignalAlerts, workflows.AlertRefs([]domain.AlertEvent{resolved, resolved}))
	}, 30*time.Minute)

	st, err := run(t, env, workflows.Input{Runbook: rb, IncidentKey: "k", Alert: first})
	require.NoError(t, err)

	require.Len(t, mid.Alerts, 2, "the repeated notification is recorded once")
	require.False(t, mid.Resolved)
	require.Equal(t, workflows.StepStateRunning, mid.Steps[1].State)

	require.Equal(t, []workflows.AlertRef{
		{ID: first.ID, Fingerprint: first.Fingerprint, Status: domain.StatusFiring, StartsAt: first.StartsAt, ReceivedAt: t0},
		{ID: refire.ID, Fingerprint: first.Fingerprint, Status: domain.StatusFiring, StartsAt: refire.StartsAt, ReceivedAt: refire.ReceivedAt},
		{ID: resolved.ID, Fingerprint: first.Fingerprint, Status: domain.StatusResolved, StartsAt: refire.StartsAt, ReceivedAt: resolved.ReceivedAt},
	}, st.Alerts)
	require.Equal(t, 3, st.AlertsSeen)
	require.True(t, st.Resolved)

	// The query answers after completion too, with the same state.
	v, err := env.QueryWorkflow(workflows.QueryStatus)
	require.NoError(t, err)
	var after workflows.Status
	require.NoError(t, v.Get(&after))
	require.True(t, after.Resolved)
	require.Len(t, after.Alerts, 3)
	// Signals do not run steps or write run-level audit events.
	require.Equal(t, []string{"before", "after"}, rec.steps())
	require.Equal(t, []string{domain.ActionRunStarted, domain.ActionRunFinished}, rec.auditActions())
}

// A run that fails before any step acted has nothing to compensate.
func TestRunbookNoCompensationWhenNothingActed(t *testing.T) {
	rb := parseRunbook(t, `apiVersion: salve/v1
kind: Runbook
metadata: {name: nothing-acted}
spec:
  params:
    target: {required: true}
  steps:
    - {name: act, action: http.request, with: {url: "http://x/{{ .Params.target | pathEscape }}"}}
  onFailure:
    - {name: undo, action: http.request, with: {url: "http://x/undo"}}
`)
	env, rec := newEnv(t, nil)
	st, err := run(t, env, workflows.Input{Runbook: rb, IncidentKey: "k"})
	require.ErrorContains(t, err, `missing required parameter "target"`)
	require.Empty(t, rec.steps(), "neither the step nor its compensation ran")
	require.Empty(t, st.OnFailure)
	require.Equal(t, workflows.RunStateFailed, st.State)
}

func resolvedOf(a *domain.AlertEvent, at time.Time) domain.AlertEvent {
	r := *a
	r.Status = domain.StatusResolved
	r.ID = domain.AlertEventID(r.Fingerprint, domain.StatusResolved, r.StartsAt)
	r.ReceivedAt = at
	return r
}

const onResolvedRunbook = `apiVersion: salve/v1
kind: Runbook
metadata: {name: on-resolved}
spec:
  trigger: {matchers: ['alertname="WebDown"'], onResolved: POLICY}
  steps:
    - {name: act, action: http.request, with: {url: "http://x/act"}}
    - {name: wait, action: sleep, with: {duration: 1h}}
    - {name: verify, action: http.request, with: {url: "http://x/verify"}}
  onFailure:
    - {name: rollback, action: http.request, with: {url: "http://x/rollback"}}
`

func TestRunbookOnResolved(t *testing.T) {
	tests := []struct {
		policy     string
		wantState  string
		wantSteps  []string // activities called
		wantStates []string // of act, wait, verify
		wantReason string
	}{
		// ignore (the default) finishes what was started.
		{"ignore", workflows.RunStateSucceeded, []string{"act", "verify"}, []string{"succeeded", "succeeded", "succeeded"}, ""},
		// finish lets the current step end, then skips the rest; the run succeeds.
		{"finish", workflows.RunStateSucceeded, []string{"act"}, []string{"succeeded", "succeeded", "skipped"}, "alert resolved (onResolved: finish)"},
		// cancel interrupts the sleep and compensates.
		{"cancel", workflows.RunStateCancelled, []string{"act", "rollback"}, []string{"succeeded", "failed"}, "alert resolved (onResolved: cancel)"},
	}
	for _, tt := range tests {
		t.Run(tt.policy, func(t *testing.T) {
			env, rec := newEnv(t, nil)
			rb := parseRunbook(t, strings.Replace(onResolvedRunbook, "POLICY", tt.policy, 1))
			alert := firing()
			env.RegisterDelayedCallback(func() {
				env.SignalWorkflow(workflows.SignalAlert, resolvedOf(alert, t0.Add(10*time.Minute)))
			}, 10*time.Minute)
			st, err := run(t, env, workflows.Input{Runbook: rb, IncidentKey: "k", Alert: alert})
			if tt.wantState == workflows.RunStateCancelled {
				var cancelled *temporal.CanceledError
				require.ErrorAs(t, err, &cancelled)
			} else {
				require.NoError(t, err)
			}
			require.Equal(t, tt.wantState, st.State)
			require.Equal(t, tt.wantSteps, rec.steps())
			states := make([]string, len(st.Steps))
			for i, s := range st.Steps {
				states[i] = s.State
			}
			require.Equal(t, tt.wantStates, states)
			require.Equal(t, tt.wantReason, st.StopReason)
			require.True(t, st.Resolved)
			require.Equal(t, tt.wantState, rec.audit(t, domain.ActionRunFinished).Outcome)
		})
	}
}

// Credential roles are rendered once from params and handed to every step;
// they name a role, never a secret.
func TestRunbookCredentialRoles(t *testing.T) {
	env, rec := newEnv(t, nil)
	rb := parseRunbook(t, `apiVersion: salve/v1
kind: Runbook
metadata: {name: creds}
spec:
  params:
    namespace: {type: enum, values: [shop, payments], default: shop}
  credentials:
    kubernetes: {vaultRole: 'salve-{{ .Params.namespace }}', ttl: 10m}
  steps:
    - {name: a, action: http.request, with: {url: "http://x/a"}}
`)
	_, err := run(t, env, workflows.Input{Runbook: rb, IncidentKey: "k"})
	require.NoError(t, err)
	require.Equal(t, map[string]step.CredentialRef{"kubernetes": {Role: "salve-shop", TTL: 10 * time.Minute}}, rec.request(t, "a").Credentials)
}

// A run whose runbook snapshot Salve did not sign — started straight in
// Temporal, or changed on the way — runs nothing: no step, no hook, one
// run.refused audit record.
func TestRunbookRefusesUnsignedOrAlteredSnapshots(t *testing.T) {
	rb := parseRunbook(t, `apiVersion: salve/v1
kind: Runbook
metadata: {name: signed}
spec:
  steps:
    - {name: a, action: http.request, with: {url: "http://x/a", method: POST}}
`)
	sig, err := testKey.Sign(rb)
	require.NoError(t, err)
	altered := rb
	altered.Spec.Steps = append([]runbooks.Step(nil), rb.Spec.Steps...)
	altered.Spec.Steps[0].With = map[string]any{"url": "http://attacker.example/a", "method": "POST"}

	for name, in := range map[string]workflows.Input{
		"unsigned":    {Runbook: rb, RunbookSignature: "00", IncidentKey: "k"},
		"altered":     {Runbook: altered, RunbookSignature: sig, IncidentKey: "k"},
		"another key": {Runbook: rb, RunbookSignature: mustSign(t, snapshot.Random(), rb), IncidentKey: "k"},
	} {
		t.Run(name, func(t *testing.T) {
			env, rec := newEnv(t, func(context.Context, step.Request) (step.Result, error) {
				t.Error("a step ran")
				return step.Result{}, nil
			})
			st, err := run(t, env, in)
			require.Error(t, err)
			require.Equal(t, workflows.RunStateFailed, st.State)
			require.Contains(t, st.Error, "not signed by Salve")
			require.Empty(t, rec.steps())
			require.Empty(t, rec.hookEvents())
			require.Equal(t, []string{domain.ActionRunRefused}, rec.auditActions())
		})
	}

	env, rec := newEnv(t, func(context.Context, step.Request) (step.Result, error) { return step.Result{}, nil })
	_, err = run(t, env, workflows.Input{Runbook: rb, RunbookSignature: sig, IncidentKey: "k"})
	require.NoError(t, err, "the signed snapshot runs")
	require.Equal(t, []string{"a"}, rec.steps())
}

func mustSign(t *testing.T, k *snapshot.Key, rb runbooks.Runbook) string {
	t.Helper()
	sig, err := k.Sign(rb)
	require.NoError(t, err)
	return sig
}

const oneStepRunbook = `apiVersion: salve/v1
kind: Runbook
metadata: {name: one-step}
spec:
  steps:
    - {name: act, action: http.request, with: {url: "http://x/act"}}
`

// A run of the current revision asks its worker which run-level events
// some hook wants, and schedules a hook activity for those only; its
// run-level audit events are still all written.
func TestRunSchedulesOnlyTheHooksSomeoneWants(t *testing.T) {
	env, rec := newEnv(t, nil)
	env.OnActivity(workflows.PrepareActivity, mock.Anything, mock.Anything, mock.Anything).Return(
		step.Prepared{HookEvents: []string{step.HookFailed}}, nil)
	st, err := run(t, env, workflows.Input{Runbook: parseRunbook(t, oneStepRunbook), IncidentKey: "k"})
	require.NoError(t, err)
	require.Equal(t, workflows.RunStateSucceeded, st.State)
	require.Empty(t, rec.hookEvents(), "no hook wants started or succeeded")
	rec.audit(t, domain.ActionRunStarted)
	rec.audit(t, domain.ActionRunFinished)

	env, rec = newEnv(t, failNonRetryableStep)
	env.OnActivity(workflows.PrepareActivity, mock.Anything, mock.Anything, mock.Anything).Return(
		step.Prepared{HookEvents: []string{step.HookFailed}}, nil)
	_, err = run(t, env, workflows.Input{Runbook: parseRunbook(t, oneStepRunbook), IncidentKey: "k"})
	require.Error(t, err)
	require.Equal(t, []string{step.HookFailed}, rec.hookEvents())
}

// Runs started before revisions existed (Revision 0 or 1) run as they
// always did: every hook event is scheduled, whatever the worker's hooks.
func TestLegacyRevisionCallsEveryHook(t *testing.T) {
	env, rec := newEnv(t, nil)
	env.OnActivity(workflows.PrepareActivity, mock.Anything, mock.Anything, mock.Anything).Return(
		step.Prepared{}, nil).Maybe()
	st, err := run(t, env, workflows.Input{Runbook: parseRunbook(t, oneStepRunbook), IncidentKey: "k", Revision: 1})
	require.NoError(t, err)
	require.Equal(t, workflows.RunStateSucceeded, st.State)
	require.ElementsMatch(t, []string{step.HookStarted, step.HookSucceeded}, rec.hookEvents(), "hooks run side by side")
	rec.audit(t, domain.ActionRunFinished)
}

func failNonRetryableStep(context.Context, step.Request) (step.Result, error) {
	return failNonRetryable("target refused")
}

// A run of the current revision applies its end to the safety state in an
// activity of its own, once, after recording run.finished; runs of
// revision 2 and earlier record through AuditActivity, whose worker side
// applies it, and call no such activity.
func TestFinishedRunIsAppliedToTheSafetyStateExplicitly(t *testing.T) {
	env, rec := newEnv(t, failNonRetryableStep)
	_, err := run(t, env, workflows.Input{Runbook: parseRunbook(t, oneStepRunbook), IncidentKey: "k"})
	require.Error(t, err)
	require.Len(t, rec.finished, 1, "applied once")
	require.Equal(t, domain.ActionRunFinished, rec.finished[0].Action)
	require.Equal(t, workflows.RunStateFailed, rec.finished[0].Outcome, "the breaker counts the failure")
	require.Equal(t, rec.audit(t, domain.ActionRunFinished), rec.finished[0], "the very event recorded")
	require.Empty(t, rec.legacy)

	for _, revision := range []int{1, 2} {
		env, rec = newEnv(t, nil)
		env.OnActivity(workflows.PrepareActivity, mock.Anything, mock.Anything, mock.Anything).Return(step.Prepared{}, nil).Maybe()
		_, err = run(t, env, workflows.Input{Runbook: parseRunbook(t, oneStepRunbook), IncidentKey: "k", Revision: revision})
		require.NoError(t, err)
		require.Empty(t, rec.finished, "revision %d", revision)
		require.NotEmpty(t, rec.legacy, "revision %d records through AuditActivity", revision)
	}
}

// A worker given a run of a revision newer than it knows fails the
// workflow task (Temporal retries it for a newer worker) instead of
// running it in an older shape.
func TestRunOfAnUnknownRevisionIsNotRun(t *testing.T) {
	env, rec := newEnv(t, nil)
	env.ExecuteWorkflow(workflows.WorkflowName, workflows.Input{Runbook: parseRunbook(t, oneStepRunbook), IncidentKey: "k",
		Revision: workflows.CurrentRevision + 1})
	require.Error(t, env.GetWorkflowError())
	require.Contains(t, env.GetWorkflowError().Error(), "newer than this worker's")
	require.Empty(t, rec.requests, "no step ran")
	require.Empty(t, rec.audits, "nothing recorded")
}
