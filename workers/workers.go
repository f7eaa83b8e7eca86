// Package workers registers Salve's workflow and activities on a Temporal
// worker.
package workers

import (
	"context"
	"errors"
	"fmt"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/salve-sre/salve/activities"
	"github.com/salve-sre/salve/activities/step"
	"github.com/salve-sre/salve/internal/tracing"
	"github.com/salve-sre/salve/workflows"
)

// Hook sends a run-level event to the configured notification hooks.
type Hook func(ctx context.Context, ev step.HookEvent) error

// Register puts the Runbook workflow, the audit activity, the notification
// hook activity and one activity per registered step kind on r. A nil hook
// registers one that does nothing: runs call it whether or not any hook is
// configured.
func Register(r worker.Registry, reg *step.Registry, acts *activities.Activities, hook Hook) error {
	r.RegisterWorkflowWithOptions(workflows.Runbook, workflow.RegisterOptions{Name: workflows.WorkflowName})
	r.RegisterActivityWithOptions(acts.Audit, activity.RegisterOptions{Name: workflows.AuditActivity})
	r.RegisterActivityWithOptions(acts.Record, activity.RegisterOptions{Name: workflows.RecordActivity})
	r.RegisterActivityWithOptions(acts.RunFinished, activity.RegisterOptions{Name: workflows.RunFinishedActivity})
	r.RegisterActivityWithOptions(acts.AcquireTarget, activity.RegisterOptions{Name: step.TargetActivity})
	r.RegisterActivityWithOptions(acts.VerifyRunbook, activity.RegisterOptions{Name: workflows.VerifyActivity})
	r.RegisterActivityWithOptions(acts.Prepare, activity.RegisterOptions{Name: workflows.PrepareActivity})
	if hook == nil {
		hook = func(context.Context, step.HookEvent) error { return nil }
	}
	r.RegisterActivityWithOptions(func(ctx context.Context, ev step.HookEvent) error {
		err := hook(ctx, ev)
		if err != nil && errors.Is(err, step.ErrPermanent) {
			// Every target refused for good (e.g. a 404 webhook): a retry
			// would only resend to nobody.
			return temporal.NewNonRetryableApplicationError(err.Error(), "HookPermanent", nil)
		}
		return err
	}, activity.RegisterOptions{Name: step.HookActivity})
	for _, kind := range reg.Kinds() {
		fn, err := acts.Step(kind)
		if err != nil {
			return fmt.Errorf("register step kind %q: %w", kind, err)
		}
		r.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: step.ActivityName(kind)})
	}
	return nil
}

// New builds a worker on taskQueue with everything registered.
func New(c client.Client, taskQueue string, reg *step.Registry, acts *activities.Activities, hook Hook) (worker.Worker, error) {
	var opts worker.Options
	if tracing.Enabled() {
		opts.Interceptors = []interceptor.WorkerInterceptor{&runSpan{}}
	}
	w := worker.New(c, taskQueue, opts)
	if err := Register(w, reg, acts, hook); err != nil {
		return nil, err
	}
	return w, nil
}
