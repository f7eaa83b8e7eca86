package tracing

import (
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/salve-sre/salve/internal/httpjson"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
)

// Handler traces the requests h serves as server spans named by their
// route. Probes, metrics scrapes and static files are not traced. Off, it
// returns h.
//
// A caller's traceparent is continued — or, with link, only linked from a
// new trace, so that a caller (whoever holds the webhook token) chooses
// neither the trace ID nor whether it is sampled. A caller's tracestate is
// never carried on. The span records the method, route and status: no
// path (it holds run IDs and incident keys), query, header or client
// address, which any caller, signed in or not, could fill.
func Handler(h http.Handler, link bool) http.Handler {
	if !Enabled() {
		return h
	}
	return handler{next: h, link: link}
}

type handler struct {
	next http.Handler
	link bool
}

func (x handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch p := r.URL.Path; {
	case p == "/healthz", p == "/readyz", p == "/metrics", strings.HasPrefix(p, "/ui/static/"):
		x.next.ServeHTTP(w, r)
		return
	}
	parent := Propagator.Extract(r.Context(), propagation.MapCarrier{"traceparent": r.Header.Get("traceparent")})
	method := r.Method
	if !knownMethods[method] {
		method = "_OTHER"
	}
	opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(
		semconv.HTTPRequestMethodKey.String(method), semconv.URLScheme(scheme(r)))}
	if sc := trace.SpanContextFromContext(parent); x.link && sc.IsValid() {
		opts = append(opts, trace.WithNewRoot(), trace.WithLinks(trace.Link{SpanContext: sc}))
	}
	ctx, span := Tracer().Start(parent, method, opts...)
	defer span.End()
	sw := httpjson.NewStatusRecorder(w)
	r2 := r.WithContext(ctx)
	x.next.ServeHTTP(sw, r2)
	// The mux sets the route on the request it routes (and an inner mux
	// on the same request overwrites the outer's "/").
	if route := r2.Pattern; route != "" && route != "/" {
		if _, path, ok := strings.Cut(route, " "); ok {
			route = path
		}
		span.SetName(method + " " + route)
		span.SetAttributes(semconv.HTTPRoute(route))
	}
	span.SetAttributes(semconv.HTTPResponseStatusCode(sw.Code))
	if sw.Code >= 500 {
		span.SetStatus(codes.Error, "")
	}
}

var knownMethods = map[string]bool{
	http.MethodGet: true, http.MethodHead: true, http.MethodPost: true, http.MethodPut: true, http.MethodPatch: true,
	http.MethodDelete: true, http.MethodConnect: true, http.MethodOptions: true, http.MethodTrace: true,
}

func scheme(r *http.Request) string {
	if r.TLS != nil {
		return "https"
	}
	return "http"
}

// Transport traces the requests next sends as client spans and passes
// the trace on in a traceparent header. While tracing is off its requests
// go straight to next.
//
// It is Salve's own rather than otelhttp's, because otelhttp records the
// full URL: a webhook URL carries its secret in the path (Slack's does),
// and a query rendered from an alert carries the alert's contents. A span
// here names the method, scheme, host and port, and the status.
func Transport(next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return transport{next: next}
}

type transport struct{ next http.RoundTripper }

func (t transport) RoundTrip(r *http.Request) (*http.Response, error) {
	if !Enabled() {
		return t.next.RoundTrip(r)
	}
	host, port := r.URL.Hostname(), r.URL.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[r.URL.Scheme]
	}
	attrs := []attribute.KeyValue{
		semconv.HTTPRequestMethodKey.String(r.Method),
		semconv.ServerAddress(host),
		semconv.URLScheme(r.URL.Scheme),
	}
	if p, err := strconv.Atoi(port); err == nil {
		attrs = append(attrs, semconv.ServerPort(p))
	}
	ctx, span := Tracer().Start(r.Context(), r.Method, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	r = r.Clone(ctx)
	Propagator.Inject(ctx, propagation.HeaderCarrier(r.Header))
	resp, err := t.next.RoundTrip(r)
	if err != nil {
		// The error's text holds the URL; its kind is enough here.
		span.SetAttributes(semconv.ErrorTypeKey.String(errorType(err)))
		span.SetStatus(codes.Error, errorType(err))
		span.End()
		return resp, err
	}
	span.SetAttributes(semconv.HTTPResponseStatusCode(resp.StatusCode))
	if resp.StatusCode >= 400 {
		span.SetAttributes(semconv.ErrorTypeKey.String(strconv.Itoa(resp.StatusCode)))
		span.SetStatus(codes.Error, "")
	}
	span.End()
	return resp, nil
}

// errorType names an error's kind without its text.
func errorType(err error) string {
	var nerr net.Error
	switch {
	case errors.As(err, &nerr) && nerr.Timeout():
		return "timeout"
	case strings.Contains(err.Error(), "context canceled"):
		return "canceled"
	case strings.Contains(err.Error(), "connection refused"):
		return "connection_refused"
	case strings.Contains(err.Error(), "no such host"):
		return "dns"
	case strings.Contains(err.Error(), "tls:"), strings.Contains(err.Error(), "x509:"):
		return "tls"
	}
	return "_OTHER"
}
