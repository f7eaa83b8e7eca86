package api_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/internal/runs"
)

const (
	launchPath  = "/v1/runbooks/restart-crashlooping/launch"
	approvePath = "/v1/runs/salve%2Frestart-crashlooping%2Fshop%2Fapi/approve"
)

// errorOf decodes a JSON error answer.
func errorOf(t *testing.T, rec *httptest.ResponseRecorder) string {
	t.Helper()
	require.Equal(t, "application/json", rec.Header().Get("Content-Type"))
	var body struct {
		Error string `json:"error"`
	}
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body), rec.Body.String())
	require.NotEmpty(t, body.Error)
	return body.Error
}

func TestLaunchUnknownFieldNamesIt(t *testing.T) {
	fx := newFixture(t)
	rec := fx.do(request{method: http.MethodPost, path: launchPath, token: fx.tok.operator,
		body: `{"params":{"namespace":"shop","deployment":"api"},"dry_run":true}`})
	require.Equal(t, http.StatusBadRequest, rec.Code)
	require.Contains(t, errorOf(t, rec), `unknown field "dry_run"`)
	require.Empty(t, fx.runs.launchCalls(), "a misspelt dryRun must not launch")
}

func TestBodyOverOneMiB(t *testing.T) {
	fx := newFixture(t)
	huge := `{"reason":"` + strings.Repeat("x", 1<<20) + `"}`
	for _, path := range []string{launchPath, approvePath, "/v1/runs/salve%2Frestart-crashlooping%2Fshop%2Fapi/cancel"} {
		rec := fx.do(request{method: http.MethodPost, path: path, token: fx.tok.operator, body: huge})
		require.Equal(t, http.StatusRequestEntityTooLarge, rec.Code, path)
		require.Contains(t, errorOf(t, rec), "1048576 bytes", path)
	}
	require.Empty(t, fx.runs.launchCalls())
	require.Empty(t, fx.runs.decisionCalls())
	require.Empty(t, fx.runs.cancels)

	// Exactly 1 MiB is still read (and refused for its content, not size).
	exact := `{"reason":"` + strings.Repeat("x", 1<<20-len(`{"reason":""}`)) + `"}`
	require.Len(t, exact, 1<<20)
	rec := fx.do(request{method: http.MethodPost, path: launchPath, token: fx.tok.operator, body: exact})
	require.Equal(t, http.StatusBadRequest, rec.Code)
	require.Contains(t, errorOf(t, rec), "reason")
}

func TestLaunchRefusedByRunbookAccess(t *testing.T) {
	fx := newFixture(t)
	rec := fx.do(request{method: http.MethodPost, path: "/v1/runbooks/failover-db/launch", token: fx.tok.operator, body: `{"reason":"failover"}`})
	require.Equal(t, http.StatusForbidden, rec.Code)
	msg := errorOf(t, rec)
	require.Contains(t, msg, "olga may not launch runbook failover-db")
	require.Contains(t, msg, "access.launchers: ada, group:db-admins")
	require.Empty(t, fx.runs.launchCalls())

	denied := fx.recorder.events(domain.ActionAuthDenied)
	require.Len(t, denied, 1)
	ev := denied[0]
	require.Equal(t, domain.Actor{Kind: domain.ActorUser, Name: "olga"}, ev.Actor)
	require.Equal(t, "403", ev.Outcome)
	require.Equal(t, msg, ev.Error)
	require.Equal(t, "POST", ev.Detail["method"])
	require.Equal(t, "/v1/runbooks/failover-db/launch", ev.Detail["path"])
	require.True(t, strings.HasPrefix(ev.ID, "api/auth.denied/"), ev.ID)
	require.False(t, ev.Time.IsZero())

	// The admin is a listed launcher.
	rec = fx.do(request{method: http.MethodPost, path: "/v1/runbooks/failover-db/launch", token: fx.tok.admin, body: `{}`})
	require.Equal(t, http.StatusAccepted, rec.Code, rec.Body.String())
}

func TestLaunchDryRunStartsNothing(t *testing.T) {
	fx := newFixture(t)
	rec := fx.do(request{method: http.MethodPost, path: launchPath, token: fx.tok.operator,
		body: `{"params":{"namespace":"shop","deployment":"api","replicas":"5"},"dryRun":true,"reason":"what would it do?","incidentKey":"shop/api"}`})
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	require.Empty(t, fx.runs.launchCalls(), "a dry run must not call Launch")

	var res runs.LaunchResult
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &res))
	require.Empty(t, res.WorkflowID)
	require.Empty(t, res.RunID)
	require.Empty(t, res.URL)
	require.Equal(t, "restart-crashlooping", res.Runbook)
	require.Equal(t, "shop/api", res.IncidentKey)
	p := res.Plan
	require.NotNil(t, p)
	require.Equal(t, "enforce", p.Mode)
	require.Equal(t, "5", p.Params["replicas"])
	require.Equal(t, "staging", p.Params["env"], "defaults are resolved")
	var steps []string
	for _, s := range p.Steps {
		steps = append(steps, s.Name)
	}
	require.Equal(t, []string{"before", "restart", "verify"}, steps)
	require.Equal(t, "shop", p.Steps[1].With["namespace"])
	require.True(t, p.Steps[1].Mutating)
	require.True(t, p.Steps[1].Approval)
	require.Len(t, p.Approvals, 2, "the run's and the restart step's")
	require.Len(t, p.Credentials, 1)
	require.Equal(t, "salve-shop", p.Credentials[0].Role)
	require.Len(t, p.OnFailure, 1)

	planned := fx.recorder.events(domain.ActionRunPlanned)
	require.Len(t, planned, 1)
	require.Equal(t, "dry-run", planned[0].Outcome)
	require.Equal(t, "olga", planned[0].Actor.Name)
	require.Equal(t, "5", planned[0].Detail["param.replicas"])
	require.Empty(t, fx.recorder.events(domain.ActionRunLaunched))
}

func TestLaunchStartsRun(t *testing.T) {
	fx := newFixture(t)
	rec := fx.do(request{method: http.MethodPost, path: launchPath, token: fx.tok.operator, header: map[string]string{"Idempotency-Key": "req-42"},
		body: `{"params":{"namespace":"shop","deployment":"api"},"reason":"crash loop","incidentKey":"shop/api"}`})
	require.Equal(t, http.StatusAccepted, rec.Code, rec.Body.String())
	var res runs.LaunchResult
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &res))
	require.Equal(t, wfRunning, res.WorkflowID)
	require.Equal(t, "https://salve.example.com/v1/runs/salve%2Frestart-crashlooping%2Fshop%2Fapi", res.URL)
	require.Nil(t, res.Plan)

	calls := fx.runs.launchCalls()
	require.Len(t, calls, 1)
	require.Equal(t, launchCall{Runbook: "restart-crashlooping", IncidentKey: "shop/api", Params: map[string]string{"namespace": "shop", "deployment": "api"},
		Actor: domain.Actor{Kind: domain.ActorUser, Name: "olga"}, Reason: "crash loop", RequestID: "olga/req-42"}, calls[0])

	launched := fx.recorder.events(domain.ActionRunLaunched)
	require.Len(t, launched, 1)
	require.Equal(t, res.WorkflowID, launched[0].WorkflowID)
	require.Equal(t, res.RunID, launched[0].RunID)
	require.Equal(t, "crash loop", launched[0].Detail["reason"])

	// Without a key the run gets a manual one, and a random request ID.
	rec = fx.do(request{method: http.MethodPost, path: launchPath, token: fx.tok.operator, body: `{"params":{"namespace":"shop","deployment":"api"}}`})
	require.Equal(t, http.StatusAccepted, rec.Code, rec.Body.String())
	calls = fx.runs.launchCalls()
	require.Len(t, calls, 2)
	require.True(t, strings.HasPrefix(calls[1].IncidentKey, "manual-"), calls[1].IncidentKey)
	require.Len(t, calls[1].RequestID, 32)
}

func TestApproveNeedsReason(t *testing.T) {
	fx := newFixture(t)
	for _, body := range []string{"", `{}`, `{"reason":" \n "}`, `{"step":"restart"}`} {
		rec := fx.do(request{method: http.MethodPost, path: approvePath, token: fx.tok.operator, body: body})
		require.Equal(t, http.StatusBadRequest, rec.Code, body)
		require.Contains(t, errorOf(t, rec), "a reason is required", body)
	}
	require.Empty(t, fx.runs.decisionCalls(), "Decide must not be called without a reason")
}

func TestDecisionReachesRun(t *testing.T) {
	fx := newFixture(t)
	rec := fx.do(request{method: http.MethodPost, path: "/v1/runs/salve%2Frestart-crashlooping%2Fshop%2Fapi/reject", token: fx.tok.operator,
		body: `{"reason":"wrong cluster","step":"restart"}`})
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	var res runs.DecisionResult
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &res))
	require.Equal(t, runs.DecisionResult{WorkflowID: wfRunning, RunID: runRunning, Step: "restart", Decision: "rejected", By: "olga"}, res)
	d := fx.runs.decisionCalls()
	require.Len(t, d, 1)
	require.False(t, d[0].Approve)
	require.Equal(t, "restart", d[0].Step)
	require.Equal(t, "wrong cluster", d[0].Reason)
	require.Equal(t, domain.Actor{Kind: domain.ActorUser, Name: "olga"}, d[0].Actor)
	require.Equal(t, []string{"sre"}, d[0].Groups, "the run checks approvers against the token's groups")
}

func TestDecisionForbiddenIsAudited(t *testing.T) {
	fx := newFixture(t)
	rec := fx.do(request{method: http.MethodPost, path: "/v1/runs/salve%2Frestart-crashlooping%2Fshop%2Fself/approve", token: fx.tok.operator,
		body: `{"reason":"lgtm"}`})
	require.Equal(t, http.StatusForbidden, rec.Code)
	msg := errorOf(t, rec)
	require.Contains(t, msg, "olga launched this run and may not decide its approval")
	require.Len(t, fx.runs.decisionCalls(), 1)

	denied := fx.recorder.events(domain.ActionAuthDenied)
	require.Len(t, denied, 1)
	require.Equal(t, "olga", denied[0].Actor.Name)
	require.Equal(t, "403", denied[0].Outcome)
	require.Equal(t, msg, denied[0].Error)
	require.Equal(t, "/v1/runs/salve%2Frestart-crashlooping%2Fshop%2Fself/approve", denied[0].Detail["path"], "escaped: the workflow ID stays one segment")
}

func TestRoleTooWeak(t *testing.T) {
	fx := newFixture(t)
	for _, c := range []struct {
		method, path, token, need string
	}{
		{http.MethodPost, launchPath, fx.tok.viewer, "operator"},
		{http.MethodPost, approvePath, fx.tok.viewer, "operator"},
		{http.MethodPost, "/v1/runbooks/reload", fx.tok.operator, "admin"},
	} {
		rec := fx.do(request{method: c.method, path: c.path, token: c.token, body: `{"reason":"x"}`})
		require.Equal(t, http.StatusForbidden, rec.Code, c.path)
		require.Contains(t, errorOf(t, rec), "needs role "+c.need, c.path)
		require.Empty(t, rec.Header().Get("WWW-Authenticate"), "403 is not an authentication challenge")
	}
	require.Len(t, fx.recorder.events(domain.ActionAuthDenied), 3)
	require.Empty(t, fx.runs.launchCalls())
	require.Empty(t, fx.runs.decisionCalls())
}

func TestCancelRecordsRequest(t *testing.T) {
	fx := newFixture(t)
	rec := fx.do(request{method: http.MethodPost, path: "/v1/runs/salve%2Frestart-crashlooping%2Fshop%2Fapi/cancel", token: fx.tok.operator,
		body: `{"reason":"wrong deployment"}`})
	require.Equal(t, http.StatusAccepted, rec.Code, rec.Body.String())
	require.Equal(t, []cancelCall{{WorkflowID: wfRunning, Reason: "wrong deployment", Identity: "olga@salve-api"}}, fx.runs.cancels)
	evs := fx.recorder.events(domain.ActionRunCancelRequest)
	require.Len(t, evs, 1)
	require.Equal(t, "restart-crashlooping", evs[0].Runbook)
	require.Equal(t, "shop/api", evs[0].IncidentKey)
	require.Equal(t, wfRunning, evs[0].WorkflowID)
}

// A promotion's decision is in the audit log before the answer: a refusal
// below the threshold, an override with its reason; and when the audit
// record cannot be written, nothing is promoted.
func TestPromotionIsAuditedBeforeItAnswers(t *testing.T) {
	fx := newFixture(t)
	shadowMode(t, fx, "restart-crashlooping")
	promote := func(body string) int {
		return fx.do(request{method: http.MethodPost, path: "/v1/runbooks/restart-crashlooping/promote", token: fx.tok.admin, body: body}).Code
	}
	require.Equal(t, http.StatusConflict, promote(`{"to":"approve"}`))
	refused := fx.recorder.events(domain.ActionPromotionRefused)
	require.Len(t, refused, 1)
	require.Equal(t, "below_threshold", refused[0].Outcome)
	require.Contains(t, refused[0].Error, "no run was compared")
	require.Empty(t, fx.recorder.events(domain.ActionRunbookPromoted))

	require.Equal(t, http.StatusOK, promote(`{"to":"approve","override":true,"reason":"reviewed with the owners"}`))
	promoted := fx.recorder.events(domain.ActionRunbookPromoted)
	require.Len(t, promoted, 1)
	require.Equal(t, "approve", promoted[0].Outcome)
	require.Equal(t, "true", promoted[0].Detail["override"])
	require.Equal(t, "reviewed with the owners", promoted[0].Detail["reason"])
	require.Equal(t, "shadow", promoted[0].Detail["from"])

	fx.recorder.err = errors.New("nats: no responders available for request")
	require.Equal(t, http.StatusServiceUnavailable, promote(`{"to":"approve","override":true,"reason":"again"}`))
	require.Equal(t, http.StatusServiceUnavailable, promote(`{"to":"approve"}`), "an unaudited refusal is no answer either")
}
