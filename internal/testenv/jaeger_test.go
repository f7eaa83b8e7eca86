package testenv_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/internal/testenv"
)

// The Jaeger harness the tracing tests stand on: a span sent to its OTLP
// HTTP receiver (raw OTLP JSON, as any exporter sends it) comes back from
// its query API, with its parent.
func TestJaeger(t *testing.T) {
	j := testenv.StartJaeger(t)
	now := time.Now().UnixNano()
	body := fmt.Sprintf(`{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"salve-harness"}}]},
"scopeSpans":[{"spans":[
 {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"webhook","kind":2,"startTimeUnixNano":"%d","endTimeUnixNano":"%d"},
 {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"aaa19b7ec3c1b175","parentSpanId":"eee19b7ec3c1b174","name":"publish","kind":4,"startTimeUnixNano":"%d","endTimeUnixNano":"%d",
  "attributes":[{"key":"salve.runbook","value":{"stringValue":"restart-web"}}]}]}]}]}`, now, now+2e6, now+1e5, now+1e6)
	resp, err := http.Post("http://"+j.OTLPHTTP+"/v1/traces", "application/json", strings.NewReader(body))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	var traces []testenv.JaegerTrace
	require.Eventually(t, func() bool {
		traces, err = j.Traces("salve-harness")
		return err == nil && len(traces) == 1 && len(traces[0].Spans) == 2
	}, 30*time.Second, 100*time.Millisecond, "the trace never showed: %v %+v", err, traces)
	byName := map[string]testenv.JaegerSpan{}
	for _, s := range traces[0].Spans {
		byName[s.OperationName] = s
	}
	require.Equal(t, "5b8efff798038103d269b633813fc60c", traces[0].TraceID)
	require.Len(t, byName["publish"].References, 1)
	require.Equal(t, "eee19b7ec3c1b174", byName["publish"].References[0].SpanID)
	var runbook any
	for _, tag := range byName["publish"].Tags {
		if tag.Key == "salve.runbook" {
			runbook = tag.Value
		}
	}
	require.Equal(t, "restart-web", runbook)
}
