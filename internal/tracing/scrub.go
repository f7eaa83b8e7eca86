package tracing

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
)

// scrubbed exports spans without the text of any error: a span's status
// description and an exception event's message and stack are dropped, its
// type kept. Errors reach spans from libraries Salve does not write —
// Temporal's interceptor records a failed step's error, whose text can
// hold a URL path built from an alert or a webhook's secret path — and
// the one place that strips them is the way out. The text stays in the
// audit log and on the run page, behind Salve's access control.
type scrubbed struct{ sdktrace.SpanExporter }

func (e scrubbed) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	out := make([]sdktrace.ReadOnlySpan, len(spans))
	for i, s := range spans {
		out[i] = scrub(s)
	}
	return e.SpanExporter.ExportSpans(ctx, out)
}

func scrub(s sdktrace.ReadOnlySpan) sdktrace.ReadOnlySpan {
	dirty := s.Status().Description != ""
	for _, ev := range s.Events() {
		dirty = dirty || ev.Name == semconv.ExceptionEventName
	}
	if !dirty {
		return s
	}
	stub := tracetest.SpanStubFromReadOnlySpan(s)
	stub.Status.Description = ""
	for i, ev := range stub.Events {
		if ev.Name != semconv.ExceptionEventName {
			continue
		}
		kept := make([]attribute.KeyValue, 0, 1)
		for _, a := range ev.Attributes {
			if a.Key == semconv.ExceptionTypeKey {
				kept = append(kept, a)
			}
		}
		stub.Events[i].Attributes = kept
	}
	return stub.Snapshot()
}
