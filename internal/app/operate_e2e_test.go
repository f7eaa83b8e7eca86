package app_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/activities/step"
	"github.com/salve-sre/salve/internal/api"
	"github.com/salve-sre/salve/internal/app"
	"github.com/salve-sre/salve/internal/audit"
	"github.com/salve-sre/salve/internal/auth"
	"github.com/salve-sre/salve/internal/cli"
	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/internal/runs"
	"github.com/salve-sre/salve/runbooks"
	"github.com/salve-sre/salve/workflows"
)

const guardedRunbook = `apiVersion: salve/v1
kind: Runbook
metadata: {name: guarded}
spec:
  trigger:
    matchers: ['alertname="Guarded"']
    incidentKey: '{{ .Labels.instance }}'
  params:
    target: {fromAnnotation: target, required: true, pattern: 'http://127\.0\.0\.1:[0-9]+'}
    replicas: {type: int, min: 1, max: 5, default: "2"}
  access: {approvers: ["group:sre", "bob"]}
  steps:
    - {name: diagnose, action: http.request, with: {url: '{{ .Params.target }}/diagnose'}}
    - name: fix
      action: http.request
      with: {url: '{{ .Params.target }}/fix?replicas={{ .Params.replicas }}', method: POST}
      approval: {required: true, timeout: 10m}
  onFailure:
    - {name: undo, action: http.request, with: {url: '{{ .Params.target }}/undo', method: POST}}
`

const quickRunbook = `apiVersion: salve/v1
kind: Runbook
metadata: {name: quick}
spec:
  params:
    target: {required: true, pattern: 'http://127\.0\.0\.1:[0-9]+'}
  steps:
    - {name: ping, action: http.request, with: {url: '{{ .Params.target }}/ping'}}
    - {name: tell, action: notify, with: {target: ops, text: 'pinged {{ .Params.target }}'}}
    - {name: never, action: http.request, when: '{{ eq .Params.target "nowhere" }}', with: {url: '{{ .Params.target }}/never'}}
`

const hastyRunbook = `apiVersion: salve/v1
kind: Runbook
metadata: {name: hasty}
spec:
  params:
    target: {required: true, pattern: 'http://127\.0\.0\.1:[0-9]+'}
  safety: {approval: {required: true, timeout: 2s}}
  steps:
    - {name: act, action: http.request, with: {url: '{{ .Params.target }}/hasty', method: POST}}
`

const slowRunbook = `apiVersion: salve/v1
kind: Runbook
metadata: {name: slow}
spec:
  params:
    target: {required: true, pattern: 'http://127\.0\.0\.1:[0-9]+'}
  steps:
    - {name: act, action: http.request, with: {url: '{{ .Params.target }}/act', method: POST}}
    - {name: settle, action: sleep, with: {duration: 1h}}
    - {name: verify, action: http.request, with: {url: '{{ .Params.target }}/verify'}}
  onFailure:
    - {name: undo, action: http.request, with: {url: '{{ .Params.target }}/undo', method: POST}}
`

// operators are the API tokens of the operate test, by role.
type operators struct {
	viewer, alice, bob, admin string
}

// hookSink records the notification hooks Salve sends.
type hookSink struct {
	*httptest.Server
	mu     sync.Mutex
	events []map[string]any
}

func (h *hookSink) list() []map[string]any {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]map[string]any{}, h.events...)
}

func startOperateDev(t *testing.T, rbDir string) (*app.Process, operators, *hookSink) {
	t.Helper()
	var ops operators
	var entries []string
	for _, e := range []struct {
		tok           *string
		subject, role string
		groups        string
	}{{&ops.viewer, "vera", "viewer", ""}, {&ops.alice, "alice", "operator", "[sre]"}, {&ops.bob, "bob", "operator", ""}, {&ops.admin, "root", "admin", ""}} {
		tok, hash, err := auth.NewToken()
		require.NoError(t, err)
		*e.tok = tok
		g := ""
		if e.groups != "" {
			g = ", groups: " + e.groups
		}
		entries = append(entries, fmt.Sprintf("    - {subject: %s, role: %s%s, sha256: %s}", e.subject, e.role, g, hash))
	}
	sink := &hookSink{}
	sink.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev map[string]any
		_ = json.NewDecoder(r.Body).Decode(&ev)
		sink.mu.Lock()
		sink.events = append(sink.events, ev)
		sink.mu.Unlock()
	}))
	t.Cleanup(sink.Close)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "hook-url"), []byte(sink.URL+"/hook\n"), 0o600))
	cfg := "auth:\n  tokens:\n" + strings.Join(entries, "\n") + `
notifications:
  targets:
    ops: {kind: webhook, urlFile: hook-url}
  hooks:
    - {target: ops}
publicURL: https://salve.example.com
`
	cfgPath := filepath.Join(dir, "salve.yaml")
	require.NoError(t, os.WriteFile(cfgPath, []byte(cfg), 0o600))

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d, err := app.Start(ctx, app.Config{
		DataDir:      t.TempDir(),
		Listen:       "127.0.0.1:0",
		WebhookToken: "test-token-6f1c0d9e7a3b42c8a6e1f0d4b7c9e2a1",
		RunbooksDir:  rbDir,
		ConfigFile:   cfgPath,
		TemporalPort: -1,
		NATSPort:     -1,
		UIPort:       -1,
		Version:      "test",
		Log:          slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	require.NoError(t, err)
	t.Cleanup(d.Close)
	require.Empty(t, d.AdminToken, "with tokens in the config, dev makes no admin token")
	devTokens.Store(d.URL, ops.admin)
	return d, ops, sink
}

// call sends a JSON request with a bearer token and decodes the answer.
func call(t *testing.T, method, u, token string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(t, err)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, u, rd)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return resp.StatusCode, out
}

func runPath(base, workflowID, action string) string {
	return base + "/v1/runs/" + url.PathEscape(workflowID) + "/" + action
}

// TestOperateEndToEnd drives launch, dry run, approvals, cancel and the
// event stream through the API of a real `salve dev` (embedded NATS and
// Temporal, real worker), with a target server recording every call.
func TestOperateEndToEnd(t *testing.T) {
	tg := newTarget(t)
	rbDir := t.TempDir()
	writeRunbook(t, rbDir, "guarded", guardedRunbook)
	writeRunbook(t, rbDir, "hasty", hastyRunbook)
	writeRunbook(t, rbDir, "slow", slowRunbook)
	writeRunbook(t, rbDir, "quick", quickRunbook)
	d, ops, sink := startOperateDev(t, rbDir)
	base := d.URL
	temporalAddr := d.TemporalAddr

	t.Run("bad params are a 400 naming them, and start nothing", func(t *testing.T) {
		code, body := call(t, "POST", base+"/v1/runbooks/guarded/launch", ops.alice,
			map[string]any{"params": map[string]string{"replicas": "9", "replcas": "3"}})
		require.Equal(t, http.StatusBadRequest, code, body)
		msg := body["error"].(string)
		require.Contains(t, msg, `unknown parameter "replcas"`)
		require.Contains(t, msg, `missing required parameter "target"`)
		require.Contains(t, msg, `parameter "replicas"`)
		code, body = call(t, "POST", base+"/v1/runbooks/guarded/launch", ops.alice, map[string]any{"parms": map[string]string{}})
		require.Equal(t, http.StatusBadRequest, code)
		require.Contains(t, body["error"], `unknown field "parms"`)
		code, body = call(t, "POST", base+"/v1/runbooks/nope/launch", ops.alice, map[string]any{})
		require.Equal(t, http.StatusNotFound, code)
		require.Contains(t, body["error"], "guarded, hasty, quick, slow")
		require.Empty(t, listRuns(t, base))
	})

	t.Run("a dry run returns the exact plan and touches nothing", func(t *testing.T) {
		code, body := call(t, "POST", base+"/v1/runbooks/guarded/launch", ops.alice,
			map[string]any{"dryRun": true, "incidentKey": "web-9", "params": map[string]string{"target": tg.URL}})
		require.Equal(t, http.StatusOK, code, body)
		raw, _ := json.Marshal(body["plan"])
		var plan runbooks.Plan
		require.NoError(t, json.Unmarshal(raw, &plan))
		require.Equal(t, "web-9", plan.IncidentKey)
		require.Equal(t, map[string]string{"target": tg.URL, "replicas": "2"}, plan.Params)
		require.Equal(t, []runbooks.PlannedStep{
			{Name: "diagnose", Action: "http.request", Mutating: true, With: map[string]any{"url": tg.URL + "/diagnose"}},
			{Name: "fix", Action: "http.request", Mutating: true, Approval: true, With: map[string]any{"url": tg.URL + "/fix?replicas=2", "method": "POST"}},
		}, plan.Steps)
		require.Equal(t, []runbooks.PlannedApproval{{Step: "fix", Timeout: runbooks.Duration(10 * time.Minute), OnTimeout: "fail"}}, plan.Approvals)
		require.Len(t, plan.OnFailure, 1)
		require.Empty(t, listRuns(t, base), "a dry run starts no workflow")
		time.Sleep(time.Second) // anything it wrongly started would have called by now
		tg.mu.Lock()
		require.Empty(t, tg.hits, "the target got requests from a dry run")
		tg.mu.Unlock()
		recs := waitAudit(t, base, "action="+domain.ActionRunPlanned, 1)
		require.Equal(t, "alice", recs[0].Event.Actor.Name)
	})

	t.Run("an alert run waits for approval; a group approver grants it; the event stream shows it in order", func(t *testing.T) {
		require.Equal(t, 200, postWebhook(t, base, d.WebhookToken, webhook("firing", "Guarded", "web-1", "g1", time.Now().Add(-time.Minute), map[string]string{"target": tg.URL})))
		wfID := "salve/guarded/web-1"
		stream := openEvents(t, base, wfID, ops.viewer)
		p := waitApproval(t, base, ops.viewer, wfID)
		require.Equal(t, "fix", p.Step)
		require.Equal(t, 1, tg.count("/diagnose"))
		require.Zero(t, tg.count("/fix"), "nothing acts before the approval")
		detail, _ := getRun(t, base, wfID)
		require.NotNil(t, detail.Run.Approval)
		require.Equal(t, workflows.StepStateWaiting, detail.Run.Steps[1].State)

		// Viewers cannot approve; a person not in access.approvers cannot either.
		code, body := call(t, "POST", runPath(base, wfID, "approve"), ops.viewer, runs.DecisionRequest{Reason: "lgtm"})
		require.Equal(t, http.StatusForbidden, code, body)
		require.Contains(t, body["error"], "needs role operator")
		code, body = call(t, "POST", runPath(base, wfID, "approve"), ops.admin, runs.DecisionRequest{Reason: "lgtm"})
		require.Equal(t, http.StatusForbidden, code, body)
		require.Contains(t, body["error"], "root is not an approver of runbook guarded")
		code, body = call(t, "POST", runPath(base, wfID, "approve"), ops.alice, runs.DecisionRequest{})
		require.Equal(t, http.StatusBadRequest, code, body)
		code, body = call(t, "POST", runPath(base, wfID, "approve"), ops.alice, runs.DecisionRequest{Reason: "lgtm", Step: "diagnose"})
		require.Equal(t, http.StatusConflict, code, body)

		code, body = call(t, "POST", runPath(base, wfID, "approve"), ops.alice, runs.DecisionRequest{Reason: "checked the dashboards"})
		require.Equal(t, http.StatusOK, code, body)
		require.Equal(t, "approved", body["decision"])
		require.Equal(t, "alice", body["by"])
		final := waitRunStatus(t, base, wfID, runs.StatusSucceeded, time.Minute)
		require.Equal(t, 1, tg.count("/fix"))
		saveHistory(t, temporalAddr, wfID, final.RunID, "approval")
		require.Equal(t, []workflows.ApprovalRecord{{Step: "fix", Decision: "approved", By: "alice", Reason: "checked the dashboards", At: final.Run.Approvals[0].At}}, final.Run.Approvals)

		// The stream delivered the run's events in order and ended.
		names := stream.wait(t)
		require.Equal(t, []string{
			"trigger.matched", "run.started", "step.started:diagnose", "step.succeeded:diagnose",
			"approval.requested:fix", "approval.granted:fix",
			"step.started:fix", "step.succeeded:fix", "run.finished", "end",
		}, names)

		// The approver is in the audit log, and so are the refusals.
		granted := waitAudit(t, base, "action="+domain.ActionApprovalGranted, 1)
		require.Equal(t, domain.Actor{Kind: domain.ActorUser, Name: "alice"}, granted[0].Event.Actor)
		require.Equal(t, "checked the dashboards", granted[0].Event.Detail["reason"])
		denied := waitAudit(t, base, "action="+domain.ActionAuthDenied, 2)
		var who []string
		for _, r := range denied {
			who = append(who, r.Event.Actor.Name+":"+r.Event.Outcome)
		}
		require.Subset(t, who, []string{"vera:403", "root:403"})

		// Hooks reached the webhook target, with links to the run.
		require.Eventually(t, func() bool { return len(hookEvents(sink, wfID)) >= 3 }, 10*time.Second, 100*time.Millisecond)
		require.ElementsMatch(t, []string{step.HookStarted, step.HookApprovalNeeded, step.HookSucceeded}, hookEvents(sink, wfID), "hooks do not wait for each other: any order")
		for _, ev := range sink.list() {
			if ev["workflowId"] == wfID {
				require.Equal(t, "https://salve.example.com/v1/runs/"+url.PathEscape(wfID), ev["link"])
			}
		}
	})

	t.Run("self-approval of a manual launch is refused; another operator may reject", func(t *testing.T) {
		code, body := call(t, "POST", base+"/v1/runbooks/guarded/launch", ops.alice,
			map[string]any{"incidentKey": "manual-a", "reason": "testing", "params": map[string]string{"target": tg.URL}})
		require.Equal(t, http.StatusAccepted, code, body)
		wfID := body["workflowId"].(string)
		require.Equal(t, "salve/guarded/manual-a", wfID)
		require.Equal(t, "https://salve.example.com/v1/runs/"+url.PathEscape(wfID), body["url"])
		// A second launch for the same incident is a conflict, not a second run.
		code, body = call(t, "POST", base+"/v1/runbooks/guarded/launch", ops.bob,
			map[string]any{"incidentKey": "manual-a", "params": map[string]string{"target": tg.URL}})
		require.Equal(t, http.StatusConflict, code, body)
		require.Contains(t, body["error"], "already running")

		waitApproval(t, base, ops.viewer, wfID)
		code, body = call(t, "POST", runPath(base, wfID, "approve"), ops.alice, runs.DecisionRequest{Reason: "me"})
		require.Equal(t, http.StatusForbidden, code, body)
		require.Contains(t, body["error"], "alice launched this run and may not decide its approval")
		code, body = call(t, "POST", runPath(base, wfID, "reject"), ops.bob, runs.DecisionRequest{Reason: "not today"})
		require.Equal(t, http.StatusOK, code, body)
		require.Equal(t, "rejected", body["decision"])
		d := waitRunStatus(t, base, wfID, runs.StatusCancelled, time.Minute)
		saveHistory(t, temporalAddr, wfID, d.RunID, "reject-compensate")
		require.Equal(t, workflows.RunStateRejected, d.Run.State)
		require.Equal(t, "rejected by bob: not today", d.Run.StopReason)
		require.Equal(t, "alice", d.Run.LaunchedBy)
		require.Equal(t, 2, tg.count("/diagnose"))
		require.Equal(t, 1, tg.count("/fix"), "the rejected step never ran")
		require.Equal(t, 1, tg.count("/undo"), "diagnose acted, so compensation ran")
		launched := waitAudit(t, base, "action="+domain.ActionRunLaunched, 2)
		require.Equal(t, "alice", launched[0].Event.Actor.Name)
		require.Equal(t, "started", launched[0].Event.Outcome)
		require.Equal(t, "testing", launched[0].Event.Detail["reason"])
		require.Equal(t, "bob", launched[1].Event.Actor.Name, "the refused second launch is audited too")
		require.Equal(t, "conflict", launched[1].Event.Outcome)
	})

	t.Run("an approval nobody gives times out and the run fails", func(t *testing.T) {
		code, body := call(t, "POST", base+"/v1/runbooks/hasty/launch", ops.alice, map[string]any{"params": map[string]string{"target": tg.URL}})
		require.Equal(t, http.StatusAccepted, code, body)
		d := waitRunStatus(t, base, body["workflowId"].(string), runs.StatusFailed, time.Minute)
		saveHistory(t, temporalAddr, body["workflowId"].(string), d.RunID, "approval-timeout")
		require.Contains(t, d.Run.Error, "no decision on the approval of the whole run within 2s")
		require.Zero(t, tg.count("/hasty"))
	})

	t.Run("cancel mid-run stops the run and runs onFailure", func(t *testing.T) {
		code, body := call(t, "POST", base+"/v1/runbooks/slow/launch", ops.bob, map[string]any{"params": map[string]string{"target": tg.URL}})
		require.Equal(t, http.StatusAccepted, code, body)
		wfID := body["workflowId"].(string)
		require.Eventually(t, func() bool { return tg.count("/act") == 1 }, 30*time.Second, 100*time.Millisecond)
		code, body = call(t, "POST", runPath(base, wfID, "cancel"), ops.viewer, runs.CancelRequest{Reason: "x"})
		require.Equal(t, http.StatusForbidden, code, body)
		code, body = call(t, "POST", runPath(base, wfID, "cancel"), ops.bob, runs.CancelRequest{Reason: "wrong service"})
		require.Equal(t, http.StatusAccepted, code, body)
		d := waitRunStatus(t, base, wfID, runs.StatusCancelled, time.Minute)
		saveHistory(t, temporalAddr, wfID, d.RunID, "cancel")
		require.Equal(t, workflows.RunStateCancelled, d.Run.State)
		require.Equal(t, 2, tg.count("/undo"), "undo ran (once before, for the rejected run)")
		require.Zero(t, tg.count("/verify"))
		code, body = call(t, "POST", runPath(base, wfID, "cancel"), ops.bob, runs.CancelRequest{})
		require.Equal(t, http.StatusConflict, code, body)
		reqs := waitAudit(t, base, "action="+domain.ActionRunCancelRequest, 1)
		require.Equal(t, "bob", reqs[0].Event.Actor.Name)
		require.Equal(t, "wrong service", reqs[0].Event.Detail["reason"])
	})

	t.Run("the CLI launches, waits with live progress, and shows the run", func(t *testing.T) {
		var out, errOut bytes.Buffer
		code := cli.Execute(context.Background(), []string{"launch", "quick", "--addr", base, "--token", ops.bob,
			"-p", "target=" + tg.URL, "--incident-key", "cli-1", "--reason", "from the CLI", "--wait"}, &out, &errOut)
		require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", out.String(), errOut.String())
		require.Contains(t, out.String(), "ping")
		require.Contains(t, out.String(), "succeeded")
		require.Equal(t, 1, tg.count("/ping"))
		// The notify step reached the configured webhook target.
		require.Eventually(t, func() bool {
			for _, ev := range sink.list() {
				if ev["text"] == "pinged "+tg.URL {
					return true
				}
			}
			return false
		}, 10*time.Second, 100*time.Millisecond)

		out.Reset()
		code = cli.Execute(context.Background(), []string{"runs", "show", "salve/quick/cli-1", "--addr", base, "--token", ops.viewer, "-o", "json"}, &out, &errOut)
		require.Equal(t, 0, code, errOut.String())
		var det runs.Detail
		require.NoError(t, json.Unmarshal(out.Bytes(), &det))
		require.Equal(t, "bob", det.Run.LaunchedBy)
		require.Equal(t, "from the CLI", det.Run.Reason)
		require.Equal(t, "skipped", det.Run.Steps[2].State, "its when is false")
		require.Zero(t, tg.count("/never"))
		saveHistory(t, temporalAddr, "salve/quick/cli-1", det.RunID, "when-skip")

		// A viewer's launch is refused with the reason, exit code 1.
		errOut.Reset()
		code = cli.Execute(context.Background(), []string{"launch", "quick", "--addr", base, "--token", ops.viewer, "-p", "target=x"}, &out, &errOut)
		require.Equal(t, 1, code)
		require.Contains(t, errOut.String(), "needs role operator")
		// A failing run makes --wait exit 1.
		code = cli.Execute(context.Background(), []string{"launch", "quick", "--addr", base, "--token", ops.bob,
			"-p", "target=http://127.0.0.1:1", "--wait"}, &out, &errOut)
		require.Equal(t, 1, code, errOut.String())
	})

	t.Run("a retried launch with the same Idempotency-Key finds its run", func(t *testing.T) {
		launch := func() (int, map[string]any) {
			b, _ := json.Marshal(map[string]any{"params": map[string]string{"target": tg.URL}})
			req, _ := http.NewRequest("POST", base+"/v1/runbooks/quick/launch", bytes.NewReader(b))
			req.Header.Set("Authorization", "Bearer "+ops.bob)
			req.Header.Set("Idempotency-Key", "retry-me")
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			var out map[string]any
			require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
			return resp.StatusCode, out
		}
		code1, first := launch()
		code2, second := launch()
		require.Equal(t, http.StatusAccepted, code1, first)
		require.Equal(t, http.StatusAccepted, code2, second)
		require.Equal(t, first["workflowId"], second["workflowId"])
		require.Equal(t, first["runId"], second["runId"], "one run, not two")
		waitRunStatus(t, base, first["workflowId"].(string), runs.StatusSucceeded, time.Minute)
		require.Equal(t, 2, tg.count("/ping"), "the CLI launch before + this one (the failing CLI launch pinged elsewhere)")
	})

	t.Run("runs filter, runbook detail and approvals list", func(t *testing.T) {
		var list struct{ Runs []runs.Summary }
		// Filters are Temporal visibility queries, which lag a run's
		// closing a little.
		require.Eventually(t, func() bool {
			getJSON(t, base+"/v1/runs?runbook=guarded&status=succeeded", &list)
			return len(list.Runs) >= 1
		}, 30*time.Second, 100*time.Millisecond)
		require.Len(t, list.Runs, 1)
		require.Equal(t, "salve/guarded/web-1", list.Runs[0].WorkflowID)
		require.Eventually(t, func() bool {
			getJSON(t, base+"/v1/runs?runbook=guarded&incidentKey=manual-a", &list)
			return len(list.Runs) >= 1
		}, 30*time.Second, 100*time.Millisecond)
		require.Len(t, list.Runs, 1)
		code, body := call(t, "GET", base+"/v1/runs?status=bogus", ops.viewer, nil)
		require.Equal(t, http.StatusBadRequest, code, body)
		var rb struct {
			Stats      runs.RunbookStats
			RecentRuns []runs.Summary
		}
		getJSON(t, base+"/v1/runbooks/guarded", &rb)
		require.Equal(t, 2, rb.Stats.Runs)
		require.Equal(t, 1, rb.Stats.Succeeded)
		require.NotNil(t, rb.Stats.SuccessRate)
		require.InDelta(t, 1.0, *rb.Stats.SuccessRate, 0.001, "a rejected run is not a failure")
		var ap struct{ Approvals []runs.PendingApproval }
		getJSON(t, base+"/v1/approvals", &ap)
		require.Empty(t, ap.Approvals)
	})
}

// TestRBACMatrix calls every endpoint with every kind of caller against a
// real server: no token, the webhook token, and each role.
func TestRBACMatrix(t *testing.T) {
	d, ops, _ := startOperateDev(t, t.TempDir())
	require.Eventually(t, func() bool {
		code, _ := call(t, "GET", d.URL+"/readyz", "", nil)
		return code == http.StatusOK
	}, time.Minute, 100*time.Millisecond)
	callers := []struct {
		name  string
		token string
		role  auth.Role
	}{{"anonymous", "", -1}, {"webhook-token", d.WebhookToken, -1}, {"garbage", "salve_nope", -1},
		{"viewer", ops.viewer, auth.RoleViewer}, {"operator", ops.bob, auth.RoleOperator}, {"admin", ops.admin, auth.RoleAdmin}}
	fill := strings.NewReplacer("{id}", url.PathEscape("salve/none/x"), "{name}", "none", "{key}", "x")
	for _, rt := range (&api.Server{}).Routes() {
		for _, c := range callers {
			t.Run(rt.Method+" "+rt.Path+" as "+c.name, func(t *testing.T) {
				u := d.URL + fill.Replace(rt.Path)
				var body any
				if rt.Method == "POST" {
					body = map[string]any{}
				}
				if rt.Path == "/v1/runs/{id}/events" {
					u += "?after=0" // the run does not exist: 404 once authorized
				}
				code, resp := call(t, rt.Method, u, c.token, body)
				switch {
				case rt.Path == "/v1/alertmanager":
					if c.name == "webhook-token" {
						require.NotEqual(t, http.StatusUnauthorized, code, resp)
					} else {
						require.Equal(t, http.StatusUnauthorized, code, "only the webhook token may ingest: %v", resp)
					}
				case rt.Role == auth.RoleNone:
					require.Less(t, code, 400, resp)
				case c.role < 0:
					require.Equal(t, http.StatusUnauthorized, code, resp)
					require.Contains(t, resp["error"], "token")
				case c.role < rt.Role:
					require.Equal(t, http.StatusForbidden, code, resp)
					require.Contains(t, resp["error"], "needs role "+rt.Role.String())
				default:
					require.NotContains(t, []int{401, 403}, code, "%s may %s %s: %v", c.name, rt.Method, rt.Path, resp)
				}
			})
		}
	}
}

// waitAudit waits until the audit store holds n records for query (the
// recorder appends them shortly after they are published) and returns them.
func waitAudit(t *testing.T, base, query string, n int) []audit.Record {
	t.Helper()
	var recs []audit.Record
	require.Eventually(t, func() bool {
		recs = auditEvents(t, base, query)
		return len(recs) >= n
	}, 15*time.Second, 100*time.Millisecond, "want %d audit records for %s", n, query)
	require.Len(t, recs, n, query)
	return recs
}

func hookEvents(s *hookSink, wfID string) []string {
	var out []string
	for _, ev := range s.list() {
		if ev["workflowId"] == wfID {
			out = append(out, fmt.Sprint(ev["event"]))
		}
	}
	return out
}

func waitApproval(t *testing.T, base, token, wfID string) runs.PendingApproval {
	t.Helper()
	var found runs.PendingApproval
	require.Eventually(t, func() bool {
		code, body := call(t, "GET", base+"/v1/approvals", token, nil)
		if code != 200 {
			return false
		}
		raw, _ := json.Marshal(body["approvals"])
		var list []runs.PendingApproval
		_ = json.Unmarshal(raw, &list)
		for _, p := range list {
			if p.WorkflowID == wfID {
				found = p
				return true
			}
		}
		return false
	}, time.Minute, 200*time.Millisecond, "run %s never waited for approval", wfID)
	return found
}

// eventStream reads a run's Server-Sent Events in the background.
type eventStream struct {
	done  chan struct{}
	names []string
	err   error
}

func openEvents(t *testing.T, base, wfID, token string) *eventStream {
	t.Helper()
	// The run may not exist the instant the webhook is answered.
	var resp *http.Response
	require.Eventually(t, func() bool {
		req, _ := http.NewRequest("GET", runPath(base, wfID, "events"), nil)
		req.Header.Set("Authorization", "Bearer "+token)
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		if r.StatusCode != 200 {
			r.Body.Close()
			return false
		}
		resp = r
		return true
	}, 30*time.Second, 100*time.Millisecond)
	require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	s := &eventStream{done: make(chan struct{})}
	go func() {
		defer close(s.done)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var name, data string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				data = strings.TrimPrefix(line, "data: ")
			case line == "" && name != "":
				var ev domain.AuditEvent
				_ = json.Unmarshal([]byte(data), &ev)
				n := name
				if ev.Step != "" && name != "end" {
					n += ":" + ev.Step
				}
				s.names = append(s.names, n)
				if name == "end" {
					return
				}
				name, data = "", ""
			}
		}
		s.err = sc.Err()
	}()
	return s
}

func (s *eventStream) wait(t *testing.T) []string {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("the event stream did not end; got %v", s.names)
	}
	require.NoError(t, s.err)
	return s.names
}
