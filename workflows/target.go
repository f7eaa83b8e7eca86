package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/salve-sre/salve/activities/step"
	"github.com/salve-sre/salve/internal/domain"
)

// Target lock polling: a durable timer between attempts, growing to the
// maximum, so a long wait costs few history events.
const (
	targetPollFirst = 2 * time.Second
	targetPollMax   = 15 * time.Second
)

// awaitTarget takes the run's target before any step acts. Another run
// held it when this one was admitted; the run polls for it, bounded by
// TargetWait, and stops waiting when its alert resolves (onResolved:
// finish: the steps are then skipped) or the run is cancelled.
func (r *run) awaitTarget(ctx workflow.Context) error {
	deadline := workflow.Now(ctx).Add(r.in.TargetWait)
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 10 * time.Second},
	})
	req := step.TargetRequest{Target: r.in.Target, Runbook: r.in.Runbook.Name(), WorkflowID: r.info.WorkflowExecution.ID}
	delay := targetPollFirst
	for first := true; ; first = false {
		var got step.TargetResult
		if err := workflow.ExecuteActivity(actx, step.TargetActivity, req).Get(ctx, &got); err != nil {
			return fmt.Errorf("take target %q: %w", r.in.Target, err)
		}
		if got.Acquired {
			r.status.WaitingFor = ""
			if !first {
				r.auditWith(ctx, domain.ActionTargetAcquired, "", "acquired", nil, r.in.Actor, map[string]string{"target": r.in.Target})
			}
			return nil
		}
		r.status.WaitingFor = fmt.Sprintf("target %q, held by run %s (runbook %s) since %s", r.in.Target, got.HolderWorkflowID, got.HolderRunbook, got.HolderSince.Format(time.RFC3339))
		if first {
			r.auditWith(ctx, domain.ActionTargetWaiting, "", "waiting", nil, r.in.Actor, map[string]string{
				"target": r.in.Target, "holder": got.HolderWorkflowID, "holderRunbook": got.HolderRunbook, "maxWait": r.in.TargetWait.String(),
			})
		}
		left := deadline.Sub(workflow.Now(ctx))
		if left <= 0 {
			return fmt.Errorf("target %q stayed held by run %s (runbook %s) for longer than the %s this run may wait: nothing was done", r.in.Target, got.HolderWorkflowID, got.HolderRunbook, r.in.TargetWait)
		}
		if _, err := workflow.AwaitWithTimeout(ctx, min(delay, left), func() bool { return r.finish }); err != nil {
			return err // cancelled
		}
		if r.finish {
			// The alert resolved while waiting: the steps are skipped.
			r.status.WaitingFor = ""
			return nil
		}
		delay = min(delay*2, targetPollMax)
	}
}
