package tracing

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/codes"
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

// No error text leaves the process: a span's status description and an
// exception's message are dropped on export, the error's type kept.
func TestExportDropsErrorTexts(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	t.Cleanup(Use(sdktrace.NewTracerProvider(sdktrace.WithSyncer(scrubbed{exp}))))
	_, span := Tracer().Start(context.Background(), "RunActivity:step.http.request")
	span.RecordError(errors.New(`POST https://hooks.example.com/services/T0/B0/secret: 404`))
	span.SetStatus(codes.Error, "POST https://hooks.example.com/services/T0/B0/secret: 404")
	span.AddEvent("suppressed")
	span.End()
	_, ok := Tracer().Start(context.Background(), "fine")
	ok.End()

	spans := exp.GetSpans()
	require.Len(t, spans, 2)
	got := spans[0]
	require.Equal(t, codes.Error, got.Status.Code)
	require.Empty(t, got.Status.Description)
	require.Len(t, got.Events, 2)
	require.Equal(t, "exception", got.Events[0].Name)
	require.Len(t, got.Events[0].Attributes, 1)
	require.Equal(t, "exception.type", string(got.Events[0].Attributes[0].Key))
	require.Equal(t, "suppressed", got.Events[1].Name)
	require.Equal(t, "fine", spans[1].Name)

	// Fail records the type only.
	_, span = Tracer().Start(context.Background(), "publish")
	Fail(span, errors.New("alert secret-in-text"))
	span.End()
	last := exp.GetSpans()[2]
	for _, a := range last.Attributes {
		require.NotContains(t, a.Value.Emit(), "secret-in-text")
	}
	require.Equal(t, codes.Error, last.Status.Code)
}

func TestHandlerNamesTheRouteNotThePath(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/runs/{id...}", func(w http.ResponseWriter, r *http.Request) {
		require.True(t, trace.SpanContextFromContext(r.Context()).IsValid(), "the handler runs in the span")
		w.(http.Flusher).Flush() // event streams flush through the wrapper
		w.WriteHeader(http.StatusTeapot)
	})
	require.Same(t, http.Handler(mux), Handler(mux, false), "off: the handler itself")
	exp := record(t)
	remote := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for _, link := range []bool{false, true} {
		exp.Reset()
		srv := httptest.NewServer(Handler(mux, link))
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v1/runs/salve/restart/shop%2Fsecret-incident?token=abc", nil)
		req.Header.Set("traceparent", remote)
		req.Header.Set("tracestate", "evil=1")
		req.Header.Set("User-Agent", "attacker-chosen")
		req.Header.Set("X-Forwarded-For", "attacker-chosen")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		_, _ = http.Get(srv.URL + "/healthz")
		srv.Close()

		spans := exp.GetSpans()
		require.Len(t, spans, 1, "probes are not traced")
		s := spans[0]
		require.Equal(t, "GET /v1/runs/{id...}", s.Name)
		require.Equal(t, trace.SpanKindServer, s.SpanKind)
		for _, a := range s.Attributes {
			for _, bad := range []string{"secret-incident", "token", "attacker-chosen"} {
				require.NotContains(t, a.Value.Emit(), bad)
			}
		}
		require.Empty(t, s.SpanContext.TraceState().String(), "a caller's tracestate is not carried on")
		if link {
			require.NotEqual(t, "4bf92f3577b34da6a3ce929d0e0e4736", s.SpanContext.TraceID().String(), "link: a trace of Salve's own")
			require.False(t, s.Parent.IsValid())
			require.Len(t, s.Links, 1)
			require.Equal(t, "00f067aa0ba902b7", s.Links[0].SpanContext.SpanID().String())
		} else {
			require.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", s.SpanContext.TraceID().String(), "continue: the caller's trace")
			require.Equal(t, "00f067aa0ba902b7", s.Parent.SpanID().String())
		}
	}
}
