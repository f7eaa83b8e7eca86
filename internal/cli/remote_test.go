package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/salve-sre/salve/internal/auth"
)

const (
	testWF      = "salve/restart-crashlooping/shop/api"
	testEscaped = "salve%2Frestart-crashlooping%2Fshop%2Fapi"
	testToken   = "salve_test-token"
)

// isolate keeps the caller's environment and working directory out of a
// test: no SALVE_* connection variables, no .salve/admin-token.
func isolate(t *testing.T) {
	t.Helper()
	for _, k := range []string{envAddr, envToken, envCACert, envDataDir} {
		t.Setenv(k, "")
	}
	t.Chdir(t.TempDir())
}

// request is one request the fake API received.
type request struct {
	Method, Path, Query, Auth, LastEventID string
	Body                                   map[string]any
}

// fakeAPI plays Salve's API: each route answers with a canned handler.
type fakeAPI struct {
	t    *testing.T
	srv  *httptest.Server
	mu   sync.Mutex
	reqs []request
}

// answer is a handler that writes a JSON body with a status.
func answer(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

// stream is a handler that writes Server-Sent Events and closes.
func stream(events ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, ": keepalive\n\n")
		for _, e := range events {
			_, _ = io.WriteString(w, e)
		}
	}
}

// sse is one event; multi-line data becomes several data lines.
func sse(id int, name, data string) string {
	return fmt.Sprintf("id: %d\nevent: %s\ndata: %s\n\n", id, name, strings.ReplaceAll(data, "\n", "\ndata: "))
}

func newFakeAPI(t *testing.T, routes map[string]http.HandlerFunc) *fakeAPI {
	t.Helper()
	f := &fakeAPI{t: t}
	mux := http.NewServeMux()
	for pattern, h := range routes {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			req := request{Method: r.Method, Path: r.URL.EscapedPath(), Query: r.URL.RawQuery, Auth: r.Header.Get("Authorization"), LastEventID: r.Header.Get("Last-Event-ID")}
			if b, _ := io.ReadAll(r.Body); len(b) > 0 {
				assert.NoError(t, json.Unmarshal(b, &req.Body))
			}
			f.mu.Lock()
			f.reqs = append(f.reqs, req)
			f.mu.Unlock()
			h(w, r)
		})
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("unexpected request %s %s", r.Method, r.URL.EscapedPath())
		http.NotFound(w, r)
	})
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeAPI) requests() []request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]request(nil), f.reqs...)
}

// run runs salve in-process against the fake API with a token.
func (f *fakeAPI) run(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return salve(t, append(args, "--addr", f.srv.URL, "--token", testToken)...)
}

func salve(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Execute(context.Background(), args, &out, &errb)
	t.Logf("salve %s\n--- exit %d, stdout:\n%s--- stderr:\n%s", strings.Join(args, " "), code, out.String(), errb.String())
	return out.String(), errb.String(), code
}

const launched = `{"workflowId":"` + testWF + `","runId":"r-1","runbook":"restart-crashlooping","incidentKey":"shop/api","url":"/v1/runs/` + testEscaped + `"}`

func TestLaunch(t *testing.T) {
	isolate(t)
	api := newFakeAPI(t, map[string]http.HandlerFunc{"POST /v1/runbooks/{name}/launch": answer(http.StatusAccepted, launched)})
	out, _, code := api.run(t, "launch", "restart-crashlooping", "-p", "namespace=shop", "-p", "deployment=api", "-p", "selector=app=api",
		"--reason", "stuck after drain", "--incident-key", "shop/api")
	require.Equal(t, 0, code)
	require.Equal(t, []request{{Method: "POST", Path: "/v1/runbooks/restart-crashlooping/launch", Auth: "Bearer " + testToken,
		Body: map[string]any{"params": map[string]any{"namespace": "shop", "deployment": "api", "selector": "app=api"}, "reason": "stuck after drain", "incidentKey": "shop/api"}}}, api.requests())
	require.Contains(t, out, "workflow ID: "+testWF)
	require.Contains(t, out, "run ID:      r-1")
	require.Contains(t, out, "salve runs watch "+testWF+" --addr "+api.srv.URL)
	require.Contains(t, out, "salve runs cancel "+testWF+" --reason '...' --addr "+api.srv.URL)
	require.NotContains(t, out, testToken)

	out, _, code = api.run(t, "launch", "restart-crashlooping", "-o", "json")
	require.Equal(t, 0, code)
	var res map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &res))
	require.Equal(t, testWF, res["workflowId"])
}

func TestLaunchUsageErrors(t *testing.T) {
	isolate(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"launch", "r", "-p", "namespace"}, `invalid argument "namespace" for "-p, --param" flag: want key=value, e.g. -p namespace=shop`},
		{[]string{"launch", "r", "-p", "=shop"}, "the key before = is empty"},
		{[]string{"launch", "r", "-p", "a=1", "-p", "a=2"}, `param "a" is given twice`},
		{[]string{"launch", "r", "-o", "yaml"}, `invalid argument "yaml" for "-o, --output" flag: want table or json`},
		{[]string{"launch", "r", "--dry-run", "--wait"}, "[dry-run wait] were all set"},
		{[]string{"runs", "cancel", testWF}, "the --reason flag is required: say why you cancel the run"},
		{[]string{"approve", testWF}, "the --reason flag is required: say why you approve"},
		{[]string{"reject", testWF, "--reason", " "}, "the --reason flag is required: say why you reject"},
		{[]string{"runs", "list", "--since", "yesterday"}, "want a duration such as 2h or 7d"},
		{[]string{"token", "create", "--role", "root", "--subject", "a"}, `the --role flag: unknown role "root": want one of viewer, operator, admin`},
		{[]string{"token", "create", "--subject", "a"}, `required flag(s) "role" not set`},
		{[]string{"token", "create", "--role", "viewer"}, "the --subject flag is required"},
		{[]string{"runs", "show"}, "salve runs show takes 1 argument(s), got 0; usage: salve runs show RUN [flags]"},
		{[]string{"approve", "a", "b", "--reason", "x"}, "usage: salve approve RUN --reason TEXT [flags]"},
		{[]string{"runs", "list", "extra"}, `unknown command "extra" for "salve runs list"`},
		{[]string{"runbook", "promote", "r", "--to", "yolo"}, `--to: want approve or enforce, got "yolo"`},
		{[]string{"runbook", "promote", "r", "--to", "enforce", "--override"}, "--override needs --reason"},
		{[]string{"runbook", "promote", "r", "--to", "enforce", "--write"}, "--write needs --file"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, stderr, code := salve(t, tc.args...)
			require.Equal(t, 2, code)
			require.Contains(t, stderr, tc.want)
		})
	}
}

const plan = `{"runbook":"restart-crashlooping","incidentKey":"manual-x1","plan":{
  "runbook":"restart-crashlooping","runbookHash":"0123456789abcdef0123","incidentKey":"manual-x1","mode":"enforce",
  "params":{"namespace":"shop","deployment":"api"},
  "steps":[
    {"name":"check","action":"prometheus.query","mutating":false,"with":{"query":"up{job=\"api\"} == 0"}},
    {"name":"restart","action":"kubernetes.restart","mutating":true,"with":{"namespace":"shop","name":"api","replicas":3},"credential":"kubernetes","approval":true,"when":"{{ gt .Steps.check.value 0 }}"}
  ],
  "onFailure":[{"name":"page","action":"http.request","mutating":false,"with":{"url":"https://pager"}}],
  "approvals":[{"step":"restart","timeout":"30m0s","onTimeout":"fail"}],
  "credentials":[{"source":"kubernetes","role":"salve-shop","ttl":"10m0s","steps":["restart"]}],
  "safety":[{"name":"cooldown","setting":"30m","enforced":true},{"name":"circuitBreaker","setting":"3 in 1h","enforced":false}]}}`

func TestLaunchDryRun(t *testing.T) {
	isolate(t)
	api := newFakeAPI(t, map[string]http.HandlerFunc{"POST /v1/runbooks/{name}/launch": answer(http.StatusOK, plan)})
	out, _, code := api.run(t, "launch", "restart-crashlooping", "-p", "namespace=shop", "--dry-run")
	require.Equal(t, 0, code)
	require.Equal(t, map[string]any{"params": map[string]any{"namespace": "shop"}, "dryRun": true}, api.requests()[0].Body)
	for _, want := range []string{
		"Plan of restart-crashlooping for incident manual-x1 (mode enforce, runbook 0123456789ab); nothing was started.",
		"Params: deployment=api namespace=shop",
		"  STEP     ACTION              MUTATING  APPROVAL  CREDENTIAL  WITH\n",
		"  check    prometheus.query    no        -         -           query=\"up{job=\\\"api\\\"} == 0\"\n",
		"  restart  kubernetes.restart  yes       yes       kubernetes  name=api namespace=shop replicas=3\n",
		"  restart runs only when: {{ gt .Steps.check.value 0 }}",
		"On failure",
		"  page  http.request  no        -         -           url=https://pager\n",
		"Approvals:\n  step restart: waits up to 30m0s, then fail\n",
		"Credentials:\n  kubernetes role salve-shop, ttl 10m0s, for restart\n",
		"  CHECK           SETTING  ENFORCED\n  cooldown        30m      yes\n  circuitBreaker  3 in 1h  no (not enforced by this version)\n",
	} {
		require.Contains(t, out, want)
	}

	out, _, code = api.run(t, "launch", "restart-crashlooping", "--dry-run", "-o", "json")
	require.Equal(t, 0, code)
	var p map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &p))
	require.Equal(t, "restart-crashlooping", p["runbook"])
	require.Len(t, p["steps"], 2)
}

func TestAPIErrorExitCodes(t *testing.T) {
	isolate(t)
	for _, tc := range []struct {
		status int
		body   string
		want   string
	}{
		{401, `{"error":"missing or unknown bearer token"}`, "salve: 401 Unauthorized: missing or unknown bearer token (set SALVE_TOKEN or --token; create one with: salve token create --role operator --subject NAME)\n"},
		{403, `{"error":"role viewer cannot launch runs (needs operator)"}`, "salve: 403 Forbidden: role viewer cannot launch runs (needs operator)\n"},
		{409, `{"error":"a run of restart-crashlooping for incident shop/api is running","detail":{"workflowId":"` + testWF + `"}}`,
			`salve: 409 Conflict: a run of restart-crashlooping for incident shop/api is running {"workflowId":"` + testWF + `"}` + "\n"},
		{400, `{"error":"invalid params","detail":["replicas: want an int, got \"x\""]}`, "salve: 400 Bad Request: invalid params\n  replicas: want an int, got \"x\"\n"},
	} {
		t.Run(fmt.Sprint(tc.status), func(t *testing.T) {
			api := newFakeAPI(t, map[string]http.HandlerFunc{"POST /v1/runbooks/{name}/launch": answer(tc.status, tc.body)})
			out, stderr, code := api.run(t, "launch", "restart-crashlooping", "--wait")
			require.Equal(t, 1, code)
			require.Empty(t, out)
			require.Equal(t, tc.want, stderr)
		})
	}
}

func TestUnreachableAPI(t *testing.T) {
	isolate(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := "http://" + ln.Addr().String()
	require.NoError(t, ln.Close())
	_, stderr, code := salve(t, "approvals", "--addr", addr)
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "salve: cannot reach Salve at "+addr)
	require.Contains(t, stderr, "salve dev")
}

// A run's events: started, a step that fails after retries, compensation,
// the end.
func failedRunEvents() []string {
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	at := func(s int) string { return t0.Add(time.Duration(s) * time.Second).Format(time.RFC3339) }
	return []string{
		sse(1, "run.started", `{"action":"run.started","time":"`+at(0)+`","actor":{"kind":"user","name":"alice"},"workflowId":"`+testWF+`"}`),
		sse(2, "step.started", `{"action":"step.started","time":"`+at(1)+`","step":"restart","target":"shop/deployment/api"}`),
		sse(3, "step.failed", `{"action":"step.failed","time":"`+at(5)+`","step":"restart","error":"deployments.apps \"api\" is forbidden"}`),
		sse(4, "run.finished", `{"action":"run.finished","time":"`+at(6)+`","outcome":"failed"}`),
		sse(5, "end", `{"workflowId":"`+testWF+`","runId":"r-1","runbook":"restart-crashlooping","incidentKey":"shop/api","status":"failed",
			"startTime":"`+at(0)+`","closeTime":"`+at(6)+`",
			"run":{"runbook":"restart-crashlooping","state":"failed","launchedBy":"alice","reason":"stuck",
			  "steps":[{"name":"restart","action":"kubernetes.restart","state":"failed","startedAt":"`+at(1)+`","finishedAt":"`+at(5)+`","attempts":3,"error":"deployments.apps \"api\" is forbidden"}],
			  "error":"step restart: deployments.apps \"api\" is forbidden"}}`),
	}
}

func TestLaunchWaitFailedRun(t *testing.T) {
	isolate(t)
	api := newFakeAPI(t, map[string]http.HandlerFunc{
		"POST /v1/runbooks/{name}/launch": answer(http.StatusAccepted, launched),
		"GET /v1/runs/{id}/events":        stream(failedRunEvents()...),
	})
	out, stderr, code := api.run(t, "launch", "restart-crashlooping", "--wait")
	require.Equal(t, 1, code)
	require.Equal(t, "salve: the run did not succeed: failed\n", stderr)
	reqs := api.requests()
	require.Len(t, reqs, 2)
	require.Equal(t, "/v1/runs/"+testEscaped+"/events", reqs[1].Path)
	require.Equal(t, "Bearer "+testToken, reqs[1].Auth)
	clock := func(s int) string {
		return time.Date(2025, 3, 1, 12, 0, s, 0, time.UTC).Local().Format("15:04:05")
	}
	for _, want := range []string{
		clock(0) + "  (run)         run started by alice\n",
		clock(1) + "  restart       started on shop/deployment/api\n",
		clock(5) + "  restart       failed: deployments.apps \"api\" is forbidden\n",
		clock(6) + "  (run)         run finished: failed\n",
		"Status:       failed",
		"  STEP     ACTION              STATE   ATTEMPTS  STARTED   DURATION  ERROR\n",
		"  restart  kubernetes.restart  failed  3         " + clock(1) + "  4s        deployments.apps \"api\" is forbidden\n",
		"Error: step restart: deployments.apps \"api\" is forbidden",
	} {
		require.Contains(t, out, want)
	}

	// JSON lines: the launch result, then each event; still exit 1.
	out, _, code = api.run(t, "launch", "restart-crashlooping", "--wait", "-o", "json")
	require.Equal(t, 1, code)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 6)
	require.JSONEq(t, launched, lines[0])
	var last struct {
		Event string `json:"event"`
		Data  struct {
			Status string `json:"status"`
		} `json:"data"`
	}
	require.NoError(t, json.Unmarshal([]byte(lines[5]), &last))
	require.Equal(t, "end", last.Event)
	require.Equal(t, "failed", last.Data.Status)
}

func TestRunsWatch(t *testing.T) {
	isolate(t)
	ok := `{"workflowId":"` + testWF + `","status":"succeeded","run":{"state":"succeeded","steps":[]}}`
	api := newFakeAPI(t, map[string]http.HandlerFunc{
		"GET /v1/runs/{id}/events": stream(sse(1, "run.started", `{"action":"run.started"}`), sse(2, "end", ok)),
	})
	// The salve/ prefix may be left out.
	out, _, code := api.run(t, "runs", "watch", "restart-crashlooping/shop/api")
	require.Equal(t, 0, code)
	require.Contains(t, out, "Status:       succeeded")
	require.Equal(t, "/v1/runs/"+testEscaped+"/events", api.requests()[0].Path)

	// JSON lines: one per event.
	out, _, code = api.run(t, "runs", "watch", testWF, "-o", "json")
	require.Equal(t, 0, code)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 2)
	var ev struct {
		ID    string          `json:"id"`
		Event string          `json:"event"`
		Data  json.RawMessage `json:"data"`
	}
	require.NoError(t, json.Unmarshal([]byte(lines[1]), &ev))
	require.Equal(t, "end", ev.Event)
	require.JSONEq(t, ok, string(ev.Data))

	// A rejected run: Temporal says cancelled, the run's state says why.
	rejected := `{"workflowId":"` + testWF + `","status":"cancelled","run":{"state":"rejected","stopReason":"bob rejected the approval of step restart: not now"}}`
	api = newFakeAPI(t, map[string]http.HandlerFunc{"GET /v1/runs/{id}/events": stream(sse(1, "end", rejected))})
	out, stderr, code := api.run(t, "runs", "watch", testWF)
	require.Equal(t, 1, code)
	require.Contains(t, out, "Stopped: bob rejected the approval of step restart: not now")
	require.Equal(t, "salve: the run did not succeed: rejected\n", stderr)
}

func TestRunsList(t *testing.T) {
	isolate(t)
	page := func(runs, next string) http.HandlerFunc {
		return answer(http.StatusOK, `{"runs":[`+runs+`],"nextPageToken":"`+next+`"}`)
	}
	run1 := `{"workflowId":"salve/a/1","runbook":"a","incidentKey":"1","status":"running","startTime":"2025-03-01T12:00:00Z"}`
	run2 := `{"workflowId":"salve/a/2","runbook":"a","incidentKey":"2","status":"failed","startTime":"2025-03-01T11:00:00Z","closeTime":"2025-03-01T11:01:30Z"}`
	api := newFakeAPI(t, map[string]http.HandlerFunc{"GET /v1/runs": func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("pageToken") == "" {
			page(run1, "p2")(w, r)
			return
		}
		page(run2, "")(w, r)
	}})
	out, stderr, code := api.run(t, "runs", "list", "--runbook", "a", "--status", "failed", "--since", "2025-03-01T00:00:00Z", "--limit", "1")
	require.Equal(t, 0, code)
	require.Equal(t, "limit=1&runbook=a&since=2025-03-01T00%3A00%3A00Z&status=failed", api.requests()[0].Query)
	require.Contains(t, out, "RUN        STATUS   STARTED              DURATION\n")
	require.Contains(t, out, "salve/a/1  running  ")
	require.NotContains(t, out, "salve/a/2")
	require.Contains(t, stderr, "More runs: add --all")

	out, _, code = api.run(t, "runs", "list", "--all", "--since", "2h")
	require.Equal(t, 0, code)
	require.Contains(t, out, "salve/a/2  failed   ")
	require.Contains(t, out, "  1m30s\n")
	reqs := api.requests()
	q, err := url.ParseQuery(reqs[len(reqs)-1].Query)
	require.NoError(t, err)
	require.Equal(t, "p2", q.Get("pageToken"))
	since, err := time.Parse(time.RFC3339, q.Get("since"))
	require.NoError(t, err)
	require.WithinDuration(t, time.Now().Add(-2*time.Hour), since, time.Minute)

	out, _, code = api.run(t, "runs", "list", "--all", "-o", "json")
	require.Equal(t, 0, code)
	var body struct {
		Runs []map[string]any `json:"runs"`
		Next *string          `json:"nextPageToken"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &body))
	require.Len(t, body.Runs, 2)
	require.Nil(t, body.Next)
}

func TestRunsShow(t *testing.T) {
	isolate(t)
	now := time.Now().UTC()
	at := func(d time.Duration) string { return now.Add(d).Format(time.RFC3339Nano) }
	clock := func(d time.Duration) string { return now.Add(d).Local().Format("15:04:05") }
	detail := `{"workflowId":"` + testWF + `","runId":"r-1","runbook":"restart-crashlooping","incidentKey":"shop/api","status":"running","startTime":"` + at(-10*time.Minute) + `",
	  "run":{"runbook":"restart-crashlooping","runbookHash":"abcdef0123456789","state":"running","params":{"namespace":"shop"},
	    "steps":[
	      {"name":"check","action":"prometheus.query","state":"succeeded","startedAt":"` + at(-9*time.Minute) + `","finishedAt":"` + at(-9*time.Minute+1500*time.Millisecond) + `","attempts":1,"output":{"value":3,"series":"up"}},
	      {"name":"restart","action":"kubernetes.restart","state":"waiting_approval","startedAt":"` + at(-8*time.Minute) + `"}
	    ],
	    "approval":{"step":"restart","requestedAt":"` + at(-8*time.Minute) + `","deadline":"` + at(22*time.Minute) + `","onTimeout":"fail"},
	    "approvals":[{"decision":"approved","by":"bob","reason":"looked fine","at":"` + at(-9*time.Minute-time.Second) + `"}]}}`
	api := newFakeAPI(t, map[string]http.HandlerFunc{"GET /v1/runs/{id}": answer(http.StatusOK, detail)})
	out, _, code := api.run(t, "runs", "show", testWF, "--run-id", "r-1")
	require.Equal(t, 0, code)
	require.Equal(t, request{Method: "GET", Path: "/v1/runs/" + testEscaped, Query: "runId=r-1", Auth: "Bearer " + testToken}, api.requests()[0])
	for _, want := range []string{
		"Runbook:      restart-crashlooping (version abcdef012345)",
		"Status:       running",
		"Launched by:  an alert",
		"Params:       namespace=shop",
		"  STEP     ACTION              STATE             ATTEMPTS  STARTED   DURATION     ERROR\n",
		"  check    prometheus.query    succeeded         1         " + clock(-9*time.Minute) + "  1.5s\n",
		"  restart  kubernetes.restart  waiting_approval  -         " + clock(-8*time.Minute) + "  8m0s so far\n",
		"Outputs:\n  check.series = up\n  check.value = 3\n",
		"Approvals:\n  the whole run: approved by bob at ",
		"(reason: looked fine)",
		"Waiting for approval of step restart since ",
		"(8m ago); deadline ",
		"(in 22m), then fail.",
		"  approve: salve approve " + testWF + " --step restart --reason '...' --addr " + api.srv.URL,
		"  reject:  salve reject " + testWF + " --step restart --reason '...' --addr " + api.srv.URL,
	} {
		require.Contains(t, out, want)
	}

	out, _, code = api.run(t, "runs", "show", testWF, "-o", "json")
	require.Equal(t, 0, code)
	require.JSONEq(t, detail, out)
}

func TestRunsCancel(t *testing.T) {
	isolate(t)
	api := newFakeAPI(t, map[string]http.HandlerFunc{"POST /v1/runs/{id}/cancel": answer(http.StatusAccepted, `{"workflowId":"`+testWF+`","runId":"r-1","status":"cancel_requested"}`)})
	out, _, code := api.run(t, "runs", "cancel", testWF, "--reason", "fixed by hand")
	require.Equal(t, 0, code)
	require.Equal(t, request{Method: "POST", Path: "/v1/runs/" + testEscaped + "/cancel", Auth: "Bearer " + testToken, Body: map[string]any{"reason": "fixed by hand"}}, api.requests()[0])
	require.Contains(t, out, "Asked run "+testWF+" (run ID r-1) to stop: cancel_requested.")

	api = newFakeAPI(t, map[string]http.HandlerFunc{"POST /v1/runs/{id}/cancel": answer(http.StatusConflict, `{"error":"run `+testWF+` is not running"}`)})
	_, stderr, code := api.run(t, "runs", "cancel", testWF, "--reason", "x")
	require.Equal(t, 1, code)
	require.Equal(t, "salve: 409 Conflict: run "+testWF+" is not running\n", stderr)
}

func TestApprovals(t *testing.T) {
	isolate(t)
	now := time.Now().UTC()
	list := `{"approvals":[{"workflowId":"` + testWF + `","runId":"r-1","runbook":"restart-crashlooping","incidentKey":"shop/api","step":"restart",
	  "requestedAt":"` + now.Add(-5*time.Minute).Format(time.RFC3339) + `","deadline":"` + now.Add(25*time.Minute).Format(time.RFC3339) + `","onTimeout":"fail","launchedBy":"alice"},
	  {"workflowId":"salve/scale-up/web","runbook":"scale-up","requestedAt":"` + now.Format(time.RFC3339) + `","deadline":"` + now.Add(time.Hour).Format(time.RFC3339) + `","onTimeout":"continue"}]}`
	api := newFakeAPI(t, map[string]http.HandlerFunc{
		"GET /v1/approvals":          answer(http.StatusOK, list),
		"POST /v1/runs/{id}/approve": answer(http.StatusOK, `{"workflowId":"`+testWF+`","runId":"r-1","step":"restart","decision":"approved","by":"bob"}`),
		"POST /v1/runs/{id}/reject":  answer(http.StatusForbidden, `{"error":"alice launched this run and may not decide its approval"}`),
		"GET /v1/runs/{id}": answer(http.StatusOK, `{"workflowId":"`+testWF+`","runId":"r-1","status":"running",
		  "run":{"state":"running","steps":[],"approval":{"step":"restart","requestedAt":"`+now.Format(time.RFC3339)+`","deadline":"`+now.Add(time.Hour).Format(time.RFC3339)+`","onTimeout":"fail"}}}`),
	})
	out, _, code := api.run(t, "approvals")
	require.Equal(t, 0, code)
	require.Contains(t, out, "RUN                                  RUNBOOK               STEP         WAITING SINCE")
	require.Contains(t, out, testWF+"  restart-crashlooping  restart      ")
	require.Contains(t, out, "(5m ago)")
	require.Contains(t, out, "fail        alice\n")
	require.Contains(t, out, "salve/scale-up/web                   scale-up              (whole run)  ")
	require.Contains(t, out, "continue    (alert)\n")

	out, _, code = api.run(t, "approve", testWF, "--step", "restart", "--reason", "dashboards look fine")
	require.Equal(t, 0, code)
	require.Equal(t, map[string]any{"reason": "dashboards look fine", "step": "restart"}, api.requests()[1].Body)
	require.Equal(t, "/v1/runs/"+testEscaped+"/approve", api.requests()[1].Path)
	require.Contains(t, out, "Approved step restart of run "+testWF+" as bob. The run goes on.")

	// Without --step, the CLI decides on what the run waits for now, and
	// on this run ID only.
	_, stderr, code := api.run(t, "reject", testWF, "--reason", "no")
	require.Equal(t, 1, code)
	require.Equal(t, "/v1/runs/"+testEscaped, api.requests()[2].Path)
	require.Equal(t, "/v1/runs/"+testEscaped+"/reject", api.requests()[3].Path)
	require.Equal(t, map[string]any{"reason": "no", "step": "restart", "runId": "r-1"}, api.requests()[3].Body)
	require.Contains(t, stderr, "salve: 403 Forbidden: alice launched this run and may not decide its approval\n")

	out, _, code = api.run(t, "approvals", "-o", "json")
	require.Equal(t, 0, code)
	require.JSONEq(t, list, out)
}

func TestRunbookRemote(t *testing.T) {
	isolate(t)
	detail := `{"runbook":{"name":"restart-crashlooping","description":"Restart pods stuck in CrashLoopBackOff","owner":"team-shop",
	    "matchers":["alertname=\"KubePodCrashLooping\""],"steps":["restart (kubernetes.restart)"],"source":"runbooks/restart.yaml","hash":"abcdef0123456789",
	    "params":{"namespace":{"fromLabel":"namespace","required":true},"replicas":{"type":"int","default":"2","description":"how many"}}},
	  "spec":{"metadata":{"name":"restart-crashlooping"},"spec":{"trigger":{"matchers":["alertname=\"KubePodCrashLooping\""],"incidentKey":"{{ .Labels.namespace }}"},
	    "steps":[{"name":"restart","action":"kubernetes.restart","approval":{"required":true}}]}},
	  "recentRuns":[{"workflowId":"` + testWF + `","status":"succeeded","startTime":"2025-03-01T12:00:00Z","closeTime":"2025-03-01T12:00:42Z"}],
	  "stats":{"runs":4,"succeeded":3,"failed":1,"running":0,"successRate":0.75}}`
	api := newFakeAPI(t, map[string]http.HandlerFunc{
		"GET /v1/runbooks": answer(http.StatusOK, `{"runbooks":[{"name":"restart-crashlooping","owner":"team-shop","matchers":["alertname=\"KubePodCrashLooping\""],
		  "steps":["restart (kubernetes.restart)"],"approval":true,"toilMinutes":15}]}`),
		"GET /v1/runbooks/{name}": answer(http.StatusOK, detail),
	})
	// --addr implies --remote.
	out, _, code := api.run(t, "runbook", "list")
	require.Equal(t, 0, code)
	require.Contains(t, out, "NAME                  MODE     STEPS  APPROVAL  TOIL  OWNER      TRIGGER\n")
	require.Contains(t, out, "restart-crashlooping  enforce  1      yes       15m   team-shop  alertname=\"KubePodCrashLooping\"\n")

	out, _, code = api.run(t, "runbook", "show", "restart-crashlooping", "--remote")
	require.Equal(t, 0, code)
	for _, want := range []string{
		"Description:   Restart pods stuck in CrashLoopBackOff",
		"Source:        runbooks/restart.yaml (version abcdef012345)",
		"Trigger:       alertname=\"KubePodCrashLooping\"",
		"Incident key:  {{ .Labels.namespace }}",
		"  NAME       TYPE    REQUIRED  DEFAULT  FROM             DESCRIPTION\n",
		"  namespace  string  yes       -        label namespace\n",
		"  replicas   int     no        2        -                how many\n",
		"  1. restart (kubernetes.restart): needs approval",
		"  " + testWF + "  succeeded  ",
		"42s",
		"Success rate: 75% (3 succeeded, 1 failed of the last 4 runs; 0 running)",
	} {
		require.Contains(t, out, want)
	}
	require.Equal(t, "/v1/runbooks/restart-crashlooping", api.requests()[1].Path)

	out, _, code = api.run(t, "runbook", "show", "restart-crashlooping", "-o", "json")
	require.Equal(t, 0, code)
	require.JSONEq(t, detail, out)

	// Without Temporal the server still answers, without the runs.
	api = newFakeAPI(t, map[string]http.HandlerFunc{"GET /v1/runbooks/{name}": answer(http.StatusOK,
		`{"runbook":{"name":"restart-crashlooping","steps":["restart (kubernetes.restart)"]},"statsError":"recent runs unavailable: no Temporal"}`)})
	out, _, code = api.run(t, "runbook", "show", "restart-crashlooping", "--remote")
	require.Equal(t, 0, code)
	require.Contains(t, out, "Steps:\n  1. restart (kubernetes.restart)\n")
	require.Contains(t, out, "Recent runs:\n  recent runs unavailable: no Temporal\n")
}

// Without --remote or --addr, runbook list reads files even when
// SALVE_ADDR is set.
func TestRunbookListLocalDespiteSalveAddr(t *testing.T) {
	isolate(t)
	t.Setenv(envAddr, "http://127.0.0.1:1")
	require.NoError(t, os.Mkdir("runbooks", 0o755))
	require.NoError(t, os.WriteFile(filepath.Join("runbooks", "a.yaml"), []byte("apiVersion: salve/v1\nkind: Runbook\nmetadata: {name: a, owner: me}\nspec:\n  steps:\n    - {name: s, action: sleep, with: {duration: 1s}}\n"), 0o600))
	out, _, code := salve(t, "runbook", "list")
	require.Equal(t, 0, code)
	require.Contains(t, out, "a     enforce  1")
	out, _, code = salve(t, "runbook", "list", "-o", "json")
	require.Equal(t, 0, code)
	require.Contains(t, out, `"steps": [`)
	require.Contains(t, out, `"s (sleep)"`)
}

func TestTokenCreate(t *testing.T) {
	isolate(t)
	out, _, code := salve(t, "token", "create", "--role", "operator", "--subject", "alice", "--group", "sre", "--group", "on call")
	require.Equal(t, 0, code)
	lines := strings.Split(out, "\n")
	require.Equal(t, "API token for alice (role operator):", lines[0])
	token := strings.TrimSpace(lines[2])
	require.True(t, strings.HasPrefix(token, auth.TokenPrefix), token)
	require.Contains(t, out, "only time it is shown")
	require.Contains(t, out, "add this under auth.tokens")
	require.Contains(t, out, "  - {subject: alice, role: operator, groups: [sre, on call], sha256: "+auth.HashToken(token)+"}\n")
	table := out

	out, _, code = salve(t, "token", "create", "--role", "viewer", "--subject", "grafana", "-o", "json")
	require.Equal(t, 0, code)
	var got tokenCreated
	require.NoError(t, json.Unmarshal([]byte(out), &got))
	require.Equal(t, "grafana", got.Subject)
	require.Equal(t, "viewer", got.Role)
	require.Equal(t, []string{}, got.Groups)
	require.Equal(t, auth.HashToken(got.Token), got.SHA256)

	// The entry is what the server reads: it accepts the token.
	entry := table[strings.Index(table, "  - {")+2:]
	var cfg struct {
		Tokens []auth.TokenConfig `yaml:"tokens"`
	}
	require.NoError(t, yaml.Unmarshal([]byte("tokens:\n"+entry), &cfg))
	authn, err := auth.New(cfg.Tokens)
	require.NoError(t, err)
	req := httptest.NewRequest(http.MethodGet, "/v1/whoami", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	p, err := authn.Authenticate(req)
	require.NoError(t, err)
	require.Equal(t, auth.Principal{Subject: "alice", Role: auth.RoleOperator, Groups: []string{"sre", "on call"}}, p)

	entry, err = tokenConfigEntry("a: b", "admin", []string{"yes", "12"}, "0123")
	require.NoError(t, err)
	require.Equal(t, `- {subject: 'a: b', role: admin, groups: [yes, "12"], sha256: "0123"}`, entry)
}

func TestTokenResolution(t *testing.T) {
	isolate(t)
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Header.Get("Authorization"))
		_, _ = io.WriteString(w, `{"approvals":[]}`)
	}))
	defer srv.Close()
	last := func() string { return got[len(got)-1] }

	// No token anywhere: none sent.
	_, _, code := salve(t, "approvals", "--addr", srv.URL)
	require.Equal(t, 0, code)
	require.Equal(t, "", last())

	// salve dev's admin token, for a loopback address.
	require.NoError(t, os.Mkdir(".salve", 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(".salve", "admin-token"), []byte("dev-admin\n"), 0o600))
	_, _, code = salve(t, "approvals", "--addr", srv.URL)
	require.Equal(t, 0, code)
	require.Equal(t, "Bearer dev-admin", last())

	// SALVE_ADDR works like --addr.
	t.Setenv(envAddr, srv.URL)
	_, _, code = salve(t, "approvals")
	require.Equal(t, 0, code)
	require.Equal(t, "Bearer dev-admin", last())

	// SALVE_TOKEN beats the dev token.
	t.Setenv(envToken, "from-env")
	_, _, code = salve(t, "approvals")
	require.Equal(t, 0, code)
	require.Equal(t, "Bearer from-env", last())

	// --token-file beats SALVE_TOKEN; --token beats both.
	require.NoError(t, os.WriteFile("tok", []byte("  from-file\n"), 0o600))
	_, _, code = salve(t, "approvals", "--token-file", "tok")
	require.Equal(t, 0, code)
	require.Equal(t, "Bearer from-file", last())
	_, _, code = salve(t, "approvals", "--token-file", "tok", "--token", "from-flag")
	require.Equal(t, 0, code)
	require.Equal(t, "Bearer from-flag", last())

	// The dev token is for loopback addresses only.
	r := &remote{}
	tok, err := r.resolveToken("https://salve.example.com")
	require.NoError(t, err)
	require.Equal(t, "from-env", tok)
	t.Setenv(envToken, "")
	tok, err = r.resolveToken("https://salve.example.com")
	require.NoError(t, err)
	require.Empty(t, tok)
	for _, addr := range []string{"http://127.0.0.1:8080", "localhost:8080", "http://[::1]:8080"} {
		tok, err = r.resolveToken(addr)
		require.NoError(t, err)
		require.Equal(t, "dev-admin", tok, addr)
	}
	// SALVE_DATA_DIR moves it, like salve dev's --data-dir.
	t.Setenv(envDataDir, "elsewhere")
	tok, err = r.resolveToken("http://127.0.0.1:8080")
	require.NoError(t, err)
	require.Empty(t, tok)
}
