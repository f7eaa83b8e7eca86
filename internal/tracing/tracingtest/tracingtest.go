// Package tracingtest turns tracing on for one test and keeps the spans
// in memory, for tests of what a package records.
package tracingtest

import (
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/salve-sre/salve/internal/tracing"
)

// Record turns tracing on until the test ends; the exporter holds every
// ended span. Tests that use it must not run in parallel with others that
// trace: the provider is the process's.
func Record(t testing.TB) *tracetest.InMemoryExporter {
	exp := tracetest.NewInMemoryExporter()
	t.Cleanup(tracing.Use(sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))))
	return exp
}

// Named returns the ended spans called name, in the order they ended.
func Named(exp *tracetest.InMemoryExporter, name string) []tracetest.SpanStub {
	var out []tracetest.SpanStub
	for _, s := range exp.GetSpans() {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}
