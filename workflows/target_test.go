package workflows_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/activities/step"
	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/workflows"
)

const targetRunbook = `apiVersion: salve/v1
kind: Runbook
metadata: {name: restart-web}
spec:
  trigger: {matchers: ['alertname="WebDown"'], onResolved: finish}
  safety: {target: 'prod/{{ .Labels.namespace }}'}
  steps:
    - {name: act, action: http.request, with: {url: "http://x/act"}}
`

// A run admitted while another run held its target polls for it with a
// durable timer, acts only once it holds it, and audits the wait.
func TestRunbookWaitsForItsTarget(t *testing.T) {
	env, rec := newEnv(t, nil)
	var mu sync.Mutex
	var asks []time.Time
	env.OnActivity(step.TargetActivity, mock.Anything, mock.Anything).Return(
		func(ctx context.Context, req step.TargetRequest) (step.TargetResult, error) {
			mu.Lock()
			defer mu.Unlock()
			require.Equal(t, step.TargetRequest{Target: "prod/shop", Runbook: "restart-web", WorkflowID: testWorkflowID}, req)
			now := env.Now()
			asks = append(asks, now)
			if now.Before(t0.Add(20 * time.Second)) {
				return step.TargetResult{HolderWorkflowID: "salve/other/shop", HolderRunbook: "other", HolderSince: t0}, nil
			}
			return step.TargetResult{Acquired: true}, nil
		})
	var waiting string
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(workflows.QueryStatus)
		require.NoError(t, err)
		var st workflows.Status
		require.NoError(t, v.Get(&st))
		waiting = st.WaitingFor
		require.Empty(t, rec.steps(), "nothing acts while the target is held")
	}, 5*time.Second)
	st, err := run(t, env, workflows.Input{Runbook: parseRunbook(t, targetRunbook), IncidentKey: "k", Alert: firing(),
		Target: "prod/shop", TargetWait: time.Minute})
	require.NoError(t, err)
	require.Equal(t, workflows.RunStateSucceeded, st.State)
	require.Contains(t, waiting, `target "prod/shop", held by run salve/other/shop (runbook other)`)
	require.Empty(t, st.WaitingFor)
	require.Equal(t, []string{"act"}, rec.steps())
	// Polls at 0, 2, 6, 14 and 29 s (a doubling delay up to 15 s).
	require.Len(t, asks, 5)
	require.Equal(t, "salve/other/shop", rec.audit(t, domain.ActionTargetWaiting).Detail["holder"])
	require.Equal(t, "prod/shop", rec.audit(t, domain.ActionTargetAcquired).Detail["target"])
}

func TestRunbookTargetWaitIsBounded(t *testing.T) {
	env, rec := newEnv(t, nil)
	env.OnActivity(step.TargetActivity, mock.Anything, mock.Anything).Return(
		step.TargetResult{HolderWorkflowID: "salve/other/shop", HolderRunbook: "other", HolderSince: t0}, nil)
	st, err := run(t, env, workflows.Input{Runbook: parseRunbook(t, targetRunbook), IncidentKey: "k", Alert: firing(),
		Target: "prod/shop", TargetWait: time.Minute})
	require.Error(t, err)
	require.Equal(t, workflows.RunStateFailed, st.State)
	require.Contains(t, st.Error, `target "prod/shop" stayed held by run salve/other/shop (runbook other) for longer than the 1m0s this run may wait: nothing was done`)
	require.Empty(t, rec.steps())
	require.Equal(t, workflows.RunStateFailed, rec.audit(t, domain.ActionRunFinished).Outcome)
}

func TestRunbookTargetWaitEndsWhenTheAlertResolves(t *testing.T) {
	env, rec := newEnv(t, nil)
	env.OnActivity(step.TargetActivity, mock.Anything, mock.Anything).Return(
		step.TargetResult{HolderWorkflowID: "salve/other/shop", HolderRunbook: "other", HolderSince: t0}, nil)
	alert := firing()
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(workflows.SignalAlert, resolvedOf(alert, t0.Add(10*time.Second)))
	}, 10*time.Second)
	st, err := run(t, env, workflows.Input{Runbook: parseRunbook(t, targetRunbook), IncidentKey: "k", Alert: alert,
		Target: "prod/shop", TargetWait: time.Hour})
	require.NoError(t, err)
	require.Equal(t, workflows.RunStateSucceeded, st.State)
	require.Empty(t, rec.steps(), "the alert resolved before the target was free: nothing acted")
	require.Equal(t, workflows.StepStateSkipped, st.Steps[0].State)
}
