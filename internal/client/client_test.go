package client

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/internal/runs"
	"github.com/salve-sre/salve/runbooks"
)

const wfID = "salve/restart-crashlooping/shop/api"

// seen is one request the fake API received.
type seen struct {
	Method, EscapedPath, Query, Auth string
	Body                             map[string]any
	PathID                           string // {id} as the server's mux decodes it
}

// fakeAPI answers every request with status and body, and records it. The
// routes are those of the real API, so the test also shows that an escaped
// workflow ID routes as one segment.
func fakeAPI(t *testing.T, status int, body string) (*Client, *[]seen) {
	t.Helper()
	var got []seen
	mux := http.NewServeMux()
	handle := func(w http.ResponseWriter, r *http.Request) {
		s := seen{Method: r.Method, EscapedPath: r.URL.EscapedPath(), Query: r.URL.RawQuery, Auth: r.Header.Get("Authorization"), PathID: r.PathValue("id")}
		if b, _ := io.ReadAll(r.Body); len(b) > 0 {
			assert.NoError(t, json.Unmarshal(b, &s.Body))
			assert.Equal(t, "application/json", r.Header.Get("Content-Type"))
		}
		got = append(got, s)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
	for _, p := range []string{
		"POST /v1/runbooks/{name}/launch", "GET /v1/runbooks", "GET /v1/runbooks/{name}", "GET /v1/runs",
		"GET /v1/runs/{id}", "POST /v1/runs/{id}/cancel", "GET /v1/approvals", "POST /v1/runs/{id}/approve", "POST /v1/runs/{id}/reject",
	} {
		mux.HandleFunc(p, handle)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("unexpected request %s %s", r.Method, r.URL.EscapedPath())
		http.NotFound(w, r)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	c, err := New(Config{Addr: srv.URL, Token: "salve_secret"})
	require.NoError(t, err)
	return c, &got
}

func TestEndpoints(t *testing.T) {
	ctx := context.Background()
	const escaped = "salve%2Frestart-crashlooping%2Fshop%2Fapi"
	since := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name   string
		call   func(c *Client) error
		want   seen
		answer string
	}{
		{
			name: "launch",
			call: func(c *Client) error {
				res, err := c.Launch(ctx, "restart-crashlooping", runs.LaunchRequest{Params: map[string]string{"namespace": "shop"}, Reason: "stuck", IncidentKey: "shop/api"})
				require.Equal(t, wfID, res.WorkflowID)
				return err
			},
			want:   seen{Method: "POST", EscapedPath: "/v1/runbooks/restart-crashlooping/launch", Body: map[string]any{"params": map[string]any{"namespace": "shop"}, "reason": "stuck", "incidentKey": "shop/api"}},
			answer: `{"workflowId":"` + wfID + `","runId":"r1","runbook":"restart-crashlooping","incidentKey":"shop/api"}`,
		},
		{
			name: "dry run",
			call: func(c *Client) error {
				res, err := c.Launch(ctx, "restart-crashlooping", runs.LaunchRequest{DryRun: true})
				require.NotNil(t, res.Plan)
				require.Equal(t, "restart", res.Plan.Steps[0].Name)
				return err
			},
			want:   seen{Method: "POST", EscapedPath: "/v1/runbooks/restart-crashlooping/launch", Body: map[string]any{"dryRun": true}},
			answer: `{"runbook":"restart-crashlooping","incidentKey":"manual-1","plan":{"runbook":"restart-crashlooping","steps":[{"name":"restart","action":"kubernetes.restart","mutating":true}]}}`,
		},
		{
			name: "runbooks",
			call: func(c *Client) error {
				list, err := c.Runbooks(ctx)
				require.Equal(t, []RunbookInfo{{Name: "r", Steps: []string{"a (sleep)"}, Params: map[string]runbooks.Param{"ns": {Required: true}}}}, list)
				return err
			},
			want:   seen{Method: "GET", EscapedPath: "/v1/runbooks"},
			answer: `{"runbooks":[{"name":"r","steps":["a (sleep)"],"params":{"ns":{"required":true}},"futureField":1}]}`,
		},
		{
			name: "runbook",
			call: func(c *Client) error {
				d, err := c.Runbook(ctx, "restart-crashlooping")
				require.Equal(t, "restart-crashlooping", d.Runbook.Name)
				require.Equal(t, "30s", time.Duration(d.Spec.Spec.Steps[0].Timeout).String())
				require.Equal(t, 0.5, *d.Stats.SuccessRate)
				require.Len(t, d.RecentRuns, 1)
				return err
			},
			want: seen{Method: "GET", EscapedPath: "/v1/runbooks/restart-crashlooping"},
			answer: `{"runbook":{"name":"restart-crashlooping","steps":[]},"spec":{"metadata":{"name":"restart-crashlooping"},"spec":{"steps":[{"name":"a","action":"sleep","timeout":"30s"}]}},
				"recentRuns":[{"workflowId":"` + wfID + `","status":"failed"}],"stats":{"runs":2,"succeeded":1,"failed":1,"successRate":0.5}}`,
		},
		{
			name: "runs",
			call: func(c *Client) error {
				list, next, err := c.Runs(ctx, runs.ListFilter{Runbook: "restart-crashlooping", Status: "failed", IncidentKey: "shop/api", Since: since}, 10, "tok")
				require.Len(t, list, 1)
				require.Equal(t, "tok2", next)
				return err
			},
			want:   seen{Method: "GET", EscapedPath: "/v1/runs", Query: "incidentKey=shop%2Fapi&limit=10&pageToken=tok&runbook=restart-crashlooping&since=2025-03-01T12%3A00%3A00Z&status=failed"},
			answer: `{"runs":[{"workflowId":"` + wfID + `"}],"nextPageToken":"tok2"}`,
		},
		{
			name: "run",
			call: func(c *Client) error {
				d, err := c.Run(ctx, wfID, "r1")
				require.Equal(t, "succeeded", d.Run.State)
				require.Equal(t, 2, d.Run.Steps[0].Attempts)
				return err
			},
			want:   seen{Method: "GET", EscapedPath: "/v1/runs/" + escaped, Query: "runId=r1", PathID: wfID},
			answer: `{"workflowId":"` + wfID + `","run":{"state":"succeeded","steps":[{"name":"a","attempts":2}]}}`,
		},
		{
			name: "cancel",
			call: func(c *Client) error {
				res, err := c.Cancel(ctx, wfID, runs.CancelRequest{Reason: "done by hand"})
				require.Equal(t, "cancel_requested", res.Status)
				return err
			},
			want:   seen{Method: "POST", EscapedPath: "/v1/runs/" + escaped + "/cancel", PathID: wfID, Body: map[string]any{"reason": "done by hand"}},
			answer: `{"workflowId":"` + wfID + `","runId":"r1","status":"cancel_requested"}`,
		},
		{
			name: "approvals",
			call: func(c *Client) error {
				list, err := c.Approvals(ctx)
				require.Equal(t, "restart", list[0].Step)
				return err
			},
			want:   seen{Method: "GET", EscapedPath: "/v1/approvals"},
			answer: `{"approvals":[{"workflowId":"` + wfID + `","step":"restart"}]}`,
		},
		{
			name: "approve",
			call: func(c *Client) error {
				res, err := c.Approve(ctx, wfID, runs.DecisionRequest{Reason: "ok", Step: "restart"})
				require.Equal(t, "approved", res.Decision)
				return err
			},
			want:   seen{Method: "POST", EscapedPath: "/v1/runs/" + escaped + "/approve", PathID: wfID, Body: map[string]any{"reason": "ok", "step": "restart"}},
			answer: `{"workflowId":"` + wfID + `","decision":"approved","by":"bob"}`,
		},
		{
			name: "reject",
			call: func(c *Client) error {
				res, err := c.Reject(ctx, wfID, runs.DecisionRequest{Reason: "not now"})
				require.Equal(t, "rejected", res.Decision)
				return err
			},
			want:   seen{Method: "POST", EscapedPath: "/v1/runs/" + escaped + "/reject", PathID: wfID, Body: map[string]any{"reason": "not now"}},
			answer: `{"workflowId":"` + wfID + `","decision":"rejected","by":"bob"}`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, got := fakeAPI(t, http.StatusOK, tc.answer)
			require.NoError(t, tc.call(c))
			require.Len(t, *got, 1)
			tc.want.Auth = "Bearer salve_secret"
			require.Equal(t, tc.want, (*got)[0])
		})
	}
}

func TestNoTokenNoHeader(t *testing.T) {
	var auth []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth = r.Header.Values("Authorization")
		_, _ = io.WriteString(w, `{"approvals":[]}`)
	}))
	defer srv.Close()
	c, err := New(Config{Addr: srv.URL})
	require.NoError(t, err)
	_, err = c.Approvals(context.Background())
	require.NoError(t, err)
	require.Empty(t, auth)
}

func TestBasePath(t *testing.T) {
	var path string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path = r.URL.EscapedPath()
		_, _ = io.WriteString(w, `{}`)
	}))
	defer srv.Close()
	c, err := New(Config{Addr: srv.URL + "/salve api/"})
	require.NoError(t, err)
	_, err = c.Run(context.Background(), wfID, "")
	require.NoError(t, err)
	require.Equal(t, "/salve%20api/v1/runs/salve%2Frestart-crashlooping%2Fshop%2Fapi", path)
}

func TestAPIErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		body   string
		want   string
	}{
		{"forbidden", 403, `{"error":"role viewer cannot launch runs (needs operator)"}`, "403 Forbidden: role viewer cannot launch runs (needs operator)"},
		{"unauthorized with hint", 401, `{"error":"missing bearer token"}`,
			"401 Unauthorized: missing bearer token (set SALVE_TOKEN or --token; create one with: salve token create --role operator --subject NAME)"},
		{"unauthorized, server hints", 401, `{"error":"no API token (create a token with: salve token create --role viewer --subject NAME)"}`,
			"401 Unauthorized: no API token (create a token with: salve token create --role viewer --subject NAME) (set SALVE_TOKEN or --token)"},
		{"conflict", 409, `{"error":"a run for shop/api is running","detail":"salve/restart-crashlooping/shop/api"}`,
			"409 Conflict: a run for shop/api is running (salve/restart-crashlooping/shop/api)"},
		{"detail list", 400, `{"error":"bad params","detail":["replicas: want an int","ns: required"]}`,
			"400 Bad Request: bad params\n  replicas: want an int\n  ns: required"},
		{"detail object", 400, `{"error":"bad params","detail":{"param": "replicas"}}`, `400 Bad Request: bad params {"param":"replicas"}`},
		{"not JSON", 502, "<html>bad gateway</html>", "502 Bad Gateway: <html>bad gateway</html>"},
		{"empty", 503, "", "503 Service Unavailable: no error message"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := fakeAPI(t, tc.status, tc.body)
			_, err := c.Launch(context.Background(), "restart-crashlooping", runs.LaunchRequest{})
			require.EqualError(t, err, tc.want)
			ae, ok := errors.AsType[*APIError](err)
			require.True(t, ok)
			require.Equal(t, tc.status, ae.Status)
			require.Equal(t, tc.status, StatusCode(err))
		})
	}
}

func TestUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := "http://" + ln.Addr().String()
	require.NoError(t, ln.Close())
	c, err := New(Config{Addr: addr})
	require.NoError(t, err)
	_, err = c.Approvals(context.Background())
	ue, ok := errors.AsType[*UnreachableError](err)
	require.True(t, ok, "%T %v", err, err)
	require.Equal(t, addr, ue.Addr)
	require.Contains(t, err.Error(), "cannot reach Salve at "+addr)
	require.Contains(t, err.Error(), "salve dev")
	require.Contains(t, err.Error(), "SALVE_ADDR")
	require.Zero(t, StatusCode(err))
}

func TestNewConfig(t *testing.T) {
	c, err := New(Config{})
	require.NoError(t, err)
	require.Equal(t, DefaultAddr, c.Addr())
	c, err = New(Config{Addr: "salve.internal:8080"})
	require.NoError(t, err)
	require.Equal(t, "http://salve.internal:8080", c.Addr())
	for _, bad := range []string{"ftp://x", "http://", "http://x/?a=b"} {
		_, err = New(Config{Addr: bad})
		require.Error(t, err, bad)
	}
	_, err = New(Config{Token: "a\nb"})
	require.ErrorContains(t, err, "line break")
	_, err = New(Config{CACertFile: filepath.Join(t.TempDir(), "missing.pem")})
	require.ErrorContains(t, err, "read CA certificate")
	notPEM := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(notPEM, []byte("hello"), 0o600))
	_, err = New(Config{CACertFile: notPEM})
	require.ErrorContains(t, err, "no PEM certificates")
	_, err = New(Config{CACertFile: notPEM, HTTP: http.DefaultClient})
	require.ErrorContains(t, err, "not both")
}

func TestTLSWithCACert(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"approvals":[]}`)
	}))
	defer srv.Close()

	c, err := New(Config{Addr: srv.URL})
	require.NoError(t, err)
	_, err = c.Approvals(context.Background())
	require.ErrorContains(t, err, "--cacert")

	ca := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600))
	c, err = New(Config{Addr: srv.URL, CACertFile: ca})
	require.NoError(t, err)
	_, err = c.Approvals(context.Background())
	require.NoError(t, err)
}
