package api_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/internal/api"
	"github.com/salve-sre/salve/internal/audit"
	"github.com/salve-sre/salve/internal/auth"
	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/internal/runbookload"
	"github.com/salve-sre/salve/internal/runs"
)

func init() {
	// The Markdown timeline is text; kin-openapi only knows text/plain.
	openapi3filter.RegisterBodyDecoder("text/markdown", openapi3filter.PlainBodyDecoder)
}

// loadSpec parses and validates openapi.yaml.
func loadSpec(t *testing.T) *openapi3.T {
	t.Helper()
	data, err := os.ReadFile("openapi.yaml")
	require.NoError(t, err)
	doc, err := openapi3.NewLoader().LoadFromData(data)
	require.NoError(t, err, "openapi.yaml does not parse")
	require.NoError(t, doc.Validate(context.Background()), "openapi.yaml is not a valid OpenAPI 3 document")
	return doc
}

func TestOpenAPIValid(t *testing.T) {
	doc := loadSpec(t)
	require.Equal(t, "3.0.3", doc.OpenAPI)
	require.Contains(t, doc.Components.SecuritySchemes, "apiToken")
	require.Contains(t, doc.Components.SecuritySchemes, "webhookToken")
	for _, s := range []string{
		"Summary", "Detail", "Status", "StepStatus", "ApprovalWait", "ApprovalRecord", "AlertRef", "PendingApproval",
		"LaunchRequest", "LaunchResult", "Plan", "PlannedStep", "PlannedApproval", "PlannedCredential", "SafetyCheck",
		"DecisionRequest", "DecisionResult", "CancelRequest", "CancelResult", "RunbookStats", "RunbookItem", "RunbookDetail",
		"AuditEvent", "AuditRecord", "VerifyResult", "Error",
	} {
		require.Contains(t, doc.Components.Schemas, s)
	}
}

// TestOpenAPIMatchesRoutes checks the spec and the route table against each
// other: the same operations, each with the route's role and summary, and
// the security the role implies.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	doc := loadSpec(t)
	srv := newFixture(t).srv
	inRoutes := map[string]api.Route{}
	for _, rt := range srv.Routes() {
		inRoutes[rt.Method+" "+rt.Path] = rt
	}
	inSpec := map[string]*openapi3.Operation{}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			inSpec[method+" "+path] = op
		}
	}
	for _, key := range slices.Sorted(maps.Keys(inRoutes)) {
		rt := inRoutes[key]
		op, ok := inSpec[key]
		if !ok {
			t.Errorf("%s: in Routes() but not in openapi.yaml", key)
			continue
		}
		if got, want := op.Extensions["x-salve-role"], rt.Role.String(); got != want {
			t.Errorf("%s: x-salve-role is %v, Routes() says %q", key, got, want)
		}
		if op.Summary != rt.Summary {
			t.Errorf("%s: summary is %q, Routes() says %q", key, op.Summary, rt.Summary)
		}
		if op.OperationID == "" {
			t.Errorf("%s: no operationId", key)
		}
		switch {
		case rt.Path == "/v1/alertmanager":
			if op.Security == nil || len(*op.Security) != 1 || (*op.Security)[0]["webhookToken"] == nil {
				t.Errorf("%s: security must be the webhook token only", key)
			}
		case rt.Role == auth.RoleNone:
			if op.Security == nil || len(*op.Security) != 0 {
				t.Errorf("%s: a public route needs security: []", key)
			}
		default:
			if op.Security != nil {
				t.Errorf("%s: should inherit the API token security", key)
			}
			if op.Responses.Status(http.StatusUnauthorized) == nil {
				t.Errorf("%s: needs role %s but documents no 401", key, rt.Role)
			}
			if rt.Role > auth.RoleViewer && op.Responses.Status(http.StatusForbidden) == nil {
				t.Errorf("%s: needs role %s but documents no 403", key, rt.Role)
			}
		}
	}
	for _, key := range slices.Sorted(maps.Keys(inSpec)) {
		if _, ok := inRoutes[key]; !ok {
			t.Errorf("%s: in openapi.yaml but not in Routes()", key)
		}
	}
	seen := map[string]string{}
	for key, op := range inSpec {
		if other, dup := seen[op.OperationID]; dup {
			t.Errorf("operationId %q is used by %s and %s", op.OperationID, key, other)
		}
		seen[op.OperationID] = key
	}
}

func TestOpenAPIServed(t *testing.T) {
	fx := newFixture(t)
	rec := fx.do(request{method: http.MethodGet, path: "/v1/openapi.json"})
	require.Equal(t, http.StatusOK, rec.Code)
	require.Equal(t, "application/json", rec.Header().Get("Content-Type"))

	data, err := os.ReadFile("openapi.yaml")
	require.NoError(t, err)
	fromYAML, err := openapi3.NewLoader().LoadFromData(data)
	require.NoError(t, err)
	served, err := openapi3.NewLoader().LoadFromData(rec.Body.Bytes())
	require.NoError(t, err, "the served document does not load")
	want, err := json.Marshal(fromYAML)
	require.NoError(t, err)
	got, err := json.Marshal(served)
	require.NoError(t, err)
	require.JSONEq(t, string(want), string(got), "GET /v1/openapi.json differs from openapi.yaml")

	lib, err := api.OpenAPI()
	require.NoError(t, err)
	require.JSONEq(t, string(lib), rec.Body.String())
}

// strict returns the spec with additionalProperties: false on every object
// schema that lists its properties and leaves additionalProperties open, so
// a response field the spec does not describe (e.g. a misspelt JSON tag)
// fails validation. The published spec stays open so it can grow.
func strict(doc *openapi3.T) {
	seen := map[*openapi3.Schema]bool{}
	no := false
	var walk func(ref *openapi3.SchemaRef)
	walk = func(ref *openapi3.SchemaRef) {
		if ref == nil || ref.Value == nil || seen[ref.Value] {
			return
		}
		s := ref.Value
		seen[s] = true
		if len(s.Properties) > 0 && s.AdditionalProperties.Has == nil && s.AdditionalProperties.Schema == nil {
			s.AdditionalProperties.Has = &no
		}
		for _, p := range s.Properties {
			walk(p)
		}
		walk(s.Items)
		walk(s.AdditionalProperties.Schema)
		for _, l := range []openapi3.SchemaRefs{s.AllOf, s.AnyOf, s.OneOf} {
			for _, x := range l {
				walk(x)
			}
		}
	}
	for _, s := range doc.Components.Schemas {
		walk(s)
	}
}

// apiCase is one request of the response validation test.
type apiCase struct {
	name string
	request
	role   string // viewer, operator, admin, webhook, bad; "" = no token
	code   int
	setup  func(fx *fixture)
	valid  bool   // the request itself is valid: check it against the spec too
	errHas string // for error answers: a piece of the message
}

func TestResponsesMatchSpec(t *testing.T) {
	doc := loadSpec(t)
	strict(doc)
	router, err := gorillamux.NewRouter(doc)
	require.NoError(t, err)

	const (
		running = "/v1/runs/salve%2Frestart-crashlooping%2Fshop%2Fapi"
		done    = "/v1/runs/salve%2Frestart-crashlooping%2Fshop%2Fdone"
		quiet   = "/v1/runs/salve%2Frestart-crashlooping%2Fshop%2Fquiet"
		self    = "/v1/runs/salve%2Frestart-crashlooping%2Fshop%2Fself"
		idle    = "/v1/runs/salve%2Frestart-crashlooping%2Fshop%2Fidle"
		down    = "/v1/runs/salve%2Frestart-crashlooping%2Fshop%2Fdown"
		unknown = "/v1/runs/salve%2Fnope%2Fx"
		launch  = "/v1/runbooks/restart-crashlooping/launch"
	)
	webhook := func(status, labels string) string {
		return `{"version":"4","groupKey":"{}:{alertname=\"KubeDeploymentCrashLooping\"}","truncatedAlerts":0,"status":"` + status + `","receiver":"salve",
			"groupLabels":{"alertname":"KubeDeploymentCrashLooping"},"commonLabels":{},"commonAnnotations":{},"externalURL":"http://am:9093",
			"alerts":[{"status":"` + status + `","labels":` + labels + `,"annotations":{"summary":"crash loop"},
			"startsAt":"2026-11-24T08:59:00Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://prom:9090/graph","fingerprint":"5e1f6f2b7a0c9d3e"}]}`
	}
	goodAlert := webhook("firing", `{"alertname":"KubeDeploymentCrashLooping","namespace":"shop","deployment":"api"}`)
	launchBody := `{"params":{"namespace":"shop","deployment":"api","replicas":"5"},"reason":"pods crash-loop","incidentKey":"shop/api"}`
	big := `{"reason":"` + strings.Repeat("x", 1<<20) + `"}`
	get := func(path string) request { return request{method: http.MethodGet, path: path} }
	post := func(path, body string) request { return request{method: http.MethodPost, path: path, body: body} }
	withHeader := func(r request, k, v string) request { r.header = map[string]string{k: v}; return r }
	plain := func(r request) request { return withHeader(r, "Content-Type", "text/plain") }
	auditDown := func(fx *fixture) { fx.audit.err = io.ErrUnexpectedEOF }
	// Two shadow runs of a runbook in shadow mode: one agreed with a
	// person, one resolved on its own — below the default threshold.
	shadowEvidence := func(fx *fixture) {
		rb := shadowMode(t, fx, "restart-crashlooping")
		for i, verdict := range []string{"agreed", "resolved_on_its_own"} {
			fx.audit.recs = append(fx.audit.recs, audit.Record{Seq: int64(1000 + i), Event: domain.AuditEvent{
				Action: domain.ActionShadowEvidence, Runbook: "restart-crashlooping", RunbookHash: rb.Hash, Outcome: verdict, Time: time.Now().Add(-time.Hour),
				Actor:      domain.Actor{Kind: domain.ActorAlert, Name: "KubeDeploymentCrashLooping"},
				WorkflowID: "salve/restart-crashlooping/shop/api", Detail: map[string]string{"wouldAct": "true", "summary": verdict}}})
		}
	}

	cases := []apiCase{
		// Public.
		{name: "healthz", request: get("/healthz"), code: 200, valid: true},
		{name: "readyz", request: get("/readyz"), code: 200, valid: true},
		{name: "readyz down", request: get("/readyz"), code: 503, valid: true, setup: func(fx *fixture) {
			fx.srv.Checks = append(fx.srv.Checks, api.Check{Name: "audit", Check: func(context.Context) error { return io.ErrUnexpectedEOF }})
		}},
		{name: "openapi.json", request: get("/v1/openapi.json"), code: 200, valid: true},

		// The webhook.
		{name: "webhook", request: post("/v1/alertmanager", goodAlert), role: "webhook", code: 200, valid: true},
		{name: "webhook resolved", request: post("/v1/alertmanager", webhook("resolved", `{"alertname":"X"}`)), role: "webhook", code: 200, valid: true},
		{name: "webhook no token", request: post("/v1/alertmanager", goodAlert), code: 401, errHas: "bearer token"},
		{name: "webhook with an API token", request: post("/v1/alertmanager", goodAlert), role: "admin", code: 401},
		{name: "webhook bad payload", request: post("/v1/alertmanager", `{"version":"3","alerts":[]}`), role: "webhook", code: 400, errHas: "version"},
		{name: "webhook too big", request: post("/v1/alertmanager", `{"version":"4","x":"`+strings.Repeat("x", 65<<10)+`"}`), role: "webhook", code: 413},
		{name: "webhook store down", request: post("/v1/alertmanager", webhook("firing", `{"alertname":"X","salve_test":"unstorable"}`)), role: "webhook", code: 503},

		// Who am I, and authentication.
		{name: "whoami", request: get("/v1/whoami"), role: "operator", code: 200, valid: true},
		{name: "whoami no groups", request: get("/v1/whoami"), role: "viewer", code: 200, valid: true},
		{name: "whoami no token", request: get("/v1/whoami"), code: 401, errHas: "Authorization"},
		{name: "whoami bad token", request: get("/v1/whoami"), role: "bad", code: 401, errHas: "not valid"},
		{name: "whoami no auth configured", request: get("/v1/whoami"), role: "viewer", code: 401, errHas: "auth.tokens",
			setup: func(fx *fixture) { fx.srv.Auth = nil }},

		// Runs.
		{name: "runs", request: get("/v1/runs"), role: "viewer", code: 200, valid: true},
		{name: "runs filtered", request: get("/v1/runs?runbook=restart-crashlooping&status=timed_out&incidentKey=shop%2Fapi&since=2026-11-24T08:00:00Z&limit=1000&pageToken=bmV4dA"),
			role: "viewer", code: 200, valid: true},
		{name: "runs limit 0", request: get("/v1/runs?limit=0"), role: "viewer", code: 400, errHas: "limit"},
		{name: "runs bad since", request: get("/v1/runs?since=yesterday"), role: "viewer", code: 400, errHas: "since"},
		{name: "runs bad token", request: get("/v1/runs?pageToken=!!"), role: "viewer", code: 400, errHas: "pageToken"},
		{name: "runs bad status", request: get("/v1/runs?status=done"), role: "viewer", code: 400, errHas: "status"},
		{name: "runs key without runbook", request: get("/v1/runs?incidentKey=shop%2Fapi"), role: "viewer", code: 400, errHas: "runbook"},
		{name: "runs Temporal down", request: get("/v1/runs?runbook=" + keyDown), role: "viewer", code: 503, errHas: "Temporal"},
		{name: "runs no token", request: get("/v1/runs"), code: 401},

		{name: "run waiting", request: get(running), role: "viewer", code: 200, valid: true},
		{name: "run by run ID", request: get(running + "?runId=" + runRunning), role: "viewer", code: 200, valid: true},
		{name: "run finished", request: get(done), role: "viewer", code: 200, valid: true},
		{name: "run without worker", request: get(quiet), role: "viewer", code: 200, valid: true},
		{name: "run unknown", request: get(unknown), role: "viewer", code: 404},
		{name: "run Temporal down", request: get(down), role: "viewer", code: 503},
		{name: "run no token", request: get(running), code: 401},

		{name: "events", request: get(running + "/events"), role: "viewer", code: 200, valid: true},
		{name: "events resumed", request: withHeader(get(running+"/events"), "Last-Event-ID", "4"), role: "viewer", code: 200, valid: true},
		{name: "events bad after", request: get(running + "/events?after=x"), role: "viewer", code: 400},
		{name: "events unknown run", request: get(unknown + "/events"), role: "viewer", code: 404},
		{name: "events Temporal down", request: get(down + "/events"), role: "viewer", code: 503},
		{name: "events no token", request: get(running + "/events"), code: 401},

		{name: "cancel", request: post(running+"/cancel", `{"reason":"wrong deployment"}`), role: "operator", code: 202, valid: true},
		{name: "cancel no body", request: post(running+"/cancel", ""), role: "admin", code: 202, valid: true},
		{name: "cancel viewer", request: post(running+"/cancel", `{}`), role: "viewer", code: 403, errHas: "needs role operator"},
		{name: "cancel no token", request: post(running+"/cancel", `{}`), code: 401},
		{name: "cancel unknown field", request: post(running+"/cancel", `{"why":"x"}`), role: "operator", code: 400, errHas: `"why"`},
		{name: "cancel not JSON", request: plain(post(running+"/cancel", `reason=x`)), role: "operator", code: 415},
		{name: "cancel too big", request: post(running+"/cancel", big), role: "operator", code: 413},
		{name: "cancel unknown", request: post(unknown+"/cancel", `{}`), role: "operator", code: 404},
		{name: "cancel finished", request: post(done+"/cancel", `{}`), role: "operator", code: 409, errHas: "already ended"},
		{name: "cancel Temporal down", request: post(down+"/cancel", `{}`), role: "operator", code: 503},

		{name: "approve", request: post(running+"/approve", `{"reason":"dashboards look fine","step":"restart"}`), role: "operator", code: 200, valid: true},
		{name: "reject", request: post(running+"/reject", `{"reason":"wrong cluster"}`), role: "admin", code: 200, valid: true},
		{name: "approve no reason", request: post(running+"/approve", `{}`), role: "operator", code: 400, errHas: "reason"},
		{name: "approve blank reason", request: post(running+"/approve", `{"reason":"  "}`), role: "operator", code: 400},
		{name: "approve unknown field", request: post(running+"/approve", `{"reason":"x","approve":true}`), role: "operator", code: 400, errHas: `"approve"`},
		{name: "approve not JSON", request: plain(post(running+"/approve", `reason`)), role: "operator", code: 415},
		{name: "approve too big", request: post(running+"/approve", big), role: "operator", code: 413},
		{name: "approve viewer", request: post(running+"/approve", `{"reason":"x"}`), role: "viewer", code: 403},
		{name: "approve no token", request: post(running+"/approve", `{"reason":"x"}`), code: 401},
		{name: "approve self", request: post(self+"/approve", `{"reason":"x"}`), role: "operator", code: 403, errHas: "allowSelfApproval"},
		{name: "approve not waiting", request: post(idle+"/approve", `{"reason":"x"}`), role: "operator", code: 409},
		{name: "reject finished", request: post(done+"/reject", `{"reason":"x"}`), role: "operator", code: 409},
		{name: "approve unknown", request: post(unknown+"/approve", `{"reason":"x"}`), role: "operator", code: 404},
		{name: "approve Temporal down", request: post(down+"/approve", `{"reason":"x"}`), role: "operator", code: 503},

		{name: "approvals", request: get("/v1/approvals"), role: "viewer", code: 200, valid: true},
		{name: "approvals Temporal down", request: get("/v1/approvals"), role: "viewer", code: 503,
			setup: func(fx *fixture) { fx.runs.pendingErr = errTemporal }},
		{name: "approvals no token", request: get("/v1/approvals"), code: 401},

		// Runbooks.
		{name: "runbooks", request: get("/v1/runbooks"), role: "viewer", code: 200, valid: true},
		{name: "runbooks no token", request: get("/v1/runbooks"), code: 401},
		{name: "runbook", request: get("/v1/runbooks/restart-crashlooping"), role: "viewer", code: 200, valid: true},
		{name: "runbook small", request: get("/v1/runbooks/failover-db"), role: "viewer", code: 200, valid: true},
		{name: "runbook without stats", request: get("/v1/runbooks/restart-crashlooping"), role: "viewer", code: 200, valid: true,
			setup: func(fx *fixture) { fx.runs.statsErr = errTemporal }},
		{name: "runbook unknown", request: get("/v1/runbooks/nope"), role: "viewer", code: 404, errHas: "restart-crashlooping"},
		{name: "runbook no token", request: get("/v1/runbooks/nope"), code: 401},

		{name: "reload", request: post("/v1/runbooks/reload", ""), role: "admin", code: 200, valid: true},
		{name: "reload nothing changed", request: post("/v1/runbooks/reload", ""), role: "admin", code: 200, valid: true,
			setup: func(fx *fixture) {
				fx.srv.Reload = func(context.Context) (runbookload.Change, error) { return runbookload.Change{}, nil }
			}},
		{name: "reload operator", request: post("/v1/runbooks/reload", ""), role: "operator", code: 403, errHas: "needs role admin"},
		{name: "reload no token", request: post("/v1/runbooks/reload", ""), code: 401},
		{name: "reload unavailable", request: post("/v1/runbooks/reload", ""), role: "admin", code: 501,
			setup: func(fx *fixture) { fx.srv.Reload = nil }},
		{name: "reload fails", request: post("/v1/runbooks/reload", ""), role: "admin", code: 500,
			setup: func(fx *fixture) {
				fx.srv.Reload = func(context.Context) (runbookload.Change, error) { return runbookload.Change{}, io.ErrUnexpectedEOF }
			}},

		{name: "launch", request: withHeader(post(launch, launchBody), "Idempotency-Key", "req-1"), role: "operator", code: 202, valid: true},
		{name: "launch default key", request: post(launch, `{"params":{"namespace":"shop","deployment":"api"}}`), role: "operator", code: 202, valid: true},
		{name: "launch dry run", request: post(launch, `{"params":{"namespace":"shop","deployment":"api","env":"production"},"dryRun":true}`), role: "operator", code: 200, valid: true},
		{name: "launch dry run, dry-run mode", request: post("/v1/runbooks/failover-db/launch", `{"dryRun":true}`), role: "admin", code: 200, valid: true},
		{name: "launch viewer", request: post(launch, launchBody), role: "viewer", code: 403},
		{name: "launch no token", request: post(launch, launchBody), code: 401},
		{name: "launch not a launcher", request: post("/v1/runbooks/failover-db/launch", `{}`), role: "operator", code: 403, errHas: "access.launchers"},
		{name: "launch unknown runbook", request: post("/v1/runbooks/nope/launch", `{}`), role: "operator", code: 404},
		{name: "launch missing param", request: post(launch, `{}`), role: "operator", code: 400, errHas: "namespace"},
		{name: "launch bad param", request: post(launch, `{"params":{"namespace":"shop","deployment":"api","replicas":"99"}}`), role: "operator", code: 400, errHas: "replicas"},
		{name: "launch unknown param", request: post(launch, `{"params":{"namespace":"shop","deployment":"api","color":"red"}}`), role: "operator", code: 400, errHas: "color"},
		{name: "launch unknown field", request: post(launch, `{"dry_run":true}`), role: "operator", code: 400, errHas: `"dry_run"`},
		{name: "launch not JSON", request: plain(post(launch, `dryRun=true`)), role: "operator", code: 415},
		{name: "launch trailing data", request: post(launch, `{} {}`), role: "operator", code: 400, errHas: "trailing"},
		{name: "launch bad key", request: post(launch, `{"incidentKey":" spaced "}`), role: "operator", code: 400, errHas: "incidentKey"},
		{name: "launch bad reason", request: post(launch, `{"reason":"a\u0007b"}`), role: "operator", code: 400, errHas: "reason"},
		{name: "launch long idempotency key", request: withHeader(post(launch, launchBody), "Idempotency-Key", strings.Repeat("k", 201)), role: "operator", code: 400, errHas: "Idempotency-Key"},
		{name: "launch too big", request: post(launch, big), role: "operator", code: 413},
		{name: "launch conflict", request: post(launch, `{"params":{"namespace":"shop","deployment":"api"},"incidentKey":"busy"}`), role: "operator", code: 409, errHas: "already running"},
		{name: "launch Temporal down", request: post(launch, `{"params":{"namespace":"shop","deployment":"api"},"incidentKey":"down"}`), role: "operator", code: 503},

		// The audit log.
		{name: "audit", request: get("/v1/audit"), role: "viewer", code: 200, valid: true},
		{name: "audit page", request: get("/v1/audit?workflowId=salve%2Frestart-crashlooping%2Fshop%2Fapi&runbook=restart-crashlooping&action=step.succeeded&since=8760h&after=1&limit=1"),
			role: "viewer", code: 200, valid: true},
		{name: "audit none", request: get("/v1/audit?incidentKey=other&since=2026-01-01T00:00:00Z"), role: "viewer", code: 200, valid: true},
		{name: "audit bad since", request: get("/v1/audit?since=nope"), role: "viewer", code: 400},
		{name: "audit bad after", request: get("/v1/audit?after=-1"), role: "viewer", code: 400},
		{name: "audit bad limit", request: get("/v1/audit?limit=10001"), role: "viewer", code: 400},
		{name: "audit store down", request: get("/v1/audit"), role: "viewer", code: 503, setup: auditDown},
		{name: "audit no token", request: get("/v1/audit"), code: 401},

		{name: "verify", request: get("/v1/audit/verify"), role: "viewer", code: 200, valid: true},
		{name: "verify broken", request: get("/v1/audit/verify"), role: "viewer", code: 200, valid: true,
			setup: func(fx *fixture) { fx.audit.broken = true }},
		{name: "verify store down", request: get("/v1/audit/verify"), role: "viewer", code: 503, setup: auditDown},
		{name: "verify no token", request: get("/v1/audit/verify"), code: 401},

		{name: "timeline", request: get("/v1/timelines/shop%2Fapi"), role: "viewer", code: 200, valid: true},
		{name: "timeline of a run", request: get("/v1/timelines/salve%2Frestart-crashlooping%2Fshop%2Fapi?format=json"), role: "viewer", code: 200, valid: true},
		{name: "timeline markdown", request: get("/v1/timelines/shop%2Fapi?format=markdown"), role: "viewer", code: 200, valid: true},
		{name: "timeline bad format", request: get("/v1/timelines/shop%2Fapi?format=pdf"), role: "viewer", code: 400},
		{name: "timeline unknown", request: get("/v1/timelines/nope"), role: "viewer", code: 404},
		{name: "timeline store down", request: get("/v1/timelines/shop%2Fapi"), role: "viewer", code: 503, setup: auditDown},
		{name: "timeline no token", request: get("/v1/timelines/shop%2Fapi"), code: 401},

		{name: "alerts", request: get("/v1/alerts?since=24h&alertname=HighErrorRate&limit=10"), role: "viewer", code: 200, valid: true},
		{name: "alerts all", request: get("/v1/alerts"), role: "viewer", code: 200, valid: true},
		{name: "alerts bad since", request: get("/v1/alerts?since=yesterday"), role: "viewer", code: 400},
		{name: "alerts bad limit", request: get("/v1/alerts?limit=x"), role: "viewer", code: 400},
		{name: "alerts store down", request: get("/v1/alerts"), role: "viewer", code: 503, setup: auditDown},
		{name: "slos", request: get("/v1/slos"), role: "viewer", code: 200, valid: true, setup: func(fx *fixture) { withSLOs(t, fx, true) }},
		{name: "slos without Prometheus", request: get("/v1/slos"), role: "viewer", code: 200, valid: true, setup: func(fx *fixture) { withSLOs(t, fx, false) }},
		{name: "slos none loaded", request: get("/v1/slos"), role: "viewer", code: 200, valid: true},
		{name: "slos no token", request: get("/v1/slos"), code: 401},
		{name: "slo", request: get("/v1/slos/checkout-availability"), role: "viewer", code: 200, valid: true, setup: func(fx *fixture) { withSLOs(t, fx, true) }},
		{name: "slo since", request: get("/v1/slos/checkout-availability?since=7d"), role: "viewer", code: 200, valid: true, setup: func(fx *fixture) { withSLOs(t, fx, true) }},
		{name: "slo without Prometheus", request: get("/v1/slos/checkout-availability"), role: "viewer", code: 200, valid: true, setup: func(fx *fixture) { withSLOs(t, fx, false) }},
		{name: "slo bad since", request: get("/v1/slos/checkout-availability?since=lately"), role: "viewer", code: 400, errHas: "since", setup: func(fx *fixture) { withSLOs(t, fx, true) }},
		{name: "slo unknown", request: get("/v1/slos/nope"), role: "viewer", code: 404, errHas: "checkout-availability", setup: func(fx *fixture) { withSLOs(t, fx, true) }},
		{name: "slo store down", request: get("/v1/slos/checkout-availability"), role: "viewer", code: 503, errHas: "audit store",
			setup: func(fx *fixture) { withSLOs(t, fx, true); auditDown(fx) }},
		{name: "slo no token", request: get("/v1/slos/checkout-availability"), code: 401},
		{name: "stats", request: get("/v1/stats?since=30d"), role: "viewer", code: 200},
		{name: "failed alerts", request: get("/v1/failed-alerts"), role: "viewer", code: 200},
		{name: "retry failed alert", request: post("/v1/failed-alerts/f1/retry", `{"reason":"fixed the key template"}`), role: "operator", code: 202},
		{name: "retry failed alert by viewer", request: post("/v1/failed-alerts/f1/retry", `{}`), role: "viewer", code: 403},
		{name: "retry unknown failed alert", request: post("/v1/failed-alerts/nope/retry", `{}`), role: "operator", code: 404},
		{name: "breaker reset", request: post("/v1/runbooks/restart-crashlooping/breaker/reset", `{"reason":"fixed the flaky probe"}`), role: "admin", code: 200},
		{name: "breaker reset no reason", request: post("/v1/runbooks/restart-crashlooping/breaker/reset", `{}`), role: "admin", code: 400},
		{name: "breaker reset by operator", request: post("/v1/runbooks/restart-crashlooping/breaker/reset", `{"reason":"x"}`), role: "operator", code: 403},
		{name: "breaker reset unknown runbook", request: post("/v1/runbooks/nope/breaker/reset", `{"reason":"x"}`), role: "admin", code: 404},
		{name: "evidence", request: get("/v1/runbooks/restart-crashlooping/evidence"), role: "viewer", code: 200, setup: shadowEvidence},
		{name: "evidence with a backtest", request: get("/v1/runbooks/restart-crashlooping/evidence?backtest=7d"), role: "viewer", code: 200, valid: true},
		{name: "evidence bad backtest window", request: get("/v1/runbooks/restart-crashlooping/evidence?backtest=lately"), role: "viewer", code: 400},
		{name: "evidence unknown runbook", request: get("/v1/runbooks/nope/evidence"), role: "viewer", code: 404},
		{name: "evidence store down", request: get("/v1/runbooks/restart-crashlooping/evidence"), role: "viewer", code: 503, setup: auditDown},
		{name: "promote below threshold", request: post("/v1/runbooks/restart-crashlooping/promote", `{"to":"approve"}`), role: "admin", code: 409, valid: true, setup: shadowEvidence},
		{name: "promote with override", request: post("/v1/runbooks/restart-crashlooping/promote", `{"to":"approve","override":true,"reason":"reviewed by the SRE lead"}`), role: "admin", code: 200, valid: true, setup: shadowEvidence},
		{name: "promote override without reason", request: post("/v1/runbooks/restart-crashlooping/promote", `{"to":"approve","override":true}`), role: "admin", code: 400},
		{name: "promote to a bad rung", request: post("/v1/runbooks/restart-crashlooping/promote", `{"to":"yolo"}`), role: "admin", code: 400},
		{name: "promote by operator", request: post("/v1/runbooks/restart-crashlooping/promote", `{"to":"approve"}`), role: "operator", code: 403},
		{name: "promote with the audit stream down", request: post("/v1/runbooks/restart-crashlooping/promote", `{"to":"approve","override":true,"reason":"x"}`), role: "admin", code: 503,
			setup: func(fx *fixture) { shadowEvidence(fx); fx.recorder.err = io.ErrUnexpectedEOF }},
		{name: "promote store down", request: post("/v1/runbooks/restart-crashlooping/promote", `{"to":"approve"}`), role: "admin", code: 503, setup: auditDown},
		{name: "stats window", request: get("/v1/stats?since=2026-11-01T00:00:00Z&until=2026-11-24T00:00:00Z"), role: "viewer", code: 200},
		{name: "stats bad since", request: get("/v1/stats?since=lately"), role: "viewer", code: 400},
		{name: "stats store down", request: get("/v1/stats"), role: "viewer", code: 503, setup: auditDown},
		{name: "metrics", request: get("/metrics"), code: 200},
		{name: "alerts no token", request: get("/v1/alerts"), code: 401},
	}

	covered := map[string]bool{}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fx := newFixture(t)
			if c.setup != nil {
				c.setup(fx)
			}
			c.token = map[string]string{"viewer": fx.tok.viewer, "operator": fx.tok.operator, "admin": fx.tok.admin,
				"webhook": fx.tok.webhook, "bad": "salve_" + strings.Repeat("A", 43)}[c.role]

			ctx := context.Background()
			req := c.build()
			route, params, err := router.FindRoute(req)
			require.NoError(t, err, "no operation in the spec for %s %s", req.Method, req.URL.EscapedPath())
			in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
				Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true}}
			if c.valid {
				require.NoError(t, openapi3filter.ValidateRequest(ctx, in), "the test's request does not match the spec")
				// ValidateRequest read the body: send a fresh request.
				req = c.build()
				in.Request = req
			}

			rec := httptest.NewRecorder()
			fx.srv.Handler().ServeHTTP(rec, req)
			require.Equal(t, c.code, rec.Code, rec.Body.String())
			covered[route.Method+" "+route.Path+" "+http.StatusText(rec.Code)] = true

			sse := strings.HasPrefix(rec.Header().Get("Content-Type"), "text/event-stream")
			err = openapi3filter.ValidateResponse(ctx, &openapi3filter.ResponseValidationInput{
				RequestValidationInput: in,
				Status:                 rec.Code,
				Header:                 rec.Header(),
				Body:                   io.NopCloser(bytes.NewReader(rec.Body.Bytes())),
				Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true, ExcludeResponseBody: sse},
			})
			require.NoError(t, err, "response does not match the spec:\n%s", rec.Body.String())

			switch {
			case sse:
				checkEventStream(t, doc, rec.Body.Bytes())
			case rec.Code >= 400 && c.errHas != "":
				var body struct{ Error string }
				require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
				require.Contains(t, body.Error, c.errHas)
			}
		})
	}

	// Every operation was answered with success at least once.
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			ok := false
			for k := range covered {
				if strings.HasPrefix(k, method+" "+path+" ") && (strings.HasSuffix(k, " OK") || strings.HasSuffix(k, " Accepted")) {
					ok = true
				}
			}
			if !ok {
				t.Errorf("%s %s: no successful call was validated", method, path)
			}
		}
	}
}

// checkEventStream checks a finished SSE stream: each event has an id,
// a name and one data line; data is an AuditEvent, and the last event is
// "end" with the run's Detail.
func checkEventStream(t *testing.T, doc *openapi3.T, body []byte) {
	t.Helper()
	events := parseSSE(t, body)
	require.NotEmpty(t, events)
	last := events[len(events)-1]
	require.Equal(t, "end", last.event, "the stream must end with an end event")
	for _, ev := range events {
		require.NotEmpty(t, ev.id, "event without id")
		schema := "AuditEvent"
		if ev.event == "end" {
			schema = "Detail"
		}
		var v any
		require.NoError(t, json.Unmarshal([]byte(ev.data), &v), ev.data)
		require.NoError(t, doc.Components.Schemas[schema].Value.VisitJSON(v, openapi3.MultiErrors()), "%s event data is not a %s: %s", ev.event, schema, ev.data)
		if schema == "AuditEvent" {
			var ae domain.AuditEvent
			require.NoError(t, json.Unmarshal([]byte(ev.data), &ae))
			require.Equal(t, ev.event, ae.Action, "event name is the audit action")
		}
	}
}

type sseEvent struct{ id, event, data string }

// parseSSE reads a text/event-stream body; comments and retry are skipped.
func parseSSE(t *testing.T, body []byte) []sseEvent {
	t.Helper()
	var out []sseEvent
	var cur sseEvent
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if cur != (sseEvent{}) {
				out = append(out, cur)
			}
			cur = sseEvent{}
		case strings.HasPrefix(line, ":"), strings.HasPrefix(line, "retry: "):
		case strings.HasPrefix(line, "id: "):
			cur.id = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "event: "):
			cur.event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			require.Empty(t, cur.data, "one data line per event")
			cur.data = strings.TrimPrefix(line, "data: ")
		default:
			t.Fatalf("unexpected SSE line %q", line)
		}
	}
	require.NoError(t, sc.Err())
	require.Equal(t, sseEvent{}, cur, "the stream ends mid-event")
	return out
}

func TestRunEventsStream(t *testing.T) {
	fx := newFixture(t)
	rec := fx.do(request{method: http.MethodGet, path: "/v1/runs/salve%2Frestart-crashlooping%2Fshop%2Fapi/events", token: fx.tok.viewer})
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	require.Equal(t, "text/event-stream", rec.Header().Get("Content-Type"))
	require.Equal(t, "no-cache", rec.Header().Get("Cache-Control"))
	require.True(t, strings.HasPrefix(rec.Body.String(), "retry: 2000\n\n"))
	body := rec.Body.String()
	require.Contains(t, body, "id: 3\nevent: run.started\ndata: {")
	require.Contains(t, body, "id: 4\nevent: step.succeeded\ndata: {")

	evs := parseSSE(t, rec.Body.Bytes())
	var got []string
	for _, ev := range evs {
		got = append(got, ev.id+" "+ev.event)
	}
	// Seq 1 is an alert (no workflow), 5 belongs to an earlier run.
	require.Equal(t, []string{"2 trigger.matched", "3 run.started", "4 step.succeeded", "6 run.finished", "6 end"}, got)
	var final runs.Detail
	require.NoError(t, json.Unmarshal([]byte(evs[len(evs)-1].data), &final))
	require.Equal(t, wfRunning, final.WorkflowID)
	require.NotNil(t, final.Run)

	// A reconnecting client misses nothing and gets nothing twice.
	for _, r := range []request{
		{method: http.MethodGet, path: "/v1/runs/salve%2Frestart-crashlooping%2Fshop%2Fapi/events", token: fx.tok.viewer, header: map[string]string{"Last-Event-ID": "3"}},
		{method: http.MethodGet, path: "/v1/runs/salve%2Frestart-crashlooping%2Fshop%2Fapi/events?after=3", token: fx.tok.viewer},
	} {
		rec := fx.do(r)
		require.Equal(t, http.StatusOK, rec.Code)
		got = got[:0]
		for _, ev := range parseSSE(t, rec.Body.Bytes()) {
			got = append(got, ev.id+" "+ev.event)
		}
		require.Equal(t, []string{"4 step.succeeded", "6 run.finished", "6 end"}, got)
	}
}

// One caller cannot hold more than MaxStreams event streams open: each
// polls the audit store for as long as it lives. Closing one frees its
// place.
func TestEventStreamsPerCallerAreCapped(t *testing.T) {
	fx := newFixture(t)
	fx.srv.MaxStreams = 2
	ts := httptest.NewServer(fx.srv.Handler())
	t.Cleanup(ts.Close)
	open := func(tok string) (*http.Response, context.CancelFunc) {
		ctx, cancel := context.WithCancel(context.Background())
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, ts.URL+"/v1/runs/"+url.PathEscape(wfNoWorker)+"/events", nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		return resp, cancel
	}
	r1, c1 := open(fx.tok.viewer)
	defer c1()
	r2, c2 := open(fx.tok.viewer)
	defer c2()
	require.Equal(t, http.StatusOK, r1.StatusCode)
	require.Equal(t, http.StatusOK, r2.StatusCode)
	r3, c3 := open(fx.tok.viewer)
	body, _ := io.ReadAll(r3.Body)
	c3()
	require.Equal(t, http.StatusTooManyRequests, r3.StatusCode)
	require.Contains(t, string(body), "val already holds 2 open event streams")
	require.NotEmpty(t, r3.Header.Get("Retry-After"))

	// Another caller is not affected.
	r4, c4 := open(fx.tok.operator)
	defer c4()
	require.Equal(t, http.StatusOK, r4.StatusCode)

	c1()
	_ = r1.Body.Close()
	require.Eventually(t, func() bool {
		r, c := open(fx.tok.viewer)
		defer c()
		return r.StatusCode == http.StatusOK
	}, 5*time.Second, 20*time.Millisecond, "a closed stream frees its place")
}
