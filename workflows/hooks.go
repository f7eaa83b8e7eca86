package workflows

import (
	"slices"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/salve-sre/salve/activities/step"
)

// hook tells the worker's notification hooks about a run-level event. It
// does not wait: a slow or broken chat webhook must never hold up a
// remediation. Run waits for outstanding hooks before it returns.
func (r *run) hook(ctx workflow.Context, event, stepName, errText, actor string) {
	if r.version < versionApprovals || (r.lean && !slices.Contains(r.hookEvents, event)) {
		return
	}
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		// Bounded in total: a blackholed chat webhook delays the run's
		// close by at most this.
		ScheduleToCloseTimeout: 45 * time.Second,
		StartToCloseTimeout:    20 * time.Second,
		RetryPolicy:            &temporal.RetryPolicy{InitialInterval: 2 * time.Second, BackoffCoefficient: 2, MaximumAttempts: 3},
	})
	ev := step.HookEvent{
		Event:       event,
		Time:        workflow.Now(ctx),
		Runbook:     r.in.Runbook.Name(),
		WorkflowID:  r.info.WorkflowExecution.ID,
		RunID:       r.info.WorkflowExecution.RunID,
		IncidentKey: r.in.IncidentKey,
		Step:        stepName,
		State:       r.status.State,
		Error:       errText,
		Actor:       actor,
	}
	r.hooks = append(r.hooks, workflow.ExecuteActivity(actx, step.HookActivity, ev))
}

// waitHooks lets outstanding notifications finish; their failures are
// logged by the worker, never a reason to fail the run.
func (r *run) waitHooks(ctx workflow.Context) {
	for _, f := range r.hooks {
		if err := f.Get(ctx, nil); err != nil {
			workflow.GetLogger(ctx).Warn("notification hook failed", "error", err)
		}
	}
	r.hooks = nil
}
