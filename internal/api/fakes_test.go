package api_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/activities"
	"github.com/salve-sre/salve/internal/api"
	"github.com/salve-sre/salve/internal/audit"
	"github.com/salve-sre/salve/internal/auth"
	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/internal/runbookload"
	"github.com/salve-sre/salve/internal/runs"
	"github.com/salve-sre/salve/internal/safety"
	"github.com/salve-sre/salve/internal/stats"
	"github.com/salve-sre/salve/runbooks"
	"github.com/salve-sre/salve/triggers"
	"github.com/salve-sre/salve/workflows"
)

// t0 is when everything in the fixtures happened.
var t0 = time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)

// Workflow IDs the fake run service knows. Each stands for a situation.
const (
	wfRunning  = "salve/restart-crashlooping/shop/api"   // waits for approval of step restart
	wfDone     = "salve/restart-crashlooping/shop/done"  // succeeded after compensation
	wfNoWorker = "salve/restart-crashlooping/shop/quiet" // no worker answers the status query
	wfSelf     = "salve/restart-crashlooping/shop/self"  // Decide: ErrForbidden
	wfNoWait   = "salve/restart-crashlooping/shop/idle"  // Decide: ErrConflict
	wfDown     = "salve/restart-crashlooping/shop/down"  // Temporal fails
	runRunning = "0192e7a4-1111-7000-8000-000000000001"
)

// Incident keys the fake Launch treats specially.
const (
	keyBusy = "busy" // ErrConflict: a run is already running
	keyDown = "down" // Temporal fails
)

var errTemporal = errors.New("rpc error: code = Unavailable desc = connection refused")

type launchCall struct {
	Runbook, IncidentKey string
	Params               map[string]string
	Actor                domain.Actor
	Reason, RequestID    string
}

type cancelCall struct{ WorkflowID, Reason, Identity string }

// fakeRuns is an in-memory api.RunService with realistic answers.
type fakeRuns struct {
	mu        sync.Mutex
	filter    runs.ListFilter
	size      int
	token     []byte
	launches  []launchCall
	cancels   []cancelCall
	decisions []workflows.Decision
	// Errors returned instead of answers, when set.
	pendingErr, statsErr error
}

func (f *fakeRuns) summaries() []runs.Summary {
	return []runs.Summary{
		{WorkflowID: wfRunning, RunID: runRunning, Runbook: "restart-crashlooping", IncidentKey: "shop/api", Status: runs.StatusRunning, StartTime: t0},
		{WorkflowID: wfDone, RunID: "0192e7a4-2222-7000-8000-000000000002", Runbook: "restart-crashlooping", IncidentKey: "shop/done",
			Status: runs.StatusSucceeded, StartTime: t0.Add(-2 * time.Hour), CloseTime: t0.Add(-time.Hour)},
	}
}

func (f *fakeRuns) ListFiltered(_ context.Context, lf runs.ListFilter, size int, token []byte) ([]runs.Summary, []byte, error) {
	f.mu.Lock()
	f.filter, f.size, f.token = lf, size, token
	f.mu.Unlock()
	// What *runs.Runs refuses, and a Temporal outage.
	switch {
	case lf.Runbook == keyDown:
		return nil, nil, fmt.Errorf("list runs: %w", errTemporal)
	case lf.IncidentKey != "" && lf.Runbook == "":
		return nil, nil, fmt.Errorf("%w: incidentKey needs runbook too (an incident key is per runbook)", runs.ErrBadRequest)
	case lf.Status != "" && !slices.Contains([]string{runs.StatusRunning, runs.StatusSucceeded, runs.StatusFailed, runs.StatusCancelled, runs.StatusTerminated, runs.StatusTimedOut}, lf.Status):
		return nil, nil, fmt.Errorf("%w: status %q: want one of cancelled, failed, running, succeeded, terminated, timed_out", runs.ErrBadRequest, lf.Status)
	}
	return f.summaries(), []byte("next-page"), nil
}

func runningDetail() runs.Detail {
	return runs.Detail{
		Summary: runs.Summary{WorkflowID: wfRunning, RunID: runRunning, Runbook: "restart-crashlooping", IncidentKey: "shop/api", Status: runs.StatusRunning, StartTime: t0},
		Run: &workflows.Status{
			Runbook: "restart-crashlooping", RunbookHash: strings.Repeat("ab", 32), IncidentKey: "shop/api",
			State:  workflows.RunStateRunning,
			Params: map[string]string{"namespace": "shop", "deployment": "api", "replicas": "3"},
			Steps: []workflows.StepStatus{
				{Name: "before", Action: "kubernetes.get", State: workflows.StepStateSucceeded, StartedAt: t0.Add(time.Second), FinishedAt: t0.Add(2 * time.Second),
					Output: map[string]any{"replicas": 3, "ready": true, "images": []any{"shop/api:1.2.3"}}, Attempts: 1},
				{Name: "restart", Action: "kubernetes.restart", State: workflows.StepStateWaiting},
			},
			Alerts:     []workflows.AlertRef{{ID: "5e1f6f2b7a0c9d3e|firing|1795510800", Status: domain.StatusFiring, ReceivedAt: t0}},
			LaunchedBy: "olga", Reason: "pods crash-loop after the 09:00 deploy",
			Approval: &workflows.ApprovalWait{Step: "restart", RequestedAt: t0.Add(2 * time.Second), Deadline: t0.Add(5*time.Minute + 2*time.Second), OnTimeout: runbooks.ApprovalTimeoutFail},
			Approvals: []workflows.ApprovalRecord{
				{Decision: workflows.DecisionApproved, By: "bob", Reason: "looked at the dashboards", At: t0.Add(time.Second)},
			},
		},
	}
}

func doneDetail() runs.Detail {
	return runs.Detail{
		Summary: runs.Summary{WorkflowID: wfDone, RunID: "0192e7a4-2222-7000-8000-000000000002", Runbook: "restart-crashlooping", IncidentKey: "shop/done",
			Status: runs.StatusFailed, StartTime: t0.Add(-2 * time.Hour), CloseTime: t0.Add(-time.Hour)},
		Run: &workflows.Status{
			Runbook: "restart-crashlooping", RunbookHash: strings.Repeat("ab", 32), IncidentKey: "shop/done",
			State: workflows.RunStateFailed,
			Steps: []workflows.StepStatus{
				{Name: "before", Action: "kubernetes.get", State: workflows.StepStateSucceeded, StartedAt: t0.Add(-2 * time.Hour), FinishedAt: t0.Add(-2 * time.Hour)},
				{Name: "restart", Action: "kubernetes.restart", State: workflows.StepStateFailed, StartedAt: t0.Add(-2 * time.Hour), FinishedAt: t0.Add(-time.Hour),
					Error: "rollout of deployment shop/api did not finish in 5m0s", Attempts: 2},
				{Name: "verify", Action: "prometheus.assert", State: workflows.StepStateSkipped},
			},
			OnFailure: []workflows.StepStatus{
				{Name: "tell_owners", Action: "http.request", State: workflows.StepStateSucceeded, StartedAt: t0.Add(-time.Hour), FinishedAt: t0.Add(-time.Hour),
					Output: map[string]any{"status": 200}},
			},
			Alerts: []workflows.AlertRef{
				{ID: "77aa|firing|1", Status: domain.StatusFiring, ReceivedAt: t0.Add(-2 * time.Hour)},
				{ID: "77aa|resolved|1", Status: domain.StatusResolved, ReceivedAt: t0.Add(-time.Hour)},
			},
			Resolved:   true,
			StopReason: "the alert resolved",
			Error:      `step "restart": rollout of deployment shop/api did not finish in 5m0s`,
			Approvals: []workflows.ApprovalRecord{
				{Step: "restart", Decision: workflows.DecisionTimedOut, At: t0.Add(-90 * time.Minute)},
			},
		},
	}
}

func (f *fakeRuns) Get(_ context.Context, id, runID string) (runs.Detail, error) {
	switch id {
	case wfRunning:
		return runningDetail(), nil
	case wfDone:
		return doneDetail(), nil
	case wfNoWorker:
		return runs.Detail{
			Summary:  runs.Summary{WorkflowID: id, RunID: "0192e7a4-3333-7000-8000-000000000003", Runbook: "restart-crashlooping", IncidentKey: "shop/quiet", Status: runs.StatusRunning, StartTime: t0},
			RunError: "step details unavailable: context deadline exceeded",
		}, nil
	case wfDown:
		return runs.Detail{}, fmt.Errorf("describe run %s: %w", id, errTemporal)
	}
	return runs.Detail{}, fmt.Errorf("%w: %s", runs.ErrNotFound, id)
}

func (f *fakeRuns) Launch(_ context.Context, rb *runbooks.Runbook, key string, params map[string]string, actor domain.Actor, reason, requestID string) (string, string, bool, error) {
	f.mu.Lock()
	f.launches = append(f.launches, launchCall{Runbook: rb.Name(), IncidentKey: key, Params: params, Actor: actor, Reason: reason, RequestID: requestID})
	f.mu.Unlock()
	id := domain.WorkflowID(rb.Name(), key)
	switch key {
	case keyBusy:
		return id, runRunning, false, fmt.Errorf("%w: a run for incident %q of runbook %s is already running (run %s): watch or cancel it, or launch with another incident key", runs.ErrConflict, key, rb.Name(), runRunning)
	case keyDown:
		return "", "", false, fmt.Errorf("start run %s: %w", id, errTemporal)
	}
	return id, "0192e7a4-4444-7000-8000-000000000004", true, nil
}

func (f *fakeRuns) Cancel(_ context.Context, id, _, reason, identity string) (string, error) {
	f.mu.Lock()
	f.cancels = append(f.cancels, cancelCall{WorkflowID: id, Reason: reason, Identity: identity})
	f.mu.Unlock()
	switch id {
	case wfRunning, wfNoWorker:
		return runRunning, nil
	case wfDone:
		return "0192e7a4-2222-7000-8000-000000000002", fmt.Errorf("%w: run %s already ended (succeeded)", runs.ErrNotRunning, id)
	case wfDown:
		return "", fmt.Errorf("describe run %s: %w", id, errTemporal)
	}
	return "", fmt.Errorf("%w: %s", runs.ErrNotFound, id)
}

func (f *fakeRuns) Decide(_ context.Context, id, _ string, d workflows.Decision) (workflows.DecisionAck, string, error) {
	f.mu.Lock()
	f.decisions = append(f.decisions, d)
	f.mu.Unlock()
	switch id {
	case wfRunning:
		ack := workflows.DecisionAck{Step: "restart", Decision: workflows.DecisionApproved}
		if !d.Approve {
			ack.Decision = workflows.DecisionRejected
		}
		return ack, runRunning, nil
	case wfSelf:
		return workflows.DecisionAck{}, "", fmt.Errorf("%w: %s launched this run and may not decide its approval (runbook restart-crashlooping does not set access.allowSelfApproval)", runs.ErrForbidden, d.Actor.Name)
	case wfNoWait:
		return workflows.DecisionAck{}, "", fmt.Errorf("%w: this run is not waiting for an approval", runs.ErrConflict)
	case wfDone:
		return workflows.DecisionAck{}, "", fmt.Errorf("%w: run %s has ended: there is nothing to approve", runs.ErrNotRunning, id)
	case wfDown:
		return workflows.DecisionAck{}, "", fmt.Errorf("decide on run %s: %w", id, errTemporal)
	}
	return workflows.DecisionAck{}, "", fmt.Errorf("%w: %s", runs.ErrNotFound, id)
}

func (f *fakeRuns) PendingApprovals(context.Context) ([]runs.PendingApproval, error) {
	if f.pendingErr != nil {
		return nil, f.pendingErr
	}
	return []runs.PendingApproval{
		{WorkflowID: "salve/restart-crashlooping/shop/web", RunID: "r-web", Runbook: "restart-crashlooping", IncidentKey: "shop/web",
			RequestedAt: t0.Add(-time.Minute), Deadline: t0.Add(14 * time.Minute), OnTimeout: runbooks.ApprovalTimeoutGoOn},
		{WorkflowID: wfRunning, RunID: runRunning, Runbook: "restart-crashlooping", IncidentKey: "shop/api", Step: "restart",
			RequestedAt: t0.Add(2 * time.Second), Deadline: t0.Add(5*time.Minute + 2*time.Second), OnTimeout: runbooks.ApprovalTimeoutFail, LaunchedBy: "olga"},
	}, nil
}

func (f *fakeRuns) Stats(_ context.Context, runbook string, _ int) ([]runs.Summary, runs.RunbookStats, error) {
	if f.statsErr != nil {
		return nil, runs.RunbookStats{}, f.statsErr
	}
	list := f.summaries()
	rate := 1.0
	return list, runs.RunbookStats{Runs: len(list), Succeeded: 1, Running: 1, SuccessRate: &rate}, nil
}

func (f *fakeRuns) launchCalls() []launchCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.launches)
}

func (f *fakeRuns) decisionCalls() []workflows.Decision {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.decisions)
}

// fakeAudit is an in-memory api.AuditReader that filters like the store.
type fakeAudit struct {
	mu      sync.Mutex
	recs    []audit.Record
	alerts  []audit.AlertState
	last    audit.Filter
	err     error
	broken  bool
	queries int
}

func (a *fakeAudit) Query(_ context.Context, f audit.Filter) ([]audit.Record, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.last, a.queries = f, a.queries+1
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
	if a.err != nil {
		return audit.VerifyResult{}, a.err
	}
	n := int64(len(a.recs))
	res := audit.VerifyResult{OK: true, Checked: n, HeadSeq: n, HeadHash: a.recs[n-1].Hash, Anchor: &audit.Anchor{Seq: 2, Hash: a.recs[1].Hash}}
	if a.broken {
		res.OK, res.BrokenAt, res.Problem = false, 3, "row 3: hash does not match its event"
	}
	return res, nil
}

func (a *fakeAudit) Alerts(_ context.Context, f audit.AlertFilter) ([]audit.AlertState, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.err != nil {
		return nil, a.err
	}
	var out []audit.AlertState
	for _, s := range a.alerts {
		if f.Alertname == "" || s.Alertname == f.Alertname {
			out = append(out, s)
		}
	}
	return out, nil
}

func (a *fakeAudit) lastFilter() audit.Filter {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.last
}

// auditRecords is the audit log of incident shop/api: its alert, the run,
// and an event of another run of the same workflow ID that the run's event
// stream must leave out.
func auditRecords() []audit.Record {
	evs := []domain.AuditEvent{
		{ID: "alert.accepted/5e1f6f2b7a0c9d3e|firing|1795510800", Time: t0.Add(-time.Second), Actor: domain.Actor{Kind: domain.ActorAlert, Name: "salve"},
			Action: domain.ActionAlertAccepted, Outcome: domain.StatusFiring,
			Detail: map[string]string{"alertId": "5e1f6f2b7a0c9d3e|firing|1795510800", "alertname": "KubeDeploymentCrashLooping", "fingerprint": "5e1f6f2b7a0c9d3e", "startsAt": "2026-11-24T08:59:00Z"}},
		{ID: "trigger.matched/x", Time: t0, Actor: domain.Actor{Kind: domain.ActorSystem, Name: "trigger"}, Action: domain.ActionTriggerMatched,
			Runbook: "restart-crashlooping", RunbookHash: strings.Repeat("ab", 32), WorkflowID: wfRunning, RunID: runRunning, IncidentKey: "shop/api", Outcome: "started",
			Detail: map[string]string{"alertId": "5e1f6f2b7a0c9d3e|firing|1795510800"}},
		{ID: "run.started/" + runRunning, Time: t0, Actor: domain.Actor{Kind: domain.ActorAlert, Name: "KubeDeploymentCrashLooping"}, Action: domain.ActionRunStarted,
			Runbook: "restart-crashlooping", WorkflowID: wfRunning, RunID: runRunning, IncidentKey: "shop/api"},
		{ID: "step.succeeded/" + runRunning + "/before", Time: t0.Add(2 * time.Second), Actor: domain.Actor{Kind: domain.ActorSystem, Name: "worker"}, Action: domain.ActionStepSucceeded,
			Runbook: "restart-crashlooping", WorkflowID: wfRunning, RunID: runRunning, Step: "before", Target: "deployment shop/api", Outcome: "succeeded"},
		{ID: "step.failed/old/restart", Time: t0.Add(3 * time.Second), Actor: domain.Actor{Kind: domain.ActorSystem, Name: "worker"}, Action: domain.ActionStepFailed,
			Runbook: "restart-crashlooping", WorkflowID: wfRunning, RunID: "an-earlier-run", Step: "restart", Outcome: "failed", Error: "boom"},
		{ID: "run.finished/" + runRunning, Time: t0.Add(time.Minute), Actor: domain.Actor{Kind: domain.ActorSystem, Name: "workflow"}, Action: domain.ActionRunFinished,
			Runbook: "restart-crashlooping", WorkflowID: wfRunning, RunID: runRunning, IncidentKey: "shop/api", Outcome: "succeeded"},
	}
	out := make([]audit.Record, len(evs))
	prev := strings.Repeat("0", 64)
	for i, ev := range evs {
		h := fmt.Sprintf("%064x", i+1)
		out[i] = audit.Record{Seq: int64(i + 1), Event: ev, PrevHash: prev, Hash: h}
		prev = h
	}
	return out
}

// fakeRecorder collects the events the API audits.
type fakeRecorder struct {
	mu  sync.Mutex
	evs []domain.AuditEvent
	err error // every Record fails with it (the audit stream is down)
}

func (r *fakeRecorder) Record(_ context.Context, ev domain.AuditEvent) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return r.err
	}
	r.evs = append(r.evs, ev)
	return nil
}

func (r *fakeRecorder) events(action string) []domain.AuditEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []domain.AuditEvent
	for _, ev := range r.evs {
		if ev.Action == action {
			out = append(out, ev)
		}
	}
	return out
}

// fakeAlertStore stores webhooks; alerts labelled salve_test="unstorable"
// fail like a JetStream outage.
type fakeAlertStore struct{}

func (fakeAlertStore) PublishAlerts(_ context.Context, evs []domain.AlertEvent) error {
	for _, ev := range evs {
		if ev.Labels["salve_test"] == "unstorable" {
			return errors.New("nats: timeout")
		}
	}
	return nil
}

type fakeIngestAudit struct{}

func (fakeIngestAudit) RecordAll(context.Context, []domain.AuditEvent) error { return nil }

// restartRunbook uses most of the runbook language, so responses that
// carry a runbook or its plan exercise most of their schemas.
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
    onResolved: finish
  params:
    namespace: {fromLabel: namespace, required: true, type: enum, values: [shop, payments]}
    deployment: {fromLabel: deployment, required: true, type: k8sName, description: the Deployment}
    replicas: {type: int, default: "3", min: 1, max: 20}
    env: {type: enum, values: [staging, production], default: staging}
    verifyFor: {type: duration, default: 2m, max: 30m, fromAnnotation: salve_verify_for}
  toil: {manualMinutes: 20}
  safety:
    cooldown: 30m
    maxRunsPerHour: 3
    maxConcurrent: 2
    circuitBreaker: {failures: 3, window: 1h}
    approval: {required: true, timeout: 15m}
  access:
    approvers: [bob, group:sre]
  credentials:
    kubernetes: {vaultRole: 'salve-{{ .Params.namespace }}', ttl: 10m}
  steps:
    - name: before
      action: kubernetes.get
      with: {namespace: '{{ .Params.namespace }}', name: '{{ .Params.deployment }}'}
    - name: restart
      action: kubernetes.restart
      with: {namespace: '{{ .Params.namespace }}', name: '{{ .Params.deployment }}', wait: true}
      timeout: 5m
      retry: {maxAttempts: 2, initialInterval: 2s, maxInterval: 30s}
      approval: {required: true, timeout: 5m, onTimeout: continue}
    - name: verify
      action: prometheus.assert
      when: '{{ ne .Params.env "staging" }}'
      continueOnError: true
      with:
        query: 'sum(increase(kube_pod_container_status_restarts_total{namespace="{{ .Params.namespace }}"}[{{ .Params.verifyFor }}])) == 0'
        for: '{{ .Params.verifyFor }}'
        within: 10m
  onFailure:
    - name: tell_owners
      action: http.request
      with: {url: 'http://pager.internal/v1/page', method: POST}
`

// restrictedRunbook may be launched by ada and the db-admins group only.
const restrictedRunbook = `apiVersion: salve/v1
kind: Runbook
metadata: {name: failover-db}
spec:
  safety: {mode: dry-run}
  access:
    launchers: [ada, group:db-admins]
  steps:
    - name: ping
      action: http.request
      with: {url: 'http://db.internal/health'}
`

// A token for each role, and the webhook's.
type tokens struct{ viewer, operator, admin, webhook string }

type fixture struct {
	srv      *api.Server
	runs     *fakeRuns
	audit    *fakeAudit
	recorder *fakeRecorder
	tok      tokens
}

var (
	catalogOnce sync.Once
	catalog     runbooks.StepCatalog
	runbookSet  *runbooks.Set
	catalogErr  error
)

func loadRunbooks() (runbooks.StepCatalog, *runbooks.Set, error) {
	catalogOnce.Do(func() {
		reg, err := activities.NewRegistry()
		if err != nil {
			catalogErr = err
			return
		}
		var rbs []*runbooks.Runbook
		for name, src := range map[string]string{"restart-crashlooping.yaml": restartRunbook, "failover-db.yaml": restrictedRunbook} {
			rb, err := runbooks.Parse("runbooks/"+name, []byte(src), reg)
			if err != nil {
				catalogErr = err
				return
			}
			rbs = append(rbs, rb)
		}
		catalog = reg
		runbookSet, catalogErr = runbooks.NewSet(rbs...)
	})
	return catalog, runbookSet, catalogErr
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	cat, set, err := loadRunbooks()
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
		{&tok.admin, "ada", "admin", []string{"sre", "platform"}},
	} {
		token, hash, err := auth.NewToken()
		require.NoError(t, err)
		*u.tok = token
		cfgs = append(cfgs, auth.TokenConfig{Subject: u.subject, Role: u.role, Groups: u.groups, SHA256: hash})
	}
	authn, err := auth.New(cfgs)
	require.NoError(t, err)
	tok.webhook = "webhook-" + strings.Repeat("w", 32)

	log := slog.New(slog.DiscardHandler)
	fr := &fakeRuns{}
	fa := &fakeAudit{recs: auditRecords(), alerts: []audit.AlertState{
		{Fingerprint: "5e1f6f2b7a0c9d3e", Alertname: "KubeDeploymentCrashLooping", Labels: map[string]string{"alertname": "KubeDeploymentCrashLooping", "namespace": "shop"},
			StartsAt: t0.Add(-time.Minute), ReceivedAt: t0.Add(-time.Second)},
		{Fingerprint: "77aa", Alertname: "HighErrorRate", Labels: map[string]string{"alertname": "HighErrorRate"},
			StartsAt: t0.Add(-2 * time.Hour), ReceivedAt: t0.Add(-2 * time.Hour), ResolvedAt: t0.Add(-time.Hour)},
	}}
	rec := &fakeRecorder{}
	srv := &api.Server{
		Ingest: &triggers.Ingest{Store: fakeAlertStore{}, Audit: fakeIngestAudit{}, Token: tok.webhook, MaxBody: 64 << 10, Log: log},
		Runs:   fr, Runbooks: triggers.StaticRunbooks{Set: set}, Catalog: cat,
		Audit: fa, Recorder: rec, Auth: authn,
		Reload: func(context.Context) (runbookload.Change, error) {
			return runbookload.Change{Loaded: []string{"restart-crashlooping"}, Rejected: []string{"runbooks/bad.yaml:3: spec.steps: required"}}, nil
		},
		PublicURL: "https://salve.example.com/",
		Checks: []api.Check{
			{Name: "temporal", Check: func(context.Context) error { return nil }},
			{Name: "nats", Check: func(context.Context) error { return nil }, Warning: "dev only: NATS without TLS"},
		},
		Version:    "v0.0.0-test",
		Log:        log,
		EventsPoll: 5 * time.Millisecond,
		Metrics: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain; version=0.0.4")
			_, _ = io.WriteString(w, "salve_runs_total{runbook=\"r\",outcome=\"succeeded\"} 1\n")
		}),
		Safety: fakeSafety{},
		Failed: fakeFailed{},
		Stats:  (&stats.Computer{Source: fa, Pending: func(context.Context) (int, error) { return 1, nil }}).Compute,
	}
	return &fixture{srv: srv, runs: fr, audit: fa, recorder: rec, tok: tok}
}

// request is one API call of a test.
type request struct {
	method, path string
	token        string
	body         string
	header       map[string]string
}

func (r request) build() *http.Request {
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	req := httptest.NewRequest(r.method, r.path, body)
	if r.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if r.token != "" {
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	for k, v := range r.header {
		req.Header.Set(k, v)
	}
	return req
}

// do calls the API and returns the recorded response.
func (fx *fixture) do(r request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	fx.srv.Handler().ServeHTTP(rec, r.build())
	return rec
}

type fakeSafety struct{}

func (fakeSafety) State(_ context.Context, runbook string) (safety.BreakerState, error) {
	return safety.BreakerState{Runbook: runbook, Open: true, OpenSince: t0, Failures: 3, Active: 1, Starts: 4}, nil
}

func (fakeSafety) Reset(context.Context, string) (bool, error) { return true, nil }

// fakeFailed holds one parked alert, "f1"; a retry of any other is 404.
type fakeFailed struct{}

var parked = triggers.FailedAlert{ID: "f1", AlertID: "fp|firing|2026-11-24T09:00:00Z", Alertname: "Crash", Status: "firing",
	Runbook: "restart-crashlooping", IncidentKey: "café", WorkflowID: domain.WorkflowID("restart-crashlooping", "café"),
	Reason: "incident key: label deployment missing", FailedAt: time.Date(2026, 11, 24, 9, 0, 1, 0, time.UTC), StreamSeq: 7}

func (fakeFailed) List(context.Context) ([]triggers.FailedAlert, error) {
	return []triggers.FailedAlert{parked}, nil
}

func (fakeFailed) Retry(_ context.Context, id string) (triggers.FailedAlert, error) {
	if id != parked.ID {
		return triggers.FailedAlert{}, triggers.ErrFailedNotFound
	}
	return parked, nil
}

// shadowMode puts the fixture's runbook name in shadow mode (a copy: the
// shared set stays as it is) and returns the copy.
func shadowMode(t testing.TB, fx *fixture, name string) *runbooks.Runbook {
	t.Helper()
	_, set, err := loadRunbooks()
	require.NoError(t, err)
	var rbs []*runbooks.Runbook
	var shadow *runbooks.Runbook
	for _, rb := range set.All() {
		if rb.Name() == name {
			c := *rb
			c.Spec.Safety.Mode = runbooks.ModeShadow
			rb, shadow = &c, &c
		}
		rbs = append(rbs, rb)
	}
	shadowSet, err := runbooks.NewSet(rbs...)
	require.NoError(t, err)
	fx.srv.Runbooks = triggers.StaticRunbooks{Set: shadowSet}
	return shadow
}
