// Package workers registers Salve's workflow and activities on a Temporal
// worker.
package workers

import (
	"fmt"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/salve-sre/salve/activities"
	"github.com/salve-sre/salve/activities/step"
	"github.com/salve-sre/salve/workflows"
)

// Register puts the Runbook workflow, the audit activity and one activity
// per registered step kind on r.
func Register(r worker.Registry, reg *step.Registry, acts *activities.Activities) error {
	r.RegisterWorkflowWithOptions(workflows.Runbook, workflow.RegisterOptions{Name: workflows.WorkflowName})
	r.RegisterActivityWithOptions(acts.Audit, activity.RegisterOptions{Name: workflows.AuditActivity})
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
func New(c client.Client, taskQueue string, reg *step.Registry, acts *activities.Activities) (worker.Worker, error) {
	w := worker.New(c, taskQueue, worker.Options{})
	if err := Register(w, reg, acts); err != nil {
		return nil, err
	}
	return w, nil
}
