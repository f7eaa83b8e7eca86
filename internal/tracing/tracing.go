// Package tracing is Salve's OpenTelemetry tracing: it starts the SDK
// from the standard OTEL_* environment variables (off unless they ask for
// an exporter), and holds the few helpers every layer shares — the
// tracer, context propagation through HTTP and NATS headers, the HTTP
// client and server spans, and trace IDs in logs.
//
// Off, nothing here costs more than a context lookup: the global tracer
// provider is OpenTelemetry's no-op one, and the wrappers hand back what
// they were given.
//
// Alert contents are untrusted: nothing here records an annotation, a
// URL path or query, or a header value. A span's attributes name the
// runbook, step, incident key and the hosts Salve talks to.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Name is the instrumentation scope of Salve's own spans.
const Name = "github.com/salve-sre/salve"

// Propagator carries trace context between processes: W3C trace context
// only. Baggage is not propagated: a webhook sender's baggage would
// travel on to every host a step calls.
var Propagator propagation.TextMapPropagator = propagation.TraceContext{}

var enabled atomic.Bool

// Enabled reports whether Start turned tracing on in this process.
func Enabled() bool { return enabled.Load() }

// Tracer is the tracer Salve's own spans come from: the global
// provider's, a no-op one unless Start turned tracing on.
func Tracer() trace.Tracer { return otel.Tracer(Name) }

// Settings is what the environment asks for.
type Settings struct {
	Enabled  bool
	Protocol string // "grpc" or "http/protobuf"
	// Why says what turned tracing on or kept it off, for the log.
	Why string
}

// FromEnv reads the standard variables that decide whether and how
// traces are exported. Tracing is on when OTEL_TRACES_EXPORTER is otlp or
// an OTLP endpoint is set; OTEL_SDK_DISABLED=true or
// OTEL_TRACES_EXPORTER=none keep it off. The exporter and the SDK read
// the rest themselves (endpoint, headers, timeout, sampler, batching,
// resource attributes, service name).
func FromEnv(getenv func(string) string) (Settings, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	if v := strings.TrimSpace(getenv("OTEL_SDK_DISABLED")); strings.EqualFold(v, "true") {
		return Settings{Why: "OTEL_SDK_DISABLED=true"}, nil
	}
	exp := strings.ToLower(strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")))
	switch exp {
	case "none":
		return Settings{Why: "OTEL_TRACES_EXPORTER=none"}, nil
	case "", "otlp":
	default:
		return Settings{}, fmt.Errorf("OTEL_TRACES_EXPORTER=%q: Salve exports traces over OTLP only; set otlp (with OTEL_EXPORTER_OTLP_ENDPOINT) or none", exp)
	}
	endpoint := cmpOr(getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), getenv("OTEL_EXPORTER_OTLP_ENDPOINT"))
	if exp == "" && endpoint == "" {
		return Settings{Why: "no OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_TRACES_EXPORTER=otlp"}, nil
	}
	proto := strings.ToLower(strings.TrimSpace(cmpOr(getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"), getenv("OTEL_EXPORTER_OTLP_PROTOCOL"))))
	switch proto {
	case "":
		proto = "http/protobuf" // the specification's default
	case "grpc", "http/protobuf":
	default:
		return Settings{}, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL=%q: want grpc or http/protobuf", proto)
	}
	why := "OTEL_TRACES_EXPORTER=otlp"
	if endpoint != "" {
		why = "OTLP endpoint " + endpoint
	}
	return Settings{Enabled: true, Protocol: proto, Why: why}, nil
}

// Off is a getenv under which tracing stays off whatever the process's
// environment says: the "off" half of an on/off comparison.
func Off(string) string { return "" }

// Process describes the process in every span's resource.
type Process struct {
	Version string // Salve's version
	Role    string // e.g. "dev", "api+ingest", "worker"
}

// Start turns tracing on as s says and returns the function that flushes
// and stops it; with tracing off it does nothing and returns a no-op.
func Start(ctx context.Context, s Settings, p Process) (shutdown func(context.Context) error, err error) {
	nop := func(context.Context) error { return nil }
	if !s.Enabled {
		return nop, nil
	}
	var exp sdktrace.SpanExporter
	if s.Protocol == "grpc" {
		exp, err = otlptracegrpc.New(ctx)
	} else {
		exp, err = otlptracehttp.New(ctx)
	}
	if err != nil {
		return nop, fmt.Errorf("OTLP trace exporter: %w", err)
	}
	host, _ := os.Hostname()
	// Salve's own attributes first: OTEL_SERVICE_NAME and
	// OTEL_RESOURCE_ATTRIBUTES override them.
	res, err := resource.New(ctx,
		resource.WithAttributes(
			semconv.ServiceName("salve"),
			semconv.ServiceVersion(p.Version),
			semconv.ServiceInstanceID(host+"/"+strconv.Itoa(os.Getpid())),
			attribute.String("salve.role", p.Role),
		),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(),
	)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nop, fmt.Errorf("trace resource (check OTEL_RESOURCE_ATTRIBUTES): %w", err)
	}
	// The sampler and the batch processor read OTEL_TRACES_SAMPLER(_ARG)
	// and OTEL_BSP_* themselves; the default samples every trace a
	// sender's traceparent does not mark unsampled.
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(scrubbed{exp}), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(Propagator)
	enabled.Store(true)
	return func(ctx context.Context) error {
		enabled.Store(false)
		otel.SetTracerProvider(noop.NewTracerProvider())
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return tp.Shutdown(ctx)
	}, nil
}

// Use makes tp the provider Salve's spans come from and turns tracing on,
// until the returned function puts things back: for tests that read the
// spans (internal/tracing/tracingtest) and for embedding.
func Use(tp trace.TracerProvider) (restore func()) {
	prev, was := otel.GetTracerProvider(), enabled.Load()
	otel.SetTracerProvider(tp)
	enabled.Store(true)
	return func() {
		enabled.Store(was)
		otel.SetTracerProvider(prev)
	}
}

// Inject writes ctx's span into h (an HTTP or NATS header).
func Inject(ctx context.Context, h map[string][]string) {
	if !Enabled() {
		return
	}
	Propagator.Inject(ctx, propagation.HeaderCarrier(h))
}

// Extract returns ctx with the remote span h carries, if any.
func Extract(ctx context.Context, h map[string][]string) context.Context {
	if !Enabled() || len(h) == 0 {
		return ctx
	}
	return Propagator.Extract(ctx, propagation.HeaderCarrier(h))
}

// Traceparent is ctx's span as a W3C traceparent ("" when there is none):
// the form a run keeps its trace in.
func Traceparent(ctx context.Context) string {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ""
	}
	c := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, c)
	return c["traceparent"]
}

// SpanContextOf parses a traceparent written by Traceparent; the zero
// SpanContext when it is not one.
func SpanContextOf(traceparent string) trace.SpanContext {
	if traceparent == "" {
		return trace.SpanContext{}
	}
	ctx := propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier{"traceparent": traceparent})
	return trace.SpanContextFromContext(ctx)
}

// TraceID is ctx's trace ID in hex, "" when ctx has no span.
func TraceID(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return ""
	}
	return sc.TraceID().String()
}

// Fail marks span failed with err (nil: nothing): its Go type, never its
// text, which may hold what an alert or a URL put there.
func Fail(span trace.Span, err error) {
	if err == nil {
		return
	}
	span.SetAttributes(semconv.ErrorTypeKey.String(fmt.Sprintf("%T", err)))
	span.SetStatus(codes.Error, "")
}

func cmpOr(a, b string) string {
	if strings.TrimSpace(a) != "" {
		return strings.TrimSpace(a)
	}
	return strings.TrimSpace(b)
}
