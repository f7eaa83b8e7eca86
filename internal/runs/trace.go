package runs

import (
	"context"
	"sync"

	"go.opentelemetry.io/otel/trace"
	commonpb "go.temporal.io/api/common/v1"
	temporalotel "go.temporal.io/sdk/contrib/opentelemetry"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/interceptor"

	"github.com/salve-sre/salve/internal/tracing"
	"github.com/salve-sre/salve/workflows"
)

// Runs are started with the StartWorkflowExecution RPC itself (see
// StartOrJoin), which the SDK's client interceptors never see: the
// trace context is written into the start's header here, in the format
// and under the key of Temporal's OpenTelemetry interceptor, which the
// worker reads it back with.
var headerTracer = sync.OnceValues(func() (interceptor.Tracer, error) {
	return temporalotel.NewTracer(temporalotel.TracerOptions{TextMapPropagator: tracing.Propagator, DisableBaggage: true})
})

// traceStart starts the client span of a run's start and returns the
// header that carries it to the run, and the span as a traceparent for
// the run's memo. With tracing off it returns ctx, a no-op span, nil and "".
func traceStart(ctx context.Context, workflowID, runbook, incidentKey string) (context.Context, trace.Span, *commonpb.Header, string) {
	if !tracing.Enabled() {
		return ctx, trace.SpanFromContext(context.Background()), nil, ""
	}
	ctx, span := tracing.Tracer().Start(ctx, "StartWorkflow:"+workflows.WorkflowName, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(tracing.AttrRunbook.String(runbook), tracing.AttrWorkflowID.String(workflowID), tracing.AttrIncidentKey.String(incidentKey)))
	t, err := headerTracer()
	if err != nil {
		return ctx, span, nil, tracing.Traceparent(ctx)
	}
	data, err := t.MarshalSpan(t.SpanFromContext(ctx))
	if err != nil || len(data) == 0 {
		return ctx, span, nil, tracing.Traceparent(ctx)
	}
	p, err := converter.GetDefaultDataConverter().ToPayload(data)
	if err != nil {
		return ctx, span, nil, tracing.Traceparent(ctx)
	}
	return ctx, span, &commonpb.Header{Fields: map[string]*commonpb.Payload{t.Options().HeaderKey: p}}, tracing.Traceparent(ctx)
}
