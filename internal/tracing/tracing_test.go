package tracing

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

func TestFromEnv(t *testing.T) {
	for _, tc := range []struct {
		name    string
		env     map[string]string
		on      bool
		proto   string
		wantErr string
	}{
		{name: "nothing set: off", env: nil},
		{name: "an endpoint turns it on, OTLP/HTTP by default", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, on: true, proto: "http/protobuf"},
		{name: "a traces endpoint too", env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, on: true, proto: "http/protobuf"},
		{name: "exporter otlp alone (SDK default endpoint)", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, on: true, proto: "http/protobuf"},
		{name: "grpc", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, on: true, proto: "grpc"},
		{name: "traces protocol wins", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"}, on: true, proto: "grpc"},
		{name: "exporter none keeps it off", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}},
		{name: "SDK disabled keeps it off", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "TRUE"}},
		{name: "another exporter is refused", env: map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, wantErr: "OTLP only"},
		{name: "http/json is refused", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, wantErr: "want grpc or http/protobuf"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := FromEnv(func(k string) string { return tc.env[k] })
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.on, s.Enabled, s.Why)
			require.Equal(t, tc.proto, s.Protocol)
			require.NotEmpty(t, s.Why)
		})
	}
}

func TestLinks(t *testing.T) {
	require.NoError(t, CheckLinkTemplate(""))
	require.NoError(t, CheckLinkTemplate("http://jaeger:16686/trace/{traceId}"))
	require.NoError(t, CheckLinkTemplate("https://grafana.example/explore?left=%7B%22queries%22:%5B%7B%22query%22:%22{traceId}%22%7D%5D%7D"))
	require.ErrorContains(t, CheckLinkTemplate("http://jaeger:16686/trace/"), "no {traceId}")
	require.ErrorContains(t, CheckLinkTemplate("javascript:alert({traceId})"), "not an http")
	require.ErrorContains(t, CheckLinkTemplate("/trace/{traceId}"), "not an http")

	id := "4bf92f3577b34da6a3ce929d0e0e4736"
	require.Equal(t, "http://j/trace/"+id, Link("http://j/trace/{traceId}", id))
	require.Empty(t, Link("", id))
	require.Empty(t, Link("http://j/trace/{traceId}", ""))
	require.Empty(t, Link("http://j/trace/{traceId}", "../../admin"), "only a trace ID goes into a link")
	require.Empty(t, Link("http://j/trace/{traceId}", "00000000000000000000000000000000"))
}

// record turns tracing on for one test with an in-memory exporter.
func record(t *testing.T) *tracetest.InMemoryExporter {
	exp := tracetest.NewInMemoryExporter()
	t.Cleanup(Use(sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))))
	return exp
}

func TestTransportNamesTheHostNeverThePath(t *testing.T) {
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Get("traceparent")
		w.WriteHeader(http.StatusTeapot)
	}))
	defer srv.Close()

	// Off: nothing is recorded and nothing is sent.
	c := &http.Client{Transport: Transport(nil)}
	resp, err := c.Get(srv.URL + "/services/T000/B000/secret-token?q=alert-value")
	require.NoError(t, err)
	resp.Body.Close()
	require.Empty(t, got)

	exp := record(t)
	ctx, parent := Tracer().Start(context.Background(), "step")
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/services/T000/B000/secret-token?q=alert-value", nil)
	resp, err = c.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	parent.End()

	spans := exp.GetSpans()
	require.Len(t, spans, 2)
	call := spans[0]
	require.Equal(t, "POST", call.Name)
	require.Equal(t, trace.SpanKindClient, call.SpanKind)
	require.Equal(t, parent.SpanContext().SpanID(), call.Parent.SpanID())
	require.Equal(t, "00-"+call.SpanContext.TraceID().String()+"-"+call.SpanContext.SpanID().String()+"-01", got, "the callee gets the trace")
	attrs := map[string]string{}
	for _, a := range call.Attributes {
		attrs[string(a.Key)] = a.Value.Emit()
		require.NotContains(t, a.Value.Emit(), "secret-token")
		require.NotContains(t, a.Value.Emit(), "alert-value")
	}
	require.Equal(t, "127.0.0.1", attrs["server.address"])
	require.Equal(t, "418", attrs["http.response.status_code"])
	require.Equal(t, "418", attrs["error.type"])

	// A failed call names the kind of error, not its text (which holds the URL).
	srv.Close()
	req, _ = http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/secret-token", nil)
	_, err = c.Do(req)
	require.Error(t, err)
	last := exp.GetSpans()[len(exp.GetSpans())-1]
	for _, a := range last.Attributes {
		require.NotContains(t, a.Value.Emit(), "secret-token")
	}
	require.Equal(t, "connection_refused", last.Status.Description)
}

func TestHeadersCarryTheTrace(t *testing.T) {
	h := map[string][]string{}
	Inject(context.Background(), h)
	require.Empty(t, h, "off: nothing is written")

	record(t)
	ctx, span := Tracer().Start(context.Background(), "publish")
	defer span.End()
	Inject(ctx, h)
	require.Len(t, h, 1)
	got := trace.SpanContextFromContext(Extract(context.Background(), h))
	require.Equal(t, span.SpanContext().TraceID(), got.TraceID())
	require.Equal(t, span.SpanContext().SpanID(), got.SpanID())
	require.True(t, got.IsRemote())

	tp := Traceparent(ctx)
	require.Equal(t, span.SpanContext().SpanID(), SpanContextOf(tp).SpanID())
	require.False(t, SpanContextOf("garbage").IsValid())
	require.Equal(t, span.SpanContext().TraceID().String(), TraceID(ctx))
	require.Empty(t, TraceID(context.Background()))

	// Baggage a sender put in is not carried on.
	in := map[string][]string{"Traceparent": {tp}, "Baggage": {"user=mallory"}}
	out := map[string][]string{}
	Inject(Extract(context.Background(), in), out)
	require.NotContains(t, out, "Baggage")
}

func TestLogsCarryTraceIDs(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(LogHandler(slog.NewTextHandler(&buf, nil))).With("component", "trigger")
	log.InfoContext(context.Background(), "no span")
	require.NotContains(t, buf.String(), "trace_id")

	record(t)
	ctx, span := Tracer().Start(context.Background(), "handle")
	defer span.End()
	log.InfoContext(ctx, "with span")
	require.Contains(t, buf.String(), "trace_id="+span.SpanContext().TraceID().String())
	require.Contains(t, buf.String(), "span_id="+span.SpanContext().SpanID().String())
	require.Contains(t, buf.String(), "component=trigger")
}
