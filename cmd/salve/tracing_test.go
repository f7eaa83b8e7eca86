package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/internal/testenv"
)

const tracedRunbook = `apiVersion: salve/v1
kind: Runbook
metadata: {name: traced}
spec:
  trigger:
    matchers: ['alertname="Traced"']
    incidentKey: '{{ .Labels.instance }}'
  params:
    url: {fromAnnotation: target, required: true, pattern: 'http://127\.0\.0\.1:[0-9]+'}
  steps:
    - {name: first, action: http.request, with: {url: '{{ .Params.url }}/first/hook-secret-in-path', method: POST}}
    - {name: hold, action: sleep, with: {duration: 6s}}
    - {name: second, action: http.request, with: {url: '{{ .Params.url }}/second', method: POST}}
    - {name: third, action: http.request, with: {url: '{{ .Params.url }}/third/hook-secret-in-path', method: POST, expectStatus: [200]}}
`

// One alert's whole path is one trace in a real Jaeger: the webhook
// (continuing the sender's traceparent), the JetStream publish, the
// trigger, the run's start, the workflow, each step and each step's HTTP
// call — also across a kill -9 of salve dev in the middle of the run,
// after which the resumed steps still join the trace. No alert annotation
// and no URL path reaches a span, not even in the error of the step that
// fails at the end.
func TestTraceOfAnAlertAcrossAKill(t *testing.T) {
	j := testenv.StartJaeger(t)

	// The step's target remembers the traceparent each request carried.
	var mu sync.Mutex
	seen := map[string]string{}
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		step := strings.Split(strings.TrimPrefix(r.URL.Path, "/"), "/")[0]
		seen[step] = r.Header.Get("traceparent")
		if step == "third" {
			w.WriteHeader(http.StatusNotFound) // the last step fails for good: its error text names the URL
		}
	}))
	t.Cleanup(target.Close)
	traceparentOf := func(step string) string { mu.Lock(); defer mu.Unlock(); return seen[step] }

	rbDir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(rbDir, "traced.yaml"), []byte(tracedRunbook), 0o600))
	dataDir := t.TempDir()
	port := freePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	const token = "test-token-2b7e151628aed2a6abf7158809cf4f3c"
	args := []string{"dev", "--data-dir", dataDir, "--runbooks", rbDir, "--listen", fmt.Sprintf("127.0.0.1:%d", port),
		"--temporal-port", "-1", "--nats-port", "-1", "--ui-port", "-1", "--webhook-token", token,
		"--trace-url", "http://jaeger.example:16686/trace/{traceId}"}
	common := []string{"OTEL_BSP_SCHEDULE_DELAY=100", "OTEL_SERVICE_NAME=salve-e2e"}
	// The first process exports over OTLP/HTTP, the second over gRPC.
	first := startProc(t, salveBin, append(common, "OTEL_EXPORTER_OTLP_ENDPOINT=http://"+j.OTLPHTTP, "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf"), args...)
	waitReady(t, base)
	tok, err := os.ReadFile(filepath.Join(dataDir, "admin-token"))
	require.NoError(t, err)
	apiToken = strings.TrimSpace(string(tok))

	// The sender (a proxy in front of Salve, say) started the trace.
	traceID, senderSpan := randomHex(t, 16), randomHex(t, 8)
	const secret = "annotation-secret-d41d8cd98f00b204"
	body := fmt.Sprintf(`{"version":"4","status":"firing","receiver":"salve","alerts":[{"status":"firing",
"labels":{"alertname":"Traced","instance":"api-1"},"annotations":{"target":%q,"runbook_token":%q},
"startsAt":"2026-12-07T08:00:00Z","fingerprint":"00000000000c0ffe"}]}`, target.URL, secret)
	req, _ := http.NewRequest(http.MethodPost, base+"/v1/alertmanager", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("traceparent", "00-"+traceID+"-"+senderSpan+"-01")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	const id = "salve/traced/api-1"
	require.Eventually(t, func() bool {
		v, ok := readRun(base, id)
		return ok && v.Run != nil && len(v.Run.Steps) >= 2 && v.Run.Steps[0].State == "succeeded" && v.Run.Steps[1].State == "running"
	}, time.Minute, 100*time.Millisecond)
	// Kill once the first step's spans are exported: what a process
	// never exported is lost with it, by design of any tracer.
	spansOf := func(tr testenv.JaegerTrace, name string) []testenv.JaegerSpan {
		var out []testenv.JaegerSpan
		for _, s := range tr.Spans {
			if s.OperationName == name {
				out = append(out, s)
			}
		}
		return out
	}
	stepSpan := func(tr testenv.JaegerTrace, step string) (testenv.JaegerSpan, bool) {
		for _, s := range spansOf(tr, "RunActivity:step.http.request") {
			if v, _ := s.Tag("salve.step"); v == step {
				return s, true
			}
		}
		return testenv.JaegerSpan{}, false
	}
	require.Eventually(t, func() bool {
		tr, err := j.Trace(traceID)
		if err != nil {
			return false
		}
		_, ok := stepSpan(tr, "first")
		return ok
	}, 30*time.Second, 200*time.Millisecond, "the first step's span never reached Jaeger")
	require.NoError(t, first.cmd.Process.Signal(syscall.SIGKILL))
	_ = first.cmd.Wait()
	require.Contains(t, first.logs.String(), "trace_id="+traceID, "log lines of the alert's handling carry its trace ID")

	startProc(t, salveBin, append(common, "OTEL_EXPORTER_OTLP_ENDPOINT=http://"+j.OTLPGRPC, "OTEL_EXPORTER_OTLP_PROTOCOL=grpc"), args...)
	waitReady(t, base)
	require.Eventually(t, func() bool {
		v, ok := readRun(base, id)
		return ok && v.Status == "failed"
	}, 2*time.Minute, 200*time.Millisecond, "run did not end (its last step fails) after restart")

	var tr testenv.JaegerTrace
	require.Eventually(t, func() bool {
		tr, err = j.Trace(traceID)
		if err != nil {
			return false
		}
		_, ok := stepSpan(tr, "third")
		return ok && len(spansOf(tr, "POST")) >= 3
	}, 30*time.Second, 200*time.Millisecond, "the resumed step's spans never joined the trace")

	byID := map[string]testenv.JaegerSpan{}
	for _, s := range tr.Spans {
		require.Equal(t, traceID, s.TraceID)
		byID[s.SpanID] = s
	}
	one := func(name string) testenv.JaegerSpan {
		t.Helper()
		ss := spansOf(tr, name)
		require.Len(t, ss, 1, "spans named %q in %s", name, names(tr))
		return ss[0]
	}
	tag := func(s testenv.JaegerSpan, key, want string) {
		t.Helper()
		got, ok := s.Tag(key)
		require.True(t, ok, "span %s has no %s", s.OperationName, key)
		require.Equal(t, want, got, "span %s: %s", s.OperationName, key)
	}

	// webhook → publish → trigger → start → workflow → step → HTTP call
	webhook := one("POST /v1/alertmanager")
	require.Equal(t, senderSpan, webhook.Parent(), "the webhook continues the sender's trace")
	publish := one("send salve.alerts")
	require.Equal(t, webhook.SpanID, publish.Parent())
	tag(publish, "messaging.system", "nats")
	trigger := one("trigger traced")
	require.Equal(t, publish.SpanID, trigger.Parent(), "the trigger's span is the publish's child, through the message's headers")
	tag(trigger, "salve.runbook", "traced")
	tag(trigger, "salve.incident_key", "api-1")
	tag(trigger, "salve.decision", "started")
	start := one("StartWorkflow:Runbook")
	require.Equal(t, trigger.SpanID, start.Parent())
	runs := spansOf(tr, "RunWorkflow:Runbook")
	require.NotEmpty(t, runs)
	for _, r := range runs {
		require.Equal(t, start.SpanID, r.Parent(), "every execution of the workflow (the first, the replay after the kill) is the start's child")
	}
	instances := map[string]bool{}
	for _, step := range []string{"first", "second"} {
		act, ok := stepSpan(tr, step)
		require.True(t, ok, "step %s", step)
		tag(act, "cicd.pipeline.name", "traced")
		tag(act, "cicd.pipeline.task.name", step)
		tag(act, "salve.mode", "act")
		sched, ok := byID[act.Parent()]
		require.True(t, ok, "the step's parent span is in the trace")
		require.Equal(t, "StartActivity:step.http.request", sched.OperationName)
		if step == "second" {
			require.Equal(t, "RunWorkflow:Runbook", byID[sched.Parent()].OperationName)
		} else {
			// A RunWorkflow span ends with the run: the killed process
			// never exported its own, so the step it ran hangs from a
			// parent Jaeger does not hold, in the same trace.
			_, held := byID[sched.Parent()]
			require.False(t, held)
		}
		var call testenv.JaegerSpan
		for _, s := range spansOf(tr, "POST") {
			if s.Parent() == act.SpanID {
				call = s
			}
		}
		require.NotEmpty(t, call.SpanID, "step %s's HTTP call is its child", step)
		tag(call, "server.address", "127.0.0.1")
		tag(call, "http.response.status_code", "200")
		// The target got the trace too.
		require.Equal(t, "00-"+traceID+"-"+call.SpanID+"-01", traceparentOf(step))
		for _, pt := range tr.Processes[act.ProcessID].Tags {
			if pt.Key == "service.instance.id" {
				instances[fmt.Sprint(pt.Value)] = true
			}
		}
	}
	require.Len(t, instances, 2, "the steps ran in two processes, before and after the kill")

	// The failed step: an error, the HTTP status, and no text.
	failed, ok := stepSpan(tr, "third")
	require.True(t, ok)
	tag(failed, "otel.status_code", "ERROR")
	_, hasDesc := failed.Tag("otel.status_description")
	require.False(t, hasDesc, "no error text in the span")

	// Nothing from the alert's annotations, and no URL path, in any span.
	for _, s := range tr.Spans {
		vals := []any{s.OperationName}
		for _, tg := range s.Tags {
			vals = append(vals, tg.Value)
		}
		for _, l := range s.Logs {
			for _, f := range l.Fields {
				vals = append(vals, f.Value)
			}
		}
		for _, v := range vals {
			text := fmt.Sprint(v)
			require.NotContains(t, text, secret, "span %s", s.OperationName)
			require.NotContains(t, text, target.URL, "span %s", s.OperationName)
			require.NotContains(t, text, "hook-secret-in-path", "span %s", s.OperationName)
		}
	}

	// The run leads to its trace.
	out, err := exec.Command(salveBin, "runs", "show", id, "--addr", base, "--token", apiToken).CombinedOutput()
	require.NoError(t, err, string(out))
	require.Contains(t, string(out), "http://jaeger.example:16686/trace/"+traceID)

	// A manual launch is a trace of its own, rooted at the API request.
	out, err = exec.Command(salveBin, "launch", "traced", "-p", "url="+target.URL, "--incident-key", "by-hand",
		"--addr", base, "--token", apiToken).CombinedOutput()
	require.NoError(t, err, string(out))
	var launched struct {
		TraceID  string `json:"traceId"`
		TraceURL string `json:"traceUrl"`
	}
	getAPI(t, base+"/v1/runs/salve%2Ftraced%2Fby-hand", &launched)
	require.Len(t, launched.TraceID, 32)
	require.NotEqual(t, traceID, launched.TraceID)
	require.Equal(t, "http://jaeger.example:16686/trace/"+launched.TraceID, launched.TraceURL)
	require.Eventually(t, func() bool {
		tr, err = j.Trace(launched.TraceID)
		return err == nil && len(spansOf(tr, "StartWorkflow:Runbook")) == 1 && len(spansOf(tr, "POST /v1/runbooks/{name}/launch")) == 1
	}, 30*time.Second, 200*time.Millisecond, "the launch's trace never reached Jaeger")
	api := spansOf(tr, "POST /v1/runbooks/{name}/launch")[0]
	require.Empty(t, api.Parent(), "the launch's request is the root")
	require.Equal(t, api.SpanID, spansOf(tr, "StartWorkflow:Runbook")[0].Parent())
}

func randomHex(t *testing.T, n int) string {
	b := make([]byte, n)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return hex.EncodeToString(b)
}

func names(tr testenv.JaegerTrace) string {
	var out []string
	for _, s := range tr.Spans {
		out = append(out, s.OperationName)
	}
	return strings.Join(out, ", ")
}
