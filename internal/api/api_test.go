package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/internal/api"
	"github.com/salve-sre/salve/internal/audit"
	"github.com/salve-sre/salve/internal/runs"
	"github.com/salve-sre/salve/triggers"
)

type fakeRuns struct{ size int }

func (f *fakeRuns) List(_ context.Context, size int, _ []byte) ([]runs.Summary, []byte, error) {
	f.size = size
	return []runs.Summary{{WorkflowID: "salve/a/b"}}, []byte("next"), nil
}

func (f *fakeRuns) Get(_ context.Context, id, _ string) (runs.Detail, error) {
	if id != "salve/a/b" {
		return runs.Detail{}, runs.ErrNotFound
	}
	return runs.Detail{Summary: runs.Summary{WorkflowID: id}}, nil
}

type fakeAudit struct{ f audit.Filter }

func (a *fakeAudit) Query(_ context.Context, f audit.Filter) ([]audit.Record, error) {
	a.f = f
	return nil, nil
}
func (a *fakeAudit) Verify(context.Context) (audit.VerifyResult, error) {
	return audit.VerifyResult{OK: true}, nil
}
func (a *fakeAudit) Alerts(context.Context, audit.AlertFilter) ([]audit.AlertState, error) {
	return nil, nil
}

func TestAPI(t *testing.T) {
	fr, fa := &fakeRuns{}, &fakeAudit{}
	srv := &api.Server{
		Ingest: http.NotFoundHandler(), Runs: fr, Audit: fa, Runbooks: triggers.StaticRunbooks{},
		Log: slog.New(slog.DiscardHandler), Version: "test",
		Checks: []api.Check{
			{Name: "ok", Check: func(context.Context) error { return nil }},
			{Name: "down", Check: func(context.Context) error { return errors.New("no route") }, Warning: "dev only"},
		},
	}
	h := srv.Handler()
	get := func(path string) (int, map[string]any) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		var body map[string]any
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body), "%s: %s", path, rec.Body.String())
		require.Equal(t, "application/json", rec.Header().Get("Content-Type"))
		return rec.Code, body
	}
	cases := []struct {
		path string
		code int
		has  string
	}{
		{"/healthz", 200, "status"},
		{"/readyz", 503, "checks"},
		{"/v1/runs", 200, "nextPageToken"},
		{"/v1/runs?limit=0", 400, "error"},
		{"/v1/runs?limit=1001", 400, "error"},
		{"/v1/runs?pageToken=!!", 400, "error"},
		{"/v1/runs/salve/a/b", 200, "workflowId"},
		{"/v1/runs/salve/x/y", 404, "error"},
		{"/v1/runbooks", 200, "runbooks"},
		{"/v1/audit?since=nope", 400, "error"},
		{"/v1/audit?after=-1", 400, "error"},
		{"/v1/audit?limit=10001", 400, "error"},
		{"/v1/audit?runbook=r&after=5&limit=7", 200, "events"},
		{"/v1/alerts?since=x", 400, "error"},
		{"/v1/timelines/k?format=pdf", 400, "error"},
		{"/v1/timelines/k", 404, "error"},
		{"/nope", 404, "error"},
	}
	for _, c := range cases {
		code, body := get(c.path)
		require.Equal(t, c.code, code, "%s: %v", c.path, body)
		require.Contains(t, body, c.has, c.path)
	}
	get("/v1/audit?runbook=r&after=5&limit=7")
	require.Equal(t, audit.Filter{Runbook: "r", AfterSeq: 5, Limit: 7}, fa.f)
	get("/v1/runs?limit=3")
	require.Equal(t, 3, fr.size)
	_, body := get("/readyz")
	require.Equal(t, false, body["ready"])
}
