package workers

import (
	"go.opentelemetry.io/otel/attribute"
	temporalotel "go.temporal.io/sdk/contrib/opentelemetry"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/workflow"

	"github.com/salve-sre/salve/internal/tracing"
	"github.com/salve-sre/salve/workflows"
)

// runSpan names the run on the RunWorkflow span of Temporal's tracing
// interceptor (which runs before it): the runbook, the incident and how
// the run acts, in Salve's attributes and the CI/CD conventions.
type runSpan struct {
	interceptor.WorkerInterceptorBase
}

func (*runSpan) InterceptWorkflow(_ workflow.Context, next interceptor.WorkflowInboundInterceptor) interceptor.WorkflowInboundInterceptor {
	return &runSpanInbound{WorkflowInboundInterceptorBase: interceptor.WorkflowInboundInterceptorBase{Next: next}}
}

type runSpanInbound struct {
	interceptor.WorkflowInboundInterceptorBase
}

func (i *runSpanInbound) ExecuteWorkflow(ctx workflow.Context, in *interceptor.ExecuteWorkflowInput) (any, error) {
	span, ok := temporalotel.SpanFromWorkflowContext(ctx)
	var input *workflows.Input
	if len(in.Args) > 0 {
		switch v := in.Args[0].(type) {
		case workflows.Input:
			input = &v
		case *workflows.Input:
			input = v
		}
	}
	if ok && input != nil {
		info := workflow.GetInfo(ctx)
		// One spelling with the steps' salve.mode: enforce, shadow, dry_run.
		mode := "enforce"
		switch {
		case input.Runbook.Spec.Safety.Shadow():
			mode = "shadow"
		case input.DryRun || input.Runbook.Spec.Safety.DryRun():
			mode = "dry_run"
		}
		span.SetAttributes(tracing.PipelineRun(input.Runbook.Name(), info.WorkflowExecution.ID, info.WorkflowExecution.RunID)...)
		span.SetAttributes(tracing.AttrIncidentKey.String(input.IncidentKey), tracing.AttrRunbookHash.String(input.Runbook.Hash),
			tracing.AttrMode.String(mode), attribute.String("salve.actor", string(input.Actor.Kind)))
	}
	return i.Next.ExecuteWorkflow(ctx, in)
}
