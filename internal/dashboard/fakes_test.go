package dashboard_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/activities"
	"github.com/salve-sre/salve/internal/api"
	"github.com/salve-sre/salve/internal/audit"
	"github.com/salve-sre/salve/internal/auth"
	"github.com/salve-sre/salve/internal/dashboard"
	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/internal/runs"
	"github.com/salve-sre/salve/internal/stats"
	"github.com/salve-sre/salve/runbooks"
	"github.com/salve-sre/salve/triggers"
	"github.com/salve-sre/salve/workflows"
)

// t0 is when everything in the fixtures happened.
var t0 = time.Now().UTC().Truncate(time.Second).Add(-time.Hour)

const (
	wfWaiting = "salve/restart-crashlooping/shop/api"         // running, waits for approval of step restart
	wfFailed  = "salve/restart-crashlooping/shop/done"        // failed, compensated
	wfHostile = "salve/hostile/x<y>"                          // outputs and errors with markup
	wfShadow  = "salve/restart-crashlooping/~shadow/shop/web" // a shadow run with its evidence
	runWait   = "0192e7a4-1111-7000-8000-000000000001"
	runFailed = "0192e7a4-2222-7000-8000-000000000002"
	leaseHash = "lease-4f2a9c"
)

// hostile is markup that must reach the page as text.
const hostile = `<script>alert("pwned")</script><img src=x onerror=alert(1)>`

type fakeRuns struct {
	mu         sync.Mutex
	filters    []runs.ListFilter
	tokens     [][]byte
	listErr    error
	pending    []runs.PendingApproval
	pendingErr error
	launched   []string
}

func (f *fakeRuns) summaries() []runs.Summary {
	return []runs.Summary{
		{WorkflowID: wfWaiting, RunID: runWait, Runbook: "restart-crashlooping", IncidentKey: "shop/api", Status: runs.StatusRunning, StartTime: t0},
		{WorkflowID: wfFailed, RunID: runFailed, Runbook: "restart-crashlooping", IncidentKey: "shop/done", Status: runs.StatusFailed,
			StartTime: t0.Add(-2 * time.Hour), CloseTime: t0.Add(-time.Hour)},
	}
}

func (f *fakeRuns) ListFiltered(_ context.Context, lf runs.ListFilter, _ int, token []byte) ([]runs.Summary, []byte, error) {
	f.mu.Lock()
	f.filters = append(f.filters, lf)
	f.tokens = append(f.tokens, token)
	f.mu.Unlock()
	if f.listErr != nil {
		return nil, nil, f.listErr
	}
	if lf.IncidentKey != "" && lf.Runbook == "" {
		return nil, nil, fmt.Errorf("%w: incidentKey needs runbook too (an incident key is per runbook)", runs.ErrBadRequest)
	}
	if string(token) == "page-2" {
		return f.summaries()[1:], nil, nil
	}
	return f.summaries()[:1], []byte("page-2"), nil
}

func (f *fakeRuns) Get(_ context.Context, id, _ string) (runs.Detail, error) {
	switch id {
	case wfWaiting:
		return runs.Detail{
			Summary: f.summaries()[0],
			Run: &workflows.Status{
				Runbook: "restart-crashlooping", RunbookHash: strings.Repeat("ab", 32), IncidentKey: "shop/api", State: workflows.RunStateRunning,
				Params: map[string]string{"namespace": "shop", "deployment": "api"},
				Steps: []workflows.StepStatus{
					{Name: "before", Action: "kubernetes.get", State: workflows.StepStateSucceeded, StartedAt: t0.Add(time.Second), FinishedAt: t0.Add(3 * time.Second),
						Output: map[string]any{"replicas": 3, "ready": true}, Attempts: 1},
					{Name: "restart", Action: "kubernetes.restart", State: workflows.StepStateWaiting},
				},
				Alerts:         []workflows.AlertRef{{ID: "5e1f|firing|1", Status: domain.StatusFiring, ReceivedAt: t0}},
				Approval:       &workflows.ApprovalWait{Step: "restart", RequestedAt: t0.Add(3 * time.Second), Deadline: t0.Add(2 * time.Hour), OnTimeout: "fail"},
				ApprovalReason: "SLO shop-availability: slow burn (burn rate 1h 4.00, 1d 3.33; 52.4% of the budget left): a person approves before it acts",
				Approvals: []workflows.ApprovalRecord{
					{Decision: workflows.DecisionApproved, By: "bob", Reason: "looked at the dashboards", At: t0.Add(time.Second)},
				},
			},
		}, nil
	case wfShadow:
		return runs.Detail{
			Summary: runs.Summary{WorkflowID: wfShadow, RunID: "r-shadow", Runbook: "restart-crashlooping", IncidentKey: "shop/web", Status: runs.StatusSucceeded, StartTime: t0, CloseTime: t0.Add(9 * time.Minute)},
			Run: &workflows.Status{
				Runbook: "restart-crashlooping", IncidentKey: "shop/web", State: workflows.RunStateSucceeded, Shadow: true, DryRun: true,
				Steps: []workflows.StepStatus{{Name: "restart", Action: "kubernetes.restart", State: workflows.StepStateSucceeded, Output: map[string]any{"dryRun": true}}},
				Evidence: &workflows.Evidence{Verdict: workflows.VerdictAgreed, Summary: "Would have acted; a person restarted shop/web meanwhile.",
					Planned:   []workflows.PlannedAction{{Step: "restart", Action: "kubernetes.restart", Target: "shop/web", Params: map[string]any{"namespace": "shop", "name": "web"}}},
					Approvals: []string{"run"}, Window: "30m0s", Resolved: true, ResolvedAfter: "9m0s",
					Changes: []workflows.TargetChange{{Step: "restart", Target: "shop/web", Change: workflows.ChangeRestarted, Detail: "restartedAt (none) → 2026-12-07T09:05:00Z"}},
					Verify:  "passed"},
			},
		}, nil
	case wfFailed:
		return runs.Detail{
			Summary: f.summaries()[1],
			Run: &workflows.Status{
				Runbook: "restart-crashlooping", IncidentKey: "shop/done", State: workflows.RunStateFailed, LaunchedBy: "olga", Reason: "pods crash-loop after the deploy",
				Steps: []workflows.StepStatus{
					{Name: "restart", Action: "kubernetes.restart", State: workflows.StepStateFailed, StartedAt: t0.Add(-2 * time.Hour), FinishedAt: t0.Add(-time.Hour),
						Error: "rollout of deployment shop/api did not finish in 5m0s", Attempts: 2},
					{Name: "verify", Action: "prometheus.assert", State: workflows.StepStateSkipped},
				},
				OnFailure: []workflows.StepStatus{
					{Name: "tell_owners", Action: "http.request", State: workflows.StepStateSucceeded, StartedAt: t0.Add(-time.Hour), FinishedAt: t0.Add(-time.Hour)},
				},
				Error: `step "restart": rollout did not finish`,
			},
		}, nil
	case wfHostile:
		return runs.Detail{
			Summary: runs.Summary{WorkflowID: wfHostile, RunID: "r-hostile", Runbook: "hostile", IncidentKey: "x<y>", Status: runs.StatusFailed, StartTime: t0, CloseTime: t0.Add(time.Minute)},
			Run: &workflows.Status{Runbook: "hostile", IncidentKey: "x<y>", State: workflows.RunStateFailed, Error: hostile,
				Steps: []workflows.StepStatus{{Name: "call", Action: "http.request", State: workflows.StepStateFailed, StartedAt: t0, FinishedAt: t0.Add(time.Second),
					Error: hostile, Output: map[string]any{"body": hostile}}}},
		}, nil
	}
	return runs.Detail{}, fmt.Errorf("%w: %s", runs.ErrNotFound, id)
}

func (f *fakeRuns) Launch(_ context.Context, rb *runbooks.Runbook, key string, _ map[string]string, _ domain.Actor, _, _ string) (string, string, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.launched = append(f.launched, rb.Name())
	return domain.WorkflowID(rb.Name(), key), "r-new", true, nil
}

func (f *fakeRuns) Cancel(context.Context, string, string, string, string) (string, error) {
	return runWait, nil
}

func (f *fakeRuns) Decide(context.Context, string, string, workflows.Decision) (workflows.DecisionAck, string, error) {
	return workflows.DecisionAck{Step: "restart", Decision: workflows.DecisionApproved}, runWait, nil
}

func (f *fakeRuns) PendingApprovals(context.Context) ([]runs.PendingApproval, error) {
	if f.pending != nil || f.pendingErr != nil {
		return f.pending, f.pendingErr
	}
	return []runs.PendingApproval{
		{WorkflowID: wfWaiting, RunID: runWait, Runbook: "restart-crashlooping", IncidentKey: "shop/api", Step: "restart",
			RequestedAt: t0.Add(3 * time.Second), Deadline: t0.Add(2 * time.Hour), OnTimeout: "fail"},
		{WorkflowID: "salve/restart-crashlooping/shop/mine", RunID: "r-mine", Runbook: "restart-crashlooping", IncidentKey: "shop/mine",
			RequestedAt: t0, Deadline: t0.Add(time.Hour), OnTimeout: "continue", LaunchedBy: "olga"},
	}, nil
}

func (f *fakeRuns) Stats(context.Context, string, int) ([]runs.Summary, runs.RunbookStats, error) {
	rate := 0.5
	return f.summaries(), runs.RunbookStats{Runs: 2, Succeeded: 1, Failed: 1, SuccessRate: &rate}, nil
}

// fakeAudit filters like the store.
type fakeAudit struct {
	mu     sync.Mutex
	recs   []audit.Record
	alerts []audit.AlertState
	broken bool
	err    error
}

func (a *fakeAudit) Query(_ context.Context, f audit.Filter) ([]audit.Record, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.err != nil {
		return nil, a.err
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	var out []audit.Record
	for _, r := range a.recs {
		ev := r.Event
		switch {
		case r.Seq <= f.AfterSeq,
			f.WorkflowID != "" && ev.WorkflowID != f.WorkflowID,
			f.Runbook != "" && ev.Runbook != f.Runbook,
			f.IncidentKey != "" && ev.IncidentKey != f.IncidentKey,
			f.Action != "" && ev.Action != f.Action,
			!f.Since.IsZero() && ev.Time.Before(f.Since):
			continue
		}
		out = append(out, r)
		if len(out) == limit {
			break
		}
	}
	return out, nil
}

func (a *fakeAudit) Verify(context.Context) (audit.VerifyResult, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := int64(len(a.recs))
	res := audit.VerifyResult{OK: true, Checked: n, HeadSeq: n, HeadHash: a.recs[n-1].Hash}
	if a.broken {
		res.OK, res.BrokenAt, res.Problem = false, 3, "row 3: hash does not match its event"
	}
	return res, nil
}

func (a *fakeAudit) Alerts(_ context.Context, f audit.AlertFilter) ([]audit.AlertState, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []audit.AlertState
	for _, al := range a.alerts {
		if !al.StartsAt.Before(f.Since) && len(out) < f.Limit {
			out = append(out, al)
		}
	}
	return out, nil
}

func auditRecords() []audit.Record {
	worker := domain.Actor{Kind: domain.ActorSystem, Name: "worker"}
	evs := []domain.AuditEvent{
		{Time: t0.Add(-time.Second), Actor: domain.Actor{Kind: domain.ActorAlert, Name: "salve"}, Action: domain.ActionAlertAccepted, Outcome: domain.StatusFiring,
			Detail: map[string]string{"alertId": "5e1f|firing|1", "alertname": "KubeDeploymentCrashLooping", "fingerprint": "5e1f", "startsAt": t0.Add(-time.Minute).Format(time.RFC3339Nano)}},
		{Time: t0, Actor: domain.Actor{Kind: domain.ActorSystem, Name: "trigger"}, Action: domain.ActionTriggerMatched, Runbook: "restart-crashlooping",
			WorkflowID: wfWaiting, RunID: runWait, IncidentKey: "shop/api", Outcome: "started", Detail: map[string]string{"alertId": "5e1f|firing|1"}},
		{Time: t0, Actor: domain.Actor{Kind: domain.ActorAlert, Name: "KubeDeploymentCrashLooping"}, Action: domain.ActionRunStarted, Runbook: "restart-crashlooping",
			WorkflowID: wfWaiting, RunID: runWait, IncidentKey: "shop/api"},
		{Time: t0.Add(time.Second), Actor: worker, Action: domain.ActionCredentialIssued, Runbook: "restart-crashlooping", WorkflowID: wfWaiting, RunID: runWait,
			Step: "before", Outcome: "issued", Detail: map[string]string{"source": "kubernetes", "role": "salve-shop", "lease": leaseHash, "ttl": "2m0s", "namespace": "shop"}},
		{Time: t0.Add(3 * time.Second), Actor: worker, Action: domain.ActionStepSucceeded, Runbook: "restart-crashlooping", WorkflowID: wfWaiting, RunID: runWait,
			Step: "before", Outcome: "succeeded"},
		{Time: t0.Add(3 * time.Second), Actor: worker, Action: domain.ActionCredentialRevoked, Runbook: "restart-crashlooping", WorkflowID: wfWaiting, RunID: runWait,
			Step: "before", Outcome: "revoked", Detail: map[string]string{"source": "kubernetes", "role": "salve-shop", "lease": leaseHash, "ttl": "2m0s", "namespace": "shop"}},
		{Time: t0.Add(4 * time.Second), Actor: worker, Action: domain.ActionStepFailed, Runbook: "restart-crashlooping", WorkflowID: wfWaiting, RunID: "an-earlier-run",
			Step: "restart", Outcome: "failed", Error: "from another run"},
		{Time: t0.Add(5 * time.Second), Actor: domain.Actor{Kind: domain.ActorUser, Name: "olga"}, Action: domain.ActionRunLaunched, Runbook: "hostile",
			WorkflowID: wfHostile, IncidentKey: "x<y>", Outcome: "started", Detail: map[string]string{"reason": hostile}},
	}
	out := make([]audit.Record, len(evs))
	prev := strings.Repeat("0", 64)
	for i, ev := range evs {
		ev.ID = fmt.Sprintf("ev-%d", i+1)
		h := fmt.Sprintf("%064x", i+1)
		out[i] = audit.Record{Seq: int64(i + 1), Event: ev, PrevHash: prev, Hash: h}
		prev = h
	}
	return out
}

type fakeRecorder struct {
	mu  sync.Mutex
	evs []domain.AuditEvent
}

func (r *fakeRecorder) Record(_ context.Context, ev domain.AuditEvent) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evs = append(r.evs, ev)
	return nil
}

func (r *fakeRecorder) actions() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, ev := range r.evs {
		out = append(out, ev.Action)
	}
	return out
}

const restartRunbook = `apiVersion: salve/v1
kind: Runbook
metadata:
  name: restart-crashlooping
  description: Rollout-restart a crash-looping Deployment and verify the restarts stop.
  owner: platform
  labels: {tier: "1"}
spec:
  trigger:
    matchers: ['alertname="KubeDeploymentCrashLooping"', 'severity=~"warning|critical"']
    incidentKey: '{{ .Labels.namespace }}/{{ .Labels.deployment }}'
  params:
    namespace: {fromLabel: namespace, required: true, pattern: '[a-z0-9-]+'}
    deployment: {fromLabel: deployment, required: true, type: k8sName, description: the Deployment}
    replicas: {type: int, default: "3", min: 1, max: 20}
    env: {type: enum, values: [staging, production], default: staging}
    verifyFor: {type: duration, default: 2m, max: 30m}
    force: {type: bool, default: "false"}
  toil: {manualMinutes: 20}
  safety:
    cooldown: 30m
    maxRunsPerHour: 3
    circuitBreaker: {failures: 3, window: 1h}
  access:
    approvers: [bob, group:sre]
  credentials:
    kubernetes: {vaultRole: 'salve-{{ .Params.env }}', ttl: 10m}
  steps:
    - name: before
      action: kubernetes.get
      with: {namespace: '{{ .Params.namespace }}', name: '{{ .Params.deployment }}'}
    - name: restart
      action: kubernetes.restart
      with: {namespace: '{{ .Params.namespace }}', name: '{{ .Params.deployment }}'}
      approval: {required: true, timeout: 2h}
  onFailure:
    - name: tell_owners
      action: http.request
      with: {url: 'http://pager.internal/v1/page', method: POST}
`

// hostileRunbook carries markup in every free-text field.
const hostileRunbook = `apiVersion: salve/v1
kind: Runbook
metadata:
  name: hostile
  description: '<script>alert("pwned")</script><img src=x onerror=alert(1)>'
  owner: '<b>team</b>'
  labels: {evil: '"><script>alert(2)</script>'}
spec:
  trigger:
    matchers: ['alertname="<script>x</script>"']
  params:
    target: {description: '<script>alert(3)</script>', default: '"><script>alert(4)</script>'}
  steps:
    - {name: call, action: http.request, with: {url: 'http://example.com/<script>alert(5)</script>'}}
`

// restrictedRunbook may be launched by ada only.
const restrictedRunbook = `apiVersion: salve/v1
kind: Runbook
metadata: {name: failover-db}
spec:
  access: {launchers: [ada]}
  steps:
    - {name: ping, action: http.request, with: {url: 'http://db.internal/health'}}
`

type tokens struct{ viewer, operator, admin string }

type fixture struct {
	h        http.Handler
	srv      *api.Server
	runs     *fakeRuns
	audit    *fakeAudit
	recorder *fakeRecorder
	tok      tokens
	logs     *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func testReport(from, to time.Time) stats.Report {
	rate, cov, auto := 0.75, 0.5, 0.4
	mttrA, mttrM, first := 90.0, 2700.0, 1.5
	var days []stats.DayPoint
	for d := from.UTC().Truncate(24 * time.Hour); d.Before(to); d = d.Add(24 * time.Hour) {
		days = append(days, stats.DayPoint{Day: d})
	}
	days[len(days)-1].SavedSeconds, days[len(days)-1].Runs, days[len(days)-1].Failed, days[len(days)-1].Alerts = 1800, 4, 1, 5
	return stats.Report{
		From: from, To: to, ToilSavedSeconds: 1800,
		ToilByRunbook: []stats.RunbookToil{{Runbook: "restart-crashlooping", Owner: "platform", Runs: 2, SavedSeconds: 1800}},
		ToilByTeam:    []stats.TeamToil{{Owner: "platform", SavedSeconds: 1800}},
		Days:          days, Alerts: 10, AlertsWithRunbook: 5, Coverage: &cov, AutomationRate: &auto,
		MTTRAutomatedSeconds: &mttrA, MTTRManualSeconds: &mttrM, AlertToFirstActionP50Seconds: &first,
		MTBF:           []stats.AlertMTBF{{Alertname: "KubeDeploymentCrashLooping", Occurrences: 4, MTBFSeconds: 3600}},
		NoisiestAlerts: []stats.AlertCount{{Alertname: "KubeDeploymentCrashLooping", Occurrences: 4, Automated: 2}, {Alertname: "DiskFull", Occurrences: 1}},
		Runs:           4, Succeeded: 3, Failed: 1, SuccessRate: &rate,
		TopFailing:       []stats.RunbookRuns{{Runbook: "restart-crashlooping", Runs: 4, Failed: 1}},
		PendingApprovals: 2,
	}
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	reg, err := activities.NewRegistry()
	require.NoError(t, err)
	var rbs []*runbooks.Runbook
	for name, src := range map[string]string{"restart.yaml": restartRunbook, "hostile.yaml": hostileRunbook, "failover.yaml": restrictedRunbook} {
		rb, err := runbooks.Parse("runbooks/"+name, []byte(src), reg)
		require.NoError(t, err, name)
		rbs = append(rbs, rb)
	}
	set, err := runbooks.NewSet(rbs...)
	require.NoError(t, err)
	var tok tokens
	var cfgs []auth.TokenConfig
	for _, u := range []struct {
		tok           *string
		subject, role string
		groups        []string
	}{
		{&tok.viewer, "val", "viewer", nil},
		{&tok.operator, "olga", "operator", []string{"sre"}},
		{&tok.admin, "ada", "admin", nil},
	} {
		token, hash, err := auth.NewToken()
		require.NoError(t, err)
		*u.tok = token
		cfgs = append(cfgs, auth.TokenConfig{Subject: u.subject, Role: u.role, Groups: u.groups, SHA256: hash})
	}
	authn, err := auth.New(cfgs)
	require.NoError(t, err)
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	fr, fa, rec := &fakeRuns{}, &fakeAudit{recs: auditRecords()}, &fakeRecorder{}
	srv := &api.Server{
		Runs: fr, Runbooks: triggers.StaticRunbooks{Set: set}, Catalog: reg, Audit: fa, Recorder: rec, Auth: authn, Log: log,
		Stats:    func(_ context.Context, from, to time.Time) (stats.Report, error) { return testReport(from, to), nil },
		Sessions: &memSessions{m: map[string]auth.Session{}},
	}
	h, err := dashboard.New(dashboard.Options{API: srv, TemporalUI: "http://127.0.0.1:8233", Namespace: "default", Log: log})
	require.NoError(t, err)
	return &fixture{h: h, srv: srv, runs: fr, audit: fa, recorder: rec, tok: tok, logs: logs}
}

// get requests a page, signed in with token ("" = signed out): a session
// is opened for a known token; an unknown one is sent as a session ID
// that names nothing.
func (fx *fixture) get(t *testing.T, path, token string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	if token != "" {
		req.AddCookie(&http.Cookie{Name: api.SessionCookie, Value: fx.session(t, token)})
	}
	rec := httptest.NewRecorder()
	fx.h.ServeHTTP(rec, req)
	return rec
}

var errStats = errors.New("audit store: database is locked")

// memSessions is an in-memory auth.SessionStore for the dashboard's own
// logic; the JetStream store is tested against a real NATS in internal/auth.
type memSessions struct {
	mu sync.Mutex
	m  map[string]auth.Session
}

func (s *memSessions) Create(_ context.Context, sess auth.Session) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := auth.NewSessionID()
	s.m[id] = sess
	return id, nil
}

func (s *memSessions) Get(_ context.Context, id string) (auth.Session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.m[id]
	if !ok || !time.Now().Before(sess.Expires) {
		return auth.Session{}, auth.ErrNoSession
	}
	return sess, nil
}

func (s *memSessions) Delete(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, id)
	return nil
}

// session opens a session for token if it is a known one, and returns
// the cookie value to send.
func (fx *fixture) session(t *testing.T, token string) string {
	t.Helper()
	if _, err := fx.srv.Auth.Token(token); err != nil {
		return token // names no session
	}
	id, err := fx.srv.Sessions.Create(context.Background(), auth.Session{TokenSHA256: auth.HashToken(token), Expires: time.Now().Add(time.Hour)})
	require.NoError(t, err)
	return id
}
