package workflows_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/salve-sre/salve/activities/step"
	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/workflows"
)

const shadowRunbook = `apiVersion: salve/v1
kind: Runbook
metadata: {name: restart-web, owner: team-web}
spec:
  trigger:
    matchers: ['alertname="WebDown"']
    incidentKey: '{{ .Labels.namespace }}/{{ .Labels.service }}'
  params:
    namespace: {fromLabel: namespace, required: true, type: dnsLabel}
    service: {fromLabel: service, required: true, type: k8sName}
  safety:
    mode: shadow
    shadowWindow: 20m
    approval: {required: true}
  steps:
    - {name: before, action: kubernetes.get, with: {namespace: '{{ .Params.namespace }}', name: '{{ .Params.service }}'}}
    - {name: restart, action: kubernetes.restart, with: {namespace: '{{ .Params.namespace }}', name: '{{ .Params.service }}'}}
    - {name: verify, action: prometheus.query, with: {query: 'up{job="web"}'}}
  onFailure:
    - {name: undo, action: http.request, with: {url: 'http://web.shop/undo'}}
`

// workload is a fake Deployment the kubernetes.get mock reads; a test
// changes it as a person would.
type workload struct {
	mu  sync.Mutex
	out map[string]any
	// failQuery makes prometheus.query fail (a real run would stop there).
	failQuery bool
}

func (w *workload) get() map[string]any {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := map[string]any{}
	for k, v := range w.out {
		c[k] = v
	}
	return c
}

func (w *workload) set(k string, v any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.out[k] = v
}

// shadowEnv registers the kubernetes kinds: get reads the fake workload,
// restart answers as the activity adapter answers a planned step (the
// mock fails the test if it is asked to act).
func shadowEnv(t *testing.T, w *workload) (*testsuite.TestWorkflowEnvironment, *recorder) {
	env, rec := newEnv(t, nil, "kubernetes.get", "kubernetes.restart", "prometheus.query")
	get, restart := step.ActivityName("kubernetes.get"), step.ActivityName("kubernetes.restart")
	env.OnActivity(step.ActivityName("prometheus.query"), mock.Anything, mock.Anything).Return(func(_ context.Context, req step.Request) (step.Result, error) {
		rec.mu.Lock()
		rec.requests = append(rec.requests, req)
		rec.mu.Unlock()
		if w.failQuery {
			return failNonRetryable("prometheus: no data")
		}
		return step.Result{Output: map[string]any{"value": 1.0}}, nil
	}).Maybe()
	env.OnActivity(get, mock.Anything, mock.Anything).Return(func(_ context.Context, req step.Request) (step.Result, error) {
		rec.mu.Lock()
		rec.requests = append(rec.requests, req)
		rec.mu.Unlock()
		return step.Result{Output: w.get()}, nil
	}).Maybe()
	env.OnActivity(restart, mock.Anything, mock.Anything).Return(func(_ context.Context, req step.Request) (step.Result, error) {
		rec.mu.Lock()
		rec.requests = append(rec.requests, req)
		rec.mu.Unlock()
		if !req.DryRun {
			t.Errorf("a shadow run asked kubernetes.restart to act: %+v", req)
		}
		return step.Result{Output: map[string]any{"dryRun": true}}, nil
	}).Maybe()
	return env, rec
}

func TestShadowRun(t *testing.T) {
	tests := []struct {
		name        string
		during      func(w *workload) // what a person does 5 minutes in
		resolveAt   time.Duration     // 0: the alert never resolves
		wantVerdict string
		wantChange  string
		wantEnd     time.Duration // when the watch ended, after the start
	}{
		{name: "resolved on its own", resolveAt: 7 * time.Minute, wantVerdict: workflows.VerdictResolvedOnItsOwn, wantEnd: 7 * time.Minute},
		{name: "a person restarted it", during: func(w *workload) { w.set("restartedAt", "2026-11-24T09:05:00Z") },
			resolveAt: 9 * time.Minute, wantVerdict: workflows.VerdictAgreed, wantChange: workflows.ChangeRestarted, wantEnd: 9 * time.Minute},
		{name: "a person scaled it", during: func(w *workload) { w.set("replicas", float64(5)) },
			resolveAt: 9 * time.Minute, wantVerdict: workflows.VerdictDisagreed, wantChange: workflows.ChangeScaled, wantEnd: 9 * time.Minute},
		{name: "nobody acted and it still fires", wantVerdict: workflows.VerdictUnresolved, wantEnd: 20 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := &workload{out: map[string]any{"replicas": float64(2), "generation": float64(3), "revision": float64(3), "images": []any{"web:1"}, "restartedAt": ""}}
			env, rec := shadowEnv(t, w)
			alert := firing()
			if tt.during != nil {
				env.RegisterDelayedCallback(func() { tt.during(w) }, 5*time.Minute)
			}
			if tt.resolveAt > 0 {
				env.RegisterDelayedCallback(func() {
					env.SignalWorkflow(workflows.SignalAlert, resolvedOf(alert, t0.Add(tt.resolveAt)))
				}, tt.resolveAt)
			}
			st, err := run(t, env, workflows.Input{Runbook: parseRunbook(t, shadowRunbook), IncidentKey: "shop/web", Alert: alert})
			require.NoError(t, err)
			require.Equal(t, workflows.RunStateSucceeded, st.State)
			require.True(t, st.Shadow)
			require.True(t, st.DryRun)
			// The read-only steps ran, the restart was only planned (the
			// mock fails the test otherwise), and its workload was read
			// before and after the watch.
			require.Equal(t, []string{"before", "restart", "restart#before", "verify", "restart#after"}, rec.steps())
			ev := st.Evidence
			require.NotNil(t, ev)
			require.Equal(t, tt.wantVerdict, ev.Verdict, ev.Summary)
			require.Len(t, ev.Planned, 1)
			require.Equal(t, "shop/web", ev.Planned[0].Target)
			require.Equal(t, map[string]any{"namespace": "shop", "name": "web"}, ev.Planned[0].Params)
			require.Equal(t, []string{"run"}, ev.Approvals, "a real run would have asked for the runbook's approval")
			require.Equal(t, "passed", ev.Verify)
			require.Equal(t, tt.resolveAt > 0, ev.Resolved)
			if tt.wantChange != "" {
				require.Len(t, ev.Changes, 1)
				require.Equal(t, tt.wantChange, ev.Changes[0].Change)
			} else {
				require.Empty(t, ev.Changes)
			}
			// The watch ends at the resolution, else at the window.
			require.Equal(t, t0.Add(tt.wantEnd), env.Now().UTC().Truncate(time.Second), "the run ends when its watch does")
			if tt.resolveAt > 0 {
				require.Equal(t, tt.resolveAt.String(), ev.ResolvedAfter)
			}

			rec.mu.Lock()
			defer rec.mu.Unlock()
			var evidence *domain.AuditEvent
			for i, a := range rec.audits {
				if a.Action == domain.ActionShadowEvidence {
					evidence = &rec.audits[i]
				}
			}
			require.NotNil(t, evidence, "the evidence is audited")
			require.Equal(t, tt.wantVerdict, evidence.Outcome)
			require.Equal(t, "true", evidence.Detail["wouldAct"])
			require.Equal(t, "restart:kubernetes.restart shop/web", evidence.Detail["planned"])
			for _, a := range rec.audits {
				require.NotEqual(t, domain.ActionApprovalRequested, a.Action, "a shadow run never waits for people")
			}
		})
	}
}

func TestClassifyChange(t *testing.T) {
	base := map[string]any{"replicas": float64(2), "generation": float64(3), "revision": float64(3), "images": []any{"web:1"}, "restartedAt": ""}
	with := func(k string, v any) map[string]any {
		c := map[string]any{}
		for key, val := range base {
			c[key] = val
		}
		c[k] = v
		// Every change a person makes to the spec bumps the generation.
		c["generation"] = float64(4)
		return c
	}
	for _, tt := range []struct {
		after map[string]any
		want  string
	}{
		{base, ""},
		{with("restartedAt", "2026-11-24T09:05:00Z"), workflows.ChangeRestarted},
		{with("replicas", float64(3)), workflows.ChangeScaled},
		{with("images", []any{"web:0"}), workflows.ChangeRolled},
		{with("revision", float64(4)), workflows.ChangeRolled},
		{with("generation", float64(4)), workflows.ChangeOther},
	} {
		got := workflows.ClassifyChange(base, tt.after)
		require.Equal(t, tt.want, got.Change, "%v", tt.after)
		require.False(t, got.BySalve)
	}
	scaled := workflows.ClassifyChange(base, with("replicas", float64(1)))
	require.Equal(t, -1.0, scaled.Replicas)
	// Another Salve run restarted it: Salve's, not a person's.
	bySalve := with("restartedAt", "2026-11-24T09:05:00Z")
	bySalve["salveAction"] = "salve/restart-web/shop/web/r1/restart restart at=2026-11-24T09:05:00Z"
	c := workflows.ClassifyChange(base, bySalve)
	require.Equal(t, workflows.ChangeRestarted, c.Change)
	require.True(t, c.BySalve)
}

// Only a person's change in the planned direction agrees: Salve's own
// change weighs nothing, and a scale the other way disagrees.
func TestShadowVerdictWeighsWhoChangedWhat(t *testing.T) {
	const scaleRunbook = `apiVersion: salve/v1
kind: Runbook
metadata: {name: scale-web}
spec:
  trigger:
    matchers: ['alertname="WebDown"']
  params:
    namespace: {fromLabel: namespace, required: true, type: dnsLabel}
    service: {fromLabel: service, required: true, type: k8sName}
  safety: {mode: shadow, shadowWindow: 20m}
  steps:
    - {name: scale, action: kubernetes.scale, with: {namespace: '{{ .Params.namespace }}', name: '{{ .Params.service }}', delta: 2, max: 10}}
`
	for _, tt := range []struct {
		name        string
		change      func(w *workload)
		wantVerdict string
	}{
		{"a person scaled out", func(w *workload) { w.set("replicas", float64(4)) }, workflows.VerdictAgreed},
		{"a person scaled in", func(w *workload) { w.set("replicas", float64(1)) }, workflows.VerdictDisagreed},
		{"another Salve run scaled out", func(w *workload) {
			w.set("replicas", float64(4))
			w.set("salveAction", "salve/other/x/r/scale scale to=4")
		}, workflows.VerdictUnresolved},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := freshWorkload()
			env, _ := newEnv(t, nil, "kubernetes.get", "kubernetes.scale")
			env.OnActivity(step.ActivityName("kubernetes.get"), mock.Anything, mock.Anything).Return(func(context.Context, step.Request) (step.Result, error) {
				return step.Result{Output: w.get()}, nil
			}).Maybe()
			env.OnActivity(step.ActivityName("kubernetes.scale"), mock.Anything, mock.Anything).Return(func(_ context.Context, req step.Request) (step.Result, error) {
				require.True(t, req.DryRun)
				return step.Result{Output: map[string]any{"dryRun": true}}, nil
			}).Maybe()
			env.RegisterDelayedCallback(func() { tt.change(w) }, 5*time.Minute)
			st, err := run(t, env, workflows.Input{Runbook: parseRunbook(t, scaleRunbook), IncidentKey: "shop/web", Alert: firing()})
			require.NoError(t, err)
			require.Equal(t, tt.wantVerdict, st.Evidence.Verdict, st.Evidence.Summary)
		})
	}
}

func freshWorkload() *workload {
	return &workload{out: map[string]any{"replicas": float64(2), "generation": float64(3), "revision": float64(3), "images": []any{"web:1"}, "restartedAt": ""}}
}

// A person cancels the shadow run during its watch (say, while they fix
// the incident by hand): what it saw is still recorded, the run ends
// cancelled, and no onFailure step runs — nothing acted.
func TestShadowRunCancelledDuringTheWatch(t *testing.T) {
	w := freshWorkload()
	env, rec := shadowEnv(t, w)
	env.RegisterDelayedCallback(func() { w.set("restartedAt", "2026-11-24T09:04:00Z") }, 4*time.Minute)
	env.RegisterDelayedCallback(env.CancelWorkflow, 6*time.Minute)
	st, err := run(t, env, workflows.Input{Runbook: parseRunbook(t, shadowRunbook), IncidentKey: "shop/web", Alert: firing()})
	var cancelled *temporal.CanceledError
	require.ErrorAs(t, err, &cancelled)
	require.Equal(t, workflows.RunStateCancelled, st.State)
	require.NotNil(t, st.Evidence)
	require.True(t, st.Evidence.Cancelled)
	require.Equal(t, workflows.VerdictAgreed, st.Evidence.Verdict, "the restart seen before the cancel counts")
	require.Contains(t, st.Evidence.Summary, "Cancelled during the watch.")
	require.Empty(t, st.OnFailure, "a shadow run compensates nothing")
	require.NotContains(t, rec.steps(), "undo")
	require.Contains(t, rec.steps(), "restart#after")
	require.Equal(t, workflows.VerdictAgreed, rec.audit(t, domain.ActionShadowEvidence).Outcome)
}

// Where a real run would have stopped, a shadow run stops planning: a
// failed read-only step before the action, or the alert's resolution
// under onResolved: finish.
func TestShadowRunStopsWhereARealRunWould(t *testing.T) {
	t.Run("a step fails before the action", func(t *testing.T) {
		w := freshWorkload()
		w.failQuery = true
		env, rec := shadowEnv(t, w)
		rb := strings.Replace(shadowRunbook, "    - {name: verify, action: prometheus.query, with: {query: 'up{job=\"web\"}'}}\n", "", 1)
		rb = strings.Replace(rb, "  steps:\n", "  steps:\n    - {name: precheck, action: prometheus.query, with: {query: 'up{job=\"web\"} == 0'}}\n", 1)
		st, err := run(t, env, workflows.Input{Runbook: parseRunbook(t, rb), IncidentKey: "shop/web", Alert: firing()})
		require.NoError(t, err)
		require.Equal(t, workflows.VerdictWouldNotAct, st.Evidence.Verdict)
		require.Contains(t, st.Evidence.Stopped, `step "precheck"`)
		require.Empty(t, st.Evidence.Planned)
		require.Equal(t, []string{"precheck"}, rec.steps(), "nothing after the failed step, no onFailure")
	})
	t.Run("the alert resolves before the action (onResolved: finish)", func(t *testing.T) {
		env, rec := shadowEnv(t, freshWorkload())
		rb := strings.Replace(shadowRunbook, "  steps:\n", "  steps:\n    - {name: settle, action: sleep, with: {duration: 5m}}\n", 1)
		rb = strings.Replace(rb, "    incidentKey:", "    onResolved: finish\n    incidentKey:", 1)
		alert := firing()
		env.RegisterDelayedCallback(func() {
			env.SignalWorkflow(workflows.SignalAlert, resolvedOf(alert, t0.Add(2*time.Minute)))
		}, 2*time.Minute)
		st, err := run(t, env, workflows.Input{Runbook: parseRunbook(t, rb), IncidentKey: "shop/web", Alert: alert})
		require.NoError(t, err)
		require.Equal(t, workflows.VerdictWouldNotAct, st.Evidence.Verdict, st.Evidence.Summary)
		require.Contains(t, st.Evidence.Stopped, "onResolved: finish")
		require.True(t, st.Evidence.Resolved)
		require.NotContains(t, rec.steps(), "restart")
	})
}
