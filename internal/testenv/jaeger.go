package testenv

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const (
	jaegerVersion = "v1.75.0"
	jaegerInstall = "run scripts/jaeger-tools.sh, which builds it"
)

// Jaeger is a real Jaeger server (v2, all in one process, in-memory
// storage) on loopback: OTLP receivers for the code under test to export
// to, and the query API the test reads traces from.
type Jaeger struct {
	// OTLPHTTP and OTLPGRPC are the receivers' endpoints, host:port.
	OTLPHTTP, OTLPGRPC string
	// QueryURL is the base URL of the query API (GET /api/traces).
	QueryURL string
}

// jaegerConfig is the collector configuration: OTLP in, memory storage,
// the query API, and a health check — every port a free loopback one
// (Jaeger's defaults are fixed ports).
const jaegerConfig = `service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics: {level: none}
    traces: {level: none}
    logs: {level: warn}
extensions:
  healthcheckv2:
    use_v2: true
    http: {endpoint: "127.0.0.1:%d"}
  jaeger_query:
    storage: {traces: mem}
    http: {endpoint: "127.0.0.1:%d"}
    grpc: {endpoint: "127.0.0.1:%d"}
  jaeger_storage:
    backends:
      mem:
        memory: {max_traces: 100000}
receivers:
  otlp:
    protocols:
      grpc: {endpoint: "127.0.0.1:%d"}
      http: {endpoint: "127.0.0.1:%d"}
processors:
  batch: {timeout: 100ms}
exporters:
  jaeger_storage_exporter: {trace_storage: mem}
`

// StartJaeger runs Jaeger (scripts/jaeger-tools.sh builds it;
// SALVE_JAEGER_BIN overrides the path), waits until it is healthy, and
// stops it when the test ends, showing its log if the test failed.
func StartJaeger(t testing.TB) *Jaeger {
	t.Helper()
	bin := cachedTool(t, "SALVE_JAEGER_BIN", "jaeger-"+jaegerVersion, jaegerInstall)
	health, query, queryGRPC, grpcPort, httpPort := FreePort(t), FreePort(t), FreePort(t), FreePort(t), FreePort(t)
	cfg := filepath.Join(t.TempDir(), "jaeger.yaml")
	require.NoError(t, os.WriteFile(cfg, fmt.Appendf(nil, jaegerConfig, health, query, queryGRPC, grpcPort, httpPort), 0o600))
	j := &Jaeger{
		OTLPHTTP: fmt.Sprintf("127.0.0.1:%d", httpPort), OTLPGRPC: fmt.Sprintf("127.0.0.1:%d", grpcPort),
		QueryURL: fmt.Sprintf("http://127.0.0.1:%d", query),
	}
	runServer(t, "jaeger", exec.Command(bin, "--config", "file:"+cfg), fmt.Sprintf("http://127.0.0.1:%d/status", health), 60*time.Second)
	return j
}

// JaegerSpan is a span as Jaeger's query API returns it (the fields
// tests read).
type JaegerSpan struct {
	TraceID       string `json:"traceID"`
	SpanID        string `json:"spanID"`
	OperationName string `json:"operationName"`
	References    []struct {
		RefType string `json:"refType"`
		TraceID string `json:"traceID"`
		SpanID  string `json:"spanID"`
	} `json:"references"`
	Tags      []JaegerTag `json:"tags"`
	ProcessID string      `json:"processID"`
	// Logs are the span's events.
	Logs []struct {
		Fields []JaegerTag `json:"fields"`
	} `json:"logs"`
}

// JaegerTag is one attribute of a span, event or process.
type JaegerTag struct {
	Key   string `json:"key"`
	Value any    `json:"value"`
}

// Tag returns the value of the span's attribute key, as text.
func (s JaegerSpan) Tag(key string) (string, bool) {
	for _, t := range s.Tags {
		if t.Key == key {
			return fmt.Sprint(t.Value), true
		}
	}
	return "", false
}

// Parent is the span's parent span ID ("" for a root).
func (s JaegerSpan) Parent() string {
	for _, r := range s.References {
		if r.RefType == "CHILD_OF" {
			return r.SpanID
		}
	}
	return ""
}

// JaegerTrace is one trace from the query API.
type JaegerTrace struct {
	TraceID   string       `json:"traceID"`
	Spans     []JaegerSpan `json:"spans"`
	Processes map[string]struct {
		ServiceName string      `json:"serviceName"`
		Tags        []JaegerTag `json:"tags"`
	} `json:"processes"`
}

// Trace returns one trace by its ID (hex); an error while Jaeger does not
// hold it.
func (j *Jaeger) Trace(id string) (JaegerTrace, error) {
	resp, err := http.Get(j.QueryURL + "/api/traces/" + url.PathEscape(id))
	if err != nil {
		return JaegerTrace{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return JaegerTrace{}, fmt.Errorf("jaeger query: %s", resp.Status)
	}
	var body struct {
		Data []JaegerTrace `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return JaegerTrace{}, fmt.Errorf("jaeger query: %w", err)
	}
	if len(body.Data) != 1 {
		return JaegerTrace{}, fmt.Errorf("jaeger query: %d traces for ID %s", len(body.Data), id)
	}
	return body.Data[0], nil
}

// Traces returns the traces Jaeger holds for service (an error while it
// cannot answer).
func (j *Jaeger) Traces(service string) ([]JaegerTrace, error) {
	resp, err := http.Get(j.QueryURL + "/api/traces?limit=1000&service=" + url.QueryEscape(service))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("jaeger query: %s", resp.Status)
	}
	var body struct {
		Data []JaegerTrace `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("jaeger query: %w", err)
	}
	return body.Data, nil
}
