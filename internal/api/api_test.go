package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/internal/api"
	"github.com/salve-sre/salve/internal/audit"
	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/internal/runs"
	"github.com/salve-sre/salve/triggers"
)

func TestAPI(t *testing.T) {
	fx := newFixture(t)
	fx.srv.Runbooks = triggers.StaticRunbooks{}
	fx.srv.Checks = []api.Check{
		{Name: "ok", Check: func(context.Context) error { return nil }},
		{Name: "down", Check: func(context.Context) error { return errors.New("no route") }, Warning: "dev only"},
	}
	get := func(path, token string) (int, map[string]any) {
		t.Helper()
		rec := fx.do(request{method: http.MethodGet, path: path, token: token})
		var body map[string]any
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body), "%s: %s", path, rec.Body.String())
		require.Equal(t, "application/json", rec.Header().Get("Content-Type"), path)
		return rec.Code, body
	}
	cases := []struct {
		path string
		code int
		has  string
	}{
		{"/healthz", 200, "status"},
		{"/readyz", 503, "checks"},
		{"/readyz?check=ok", 200, "checks"}, // readiness of the named checks only
		{"/readyz?check=ok,down", 503, "checks"},
		{"/readyz?check=nope", 400, "error"},
		{"/v1/runs", 200, "nextPageToken"},
		{"/v1/runs?limit=0", 400, "error"},
		{"/v1/runs?limit=1001", 400, "error"},
		{"/v1/runs?pageToken=!!", 400, "error"},
		{"/v1/runs/" + wfRunning, 200, "workflowId"}, // unescaped slashes work for GET
		{"/v1/runs/salve%2Frestart-crashlooping%2Fshop%2Fapi", 200, "workflowId"},
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
		code, body := get(c.path, fx.tok.viewer)
		require.Equal(t, c.code, code, "%s: %v", c.path, body)
		require.Contains(t, body, c.has, c.path)
	}
	get("/v1/audit?runbook=r&after=5&limit=7", fx.tok.viewer)
	require.Equal(t, audit.Filter{Runbook: "r", AfterSeq: 5, Limit: 7}, fx.audit.lastFilter())
	get("/v1/runs?limit=3", fx.tok.viewer)
	require.Equal(t, 3, fx.runs.size)
	_, body := get("/readyz", "")
	require.Equal(t, false, body["ready"])

	// A run ID path that forgot to escape its slashes gets a hint.
	code, body := get("/v1/runs/salve/restart-crashlooping/shop/gone/events", fx.tok.viewer)
	require.Equal(t, http.StatusNotFound, code)
	require.Contains(t, body["error"], "/v1/runs/salve%2Frestart-crashlooping%2Fshop%2Fgone/events")

	// The list filter reaches the run service.
	get("/v1/runs?runbook=restart-crashlooping&status=failed&incidentKey=shop%2Fapi&pageToken=bmV4dA", fx.tok.viewer)
	require.Equal(t, runs.ListFilter{Runbook: "restart-crashlooping", Status: "failed", IncidentKey: "shop/api"}, fx.runs.filter)
	require.Equal(t, []byte("next"), fx.runs.token)
}

// TestAPINeedsToken: every route with a role answers 401 without a token,
// says to send the Authorization header, and audits the refusal; public
// routes answer without one.
func TestAPINeedsToken(t *testing.T) {
	fx := newFixture(t)
	for _, rt := range fx.srv.Routes() {
		path := rt.Path
		for _, p := range [][2]string{{"{id}", "salve%2Frestart-crashlooping%2Fshop%2Fapi"}, {"{name}", "restart-crashlooping"}, {"{key}", "shop%2Fapi"}} {
			path = strings.Replace(path, p[0], p[1], 1)
		}
		rec := fx.do(request{method: rt.Method, path: path})
		if rt.Path == "/v1/alertmanager" {
			require.Equal(t, http.StatusUnauthorized, rec.Code, "the webhook needs its token")
			continue
		}
		if rt.Role.String() == "none" {
			require.Less(t, rec.Code, 400, "%s %s is public", rt.Method, rt.Path)
			continue
		}
		require.Equal(t, http.StatusUnauthorized, rec.Code, "%s %s", rt.Method, rt.Path)
		require.Equal(t, `Bearer realm="salve"`, rec.Header().Get("WWW-Authenticate"))
		var body struct{ Error string }
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
		require.Contains(t, body.Error, "Authorization", "%s %s", rt.Method, rt.Path)
	}
	denied := fx.recorder.events(domain.ActionAuthDenied)
	require.NotEmpty(t, denied)
	for _, ev := range denied {
		require.Equal(t, domain.Actor{Kind: domain.ActorUser, Name: "anonymous"}, ev.Actor)
		require.Equal(t, "401", ev.Outcome)
	}
}
