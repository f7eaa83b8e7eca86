package tracing

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
)

// Salve's own attributes. Values come from runbooks and from alert labels
// Salve already uses for matching; never from annotations.
const (
	AttrRunbook     = attribute.Key("salve.runbook")
	AttrRunbookHash = attribute.Key("salve.runbook.hash")
	AttrIncidentKey = attribute.Key("salve.incident_key")
	AttrWorkflowID  = attribute.Key("salve.workflow_id")
	AttrAlertID     = attribute.Key("salve.alert.id")
	AttrAlertname   = attribute.Key("salve.alertname")
	AttrAlertStatus = attribute.Key("salve.alert.status")
	AttrDecision    = attribute.Key("salve.decision")
	AttrStep        = attribute.Key("salve.step")
	AttrStepKind    = attribute.Key("salve.step.kind")
	AttrMode        = attribute.Key("salve.mode")
	AttrCheck       = attribute.Key("salve.safety.check")
)

// messaging is NATS JetStream in the messaging conventions.
var messagingNATS = semconv.MessagingSystemKey.String("nats")

// StartPublish starts the producer span of a publish of n messages to a
// JetStream subject.
func StartPublish(ctx context.Context, subject string, n int) (context.Context, trace.Span) {
	return Tracer().Start(ctx, "send "+subject, trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(
		messagingNATS, semconv.MessagingOperationTypeSend, semconv.MessagingOperationName("publish"),
		semconv.MessagingDestinationName(subject), semconv.MessagingBatchMessageCount(n)))
}

// StartProcess starts the consumer span of handling one message from a
// JetStream subject, as a child of the span its headers carry (the
// publish), or as a root when they carry none.
func StartProcess(ctx context.Context, subject, consumer string, header map[string][]string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	parent := Extract(ctx, header)
	attrs = append(attrs, messagingNATS, semconv.MessagingOperationTypeProcess, semconv.MessagingOperationName("process"),
		semconv.MessagingDestinationName(subject), semconv.MessagingConsumerGroupName(consumer))
	return Tracer().Start(parent, "process "+subject, trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attrs...))
}

// PipelineRun names a run in the CI/CD conventions: a runbook is a
// pipeline, a run one run of it.
func PipelineRun(runbook, workflowID, runID string) []attribute.KeyValue {
	return []attribute.KeyValue{
		semconv.CICDPipelineName(runbook),
		semconv.CICDPipelineRunID(workflowID + "/" + runID),
		AttrRunbook.String(runbook),
		AttrWorkflowID.String(workflowID),
	}
}

// PipelineTask names a step in the CI/CD conventions: a task of the run.
func PipelineTask(step, kind, idempotencyKey string) []attribute.KeyValue {
	return []attribute.KeyValue{
		semconv.CICDPipelineTaskName(step),
		semconv.CICDPipelineTaskRunID(idempotencyKey),
		AttrStep.String(step),
		AttrStepKind.String(kind),
	}
}
