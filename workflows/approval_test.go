package workflows_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/salve-sre/salve/activities/step"
	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/workflows"
)

const approvalRunbook = `apiVersion: salve/v1
kind: Runbook
metadata: {name: guarded}
spec:
  toil: {manualMinutes: 20}
  access: {approvers: [alice, "group:sre"]}
  steps:
    - {name: diagnose, action: http.request, with: {url: "http://x/diagnose"}}
    - name: scale
      action: http.request
      with: {url: "http://x/scale"}
      approval: {required: true, timeout: 30m}
    - {name: verify, action: http.request, with: {url: "http://x/verify"}}
  onFailure:
    - {name: undo, action: http.request, with: {url: "http://x/undo"}}
`

// decide sends the approval Update at `after` and records how it ended.
type decision struct {
	rejected error // the validator's refusal
	err      error // the handler's error
	ack      workflows.DecisionAck
	done     bool
}

func decide(t *testing.T, env *testsuite.TestWorkflowEnvironment, after time.Duration, d workflows.Decision) *decision {
	t.Helper()
	out := &decision{}
	env.RegisterDelayedCallback(func() {
		env.UpdateWorkflow(workflows.UpdateApproval, "", &testsuite.TestUpdateCallback{
			OnAccept: func() {},
			OnReject: func(err error) { out.rejected, out.done = err, true },
			OnComplete: func(v any, err error) {
				out.err, out.done = err, true
				if ack, ok := v.(workflows.DecisionAck); ok {
					out.ack = ack
				}
			},
		}, d)
	}, after)
	return out
}

func user(name string) domain.Actor { return domain.Actor{Kind: domain.ActorUser, Name: name} }

func TestApprovalGranted(t *testing.T) {
	env, rec := newEnv(t, nil)
	rb := parseRunbook(t, approvalRunbook)
	var waiting workflows.Status
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(workflows.QueryStatus)
		require.NoError(t, err)
		require.NoError(t, v.Get(&waiting))
	}, 5*time.Minute)
	d := decide(t, env, 10*time.Minute, workflows.Decision{Approve: true, Reason: "looks right", Actor: user("alice")})

	st, err := run(t, env, workflows.Input{Runbook: rb, IncidentKey: "k", Alert: firing(), Actor: domain.Actor{Kind: domain.ActorAlert, Name: "WebDown"}})
	require.NoError(t, err)
	require.True(t, d.done)
	require.NoError(t, d.rejected)
	require.NoError(t, d.err)
	require.Equal(t, workflows.DecisionAck{Step: "scale", Decision: workflows.DecisionApproved}, d.ack)

	// While waiting, the status shows the pending approval and the step.
	require.NotNil(t, waiting.Approval)
	require.Equal(t, "scale", waiting.Approval.Step)
	require.Equal(t, t0.Add(30*time.Minute), waiting.Approval.Deadline)
	require.Equal(t, workflows.StepStateWaiting, waiting.Steps[1].State)
	require.Equal(t, []string{"diagnose"}, stepsOf(waiting), "nothing after the approval ran")

	require.Equal(t, workflows.RunStateSucceeded, st.State)
	require.Nil(t, st.Approval)
	require.Equal(t, []string{"diagnose", "scale", "verify"}, rec.steps())
	require.Len(t, st.Approvals, 1)
	require.Equal(t, workflows.ApprovalRecord{Step: "scale", Decision: workflows.DecisionApproved, By: "alice", Reason: "looks right", At: t0.Add(10 * time.Minute)}, st.Approvals[0])
	// The scale step started after the approval, not before.
	require.Equal(t, t0.Add(10*time.Minute), st.Steps[1].StartedAt)

	granted := rec.audit(t, domain.ActionApprovalGranted)
	require.Equal(t, user("alice"), granted.Actor, "the approver is the actor of the audit record")
	require.Equal(t, "looks right", granted.Detail["reason"])
	require.Equal(t, "600.000", granted.Detail["waitSeconds"])
	finished := rec.audit(t, domain.ActionRunFinished)
	require.Equal(t, "600.000", finished.Detail["approvalWaitSeconds"])
	require.Equal(t, "600.000", finished.Detail["durationSeconds"])
	require.Equal(t, "600.000", finished.Detail["toilSeconds"], "20 manual minutes, less the 10 a person spent approving")
	require.Equal(t, []string{"run.started", "approval.requested:scale", "approval.granted:scale", "run.finished"}, rec.auditActions())
	// Hooks are fire-and-forget activities: they may run in any order.
	require.ElementsMatch(t, []string{"started", "approval_needed:scale", "succeeded"}, rec.hookEvents())
}

func stepsOf(st workflows.Status) []string {
	var out []string
	for _, s := range st.Steps {
		if s.State == workflows.StepStateSucceeded {
			out = append(out, s.Name)
		}
	}
	return out
}

func TestApprovalRejectedStopsAndCompensates(t *testing.T) {
	env, rec := newEnv(t, nil)
	rb := parseRunbook(t, approvalRunbook)
	d := decide(t, env, time.Minute, workflows.Decision{Approve: false, Reason: "wrong cluster", Actor: user("bob"), Groups: []string{"sre"}})

	st, err := run(t, env, workflows.Input{Runbook: rb, IncidentKey: "k"})
	var cancelled *temporal.CanceledError
	require.ErrorAs(t, err, &cancelled, "a rejected run is not a runbook failure")
	require.NoError(t, d.rejected, "bob approves through group:sre")
	require.Equal(t, workflows.DecisionRejected, d.ack.Decision)

	require.Equal(t, workflows.RunStateRejected, st.State)
	require.Equal(t, "rejected by bob: wrong cluster", st.StopReason)
	require.Equal(t, workflows.StepStateSkipped, st.Steps[1].State)
	require.Len(t, st.Steps, 2, "verify never started")
	// diagnose acted, so compensation runs, as for a cancel.
	require.Equal(t, []string{"diagnose", "undo"}, rec.steps())
	require.Equal(t, "wrong cluster", rec.audit(t, domain.ActionApprovalRejected).Detail["reason"])
	// Hooks are fire-and-forget activities: they may run in any order.
	require.ElementsMatch(t, []string{"started", "approval_needed:scale", "rejected"}, rec.hookEvents())
}

func TestApprovalTimeout(t *testing.T) {
	for _, tc := range []struct {
		onTimeout string
		wantState string
		wantSteps []string
	}{
		{"fail", workflows.RunStateFailed, []string{"act"}},
		{"continue", workflows.RunStateSucceeded, []string{"act"}},
	} {
		t.Run(tc.onTimeout, func(t *testing.T) {
			env, rec := newEnv(t, nil)
			rb := parseRunbook(t, `apiVersion: salve/v1
kind: Runbook
metadata: {name: timed}
spec:
  safety: {approval: {required: true, timeout: 20m, onTimeout: `+tc.onTimeout+`}}
  steps:
    - {name: act, action: http.request, with: {url: "http://x/act"}}
`)
			st, err := run(t, env, workflows.Input{Runbook: rb, IncidentKey: "k"})
			require.Equal(t, tc.wantState, st.State)
			require.Len(t, st.Approvals, 1)
			require.Equal(t, workflows.DecisionTimedOut, st.Approvals[0].Decision)
			require.Equal(t, t0.Add(20*time.Minute), st.Approvals[0].At, "the timeout is durable virtual time")
			require.Contains(t, rec.hookEvents(), "approval_timed_out")
			rec.audit(t, domain.ActionApprovalTimedOut)
			if tc.onTimeout == "fail" {
				require.ErrorContains(t, err, "no decision on the approval of the whole run within 20m0s")
				require.Empty(t, rec.steps(), "nothing acted without the approval")
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.wantSteps, rec.steps())
		})
	}
}

func TestApprovalValidator(t *testing.T) {
	manual := workflows.Input{IncidentKey: "k", Actor: user("carol"), Reason: "test"}
	for _, tc := range []struct {
		name   string
		d      workflows.Decision
		in     workflows.Input
		doc    string
		reject string
	}{
		{name: "no reason", d: workflows.Decision{Approve: true, Actor: user("alice")}, reject: "a reason is required"},
		{name: "not an approver", d: workflows.Decision{Approve: true, Reason: "ok", Actor: user("mallory"), Groups: []string{"dev"}}, reject: "mallory is not an approver of runbook guarded"},
		{name: "wrong step", d: workflows.Decision{Approve: true, Reason: "ok", Actor: user("alice"), Step: "verify"}, reject: `waits for approval of step "scale", not of step "verify"`},
		{name: "self approval", in: manual, d: workflows.Decision{Approve: true, Reason: "ok", Actor: user("carol"), Groups: []string{"sre"}}, reject: "carol launched this run and may not decide its approval"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, rec := newEnv(t, nil)
			rb := parseRunbook(t, approvalRunbook)
			in := tc.in
			in.Runbook, in.IncidentKey = rb, "k"
			d := decide(t, env, time.Minute, tc.d)
			// A valid decision later lets the run end.
			ok := decide(t, env, 2*time.Minute, workflows.Decision{Approve: true, Reason: "fine", Actor: user("alice")})
			st, err := run(t, env, in)
			require.NoError(t, err)
			require.ErrorContains(t, d.rejected, tc.reject)
			var appErr *temporal.ApplicationError
			require.ErrorAs(t, d.rejected, &appErr)
			require.NoError(t, ok.rejected)
			require.Len(t, st.Approvals, 1, "the refused decision left no trace in the run")
			require.Equal(t, "alice", st.Approvals[0].By)
			require.Equal(t, []string{"diagnose", "scale", "verify"}, rec.steps())
		})
	}
}

func TestApprovalSelfApprovalAllowedByPolicy(t *testing.T) {
	env, _ := newEnv(t, nil)
	rb := parseRunbook(t, `apiVersion: salve/v1
kind: Runbook
metadata: {name: solo}
spec:
  access: {allowSelfApproval: true}
  safety: {approval: {required: true}}
  steps:
    - {name: act, action: http.request, with: {url: "http://x/act"}}
`)
	d := decide(t, env, time.Minute, workflows.Decision{Approve: true, Reason: "on call alone", Actor: user("carol")})
	st, err := run(t, env, workflows.Input{Runbook: rb, IncidentKey: "k", Actor: user("carol")})
	require.NoError(t, err)
	require.NoError(t, d.rejected)
	require.Equal(t, "carol", st.LaunchedBy)
}

func TestApprovalNotWaiting(t *testing.T) {
	env, _ := newEnv(t, nil)
	rb := parseRunbook(t, `apiVersion: salve/v1
kind: Runbook
metadata: {name: later}
spec:
  steps:
    - {name: settle, action: sleep, with: {duration: 10m}}
    - {name: act, action: http.request, with: {url: "http://x/act"}, approval: {required: true}}
`)
	early := decide(t, env, time.Minute, workflows.Decision{Approve: true, Reason: "ok", Actor: user("alice")})
	onTime := decide(t, env, 15*time.Minute, workflows.Decision{Approve: true, Reason: "ok", Actor: user("alice")})
	st, err := run(t, env, workflows.Input{Runbook: rb, IncidentKey: "k"})
	require.NoError(t, err)
	require.True(t, early.done)
	require.ErrorContains(t, early.rejected, "not waiting for an approval")
	var appErr *temporal.ApplicationError
	require.ErrorAs(t, early.rejected, &appErr)
	require.Equal(t, workflows.ErrTypeNotWaiting, appErr.Type())
	require.NoError(t, onTime.rejected)
	require.Len(t, st.Approvals, 1)
}

func TestApprovalCancelWhileWaiting(t *testing.T) {
	env, rec := newEnv(t, nil)
	rb := parseRunbook(t, approvalRunbook)
	env.RegisterDelayedCallback(env.CancelWorkflow, 5*time.Minute)
	st, err := run(t, env, workflows.Input{Runbook: rb, IncidentKey: "k"})
	var cancelled *temporal.CanceledError
	require.ErrorAs(t, err, &cancelled)
	require.Equal(t, workflows.RunStateCancelled, st.State)
	require.Equal(t, []string{"diagnose", "undo"}, rec.steps(), "the step waiting for approval never ran; compensation did")
	// Hooks are fire-and-forget activities: they may run in any order.
	require.ElementsMatch(t, []string{"started", "approval_needed:scale", "cancelled"}, rec.hookEvents())
}

func TestApprovalNotAwaitedInDryRun(t *testing.T) {
	env, rec := newEnv(t, nil)
	rb := parseRunbook(t, `apiVersion: salve/v1
kind: Runbook
metadata: {name: dry}
spec:
  safety: {mode: dry-run, approval: {required: true}}
  steps:
    - {name: act, action: http.request, with: {url: "http://x/act"}}
`)
	st, err := run(t, env, workflows.Input{Runbook: rb, IncidentKey: "k"})
	require.NoError(t, err)
	require.Empty(t, st.Approvals)
	require.True(t, rec.request(t, "act").DryRun)
}

// An alert that resolves while a step waits for approval (onResolved:
// finish) ends the wait: the step never acts, whatever anyone decides later.
func TestApprovalEndsWhenTheAlertResolves(t *testing.T) {
	env, rec := newEnv(t, nil)
	rb := parseRunbook(t, `apiVersion: salve/v1
kind: Runbook
metadata: {name: resolving}
spec:
  trigger: {matchers: ['alertname="WebDown"'], onResolved: finish}
  steps:
    - {name: diagnose, action: http.request, with: {url: "http://x/diagnose"}}
    - {name: scale, action: http.request, with: {url: "http://x/scale"}, approval: {required: true, onTimeout: continue}}
    - {name: verify, action: http.request, with: {url: "http://x/verify"}}
`)
	resolved := *firing()
	resolved.Status = domain.StatusResolved
	resolved.ID = domain.AlertEventID(resolved.Fingerprint, resolved.Status, resolved.StartsAt)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(workflows.SignalAlert, resolved) }, 5*time.Minute)
	late := decide(t, env, 10*time.Minute, workflows.Decision{Approve: true, Reason: "late", Actor: user("alice")})

	st, err := run(t, env, workflows.Input{Runbook: rb, IncidentKey: "k", Alert: firing()})
	require.NoError(t, err)
	require.Equal(t, []string{"diagnose"}, rec.steps(), "the step waiting for approval never acted")
	require.Equal(t, workflows.StepStateSkipped, st.Steps[1].State)
	require.Equal(t, workflows.StepStateSkipped, st.Steps[2].State)
	require.Len(t, st.Approvals, 1)
	require.Equal(t, workflows.DecisionSkipped, st.Approvals[0].Decision)
	require.Equal(t, t0.Add(5*time.Minute), st.Approvals[0].At)
	require.False(t, late.done && late.rejected == nil, "a decision after the run ended is not accepted")
	rec.audit(t, domain.ActionApprovalSkipped)
}

// A failed run whose compensation step a person rejects is still a failed
// run: Temporal records it failed, not cancelled.
func TestRejectedCompensationLeavesTheRunFailed(t *testing.T) {
	env, _ := newEnv(t, func(_ context.Context, req step.Request) (step.Result, error) {
		if req.Step == "act" {
			return failNonRetryable("broke")
		}
		return step.Result{}, nil
	})
	rb := parseRunbook(t, `apiVersion: salve/v1
kind: Runbook
metadata: {name: comp}
spec:
  steps:
    - {name: prep, action: http.request, with: {url: "http://x/prep"}}
    - {name: act, action: http.request, with: {url: "http://x/act"}}
  onFailure:
    - {name: undo, action: http.request, with: {url: "http://x/undo"}, approval: {required: true}}
`)
	decide(t, env, time.Minute, workflows.Decision{Approve: false, Reason: "leave it", Actor: user("alice")})
	st, err := run(t, env, workflows.Input{Runbook: rb, IncidentKey: "k"})
	var cancelled *temporal.CanceledError
	require.False(t, errors.As(err, &cancelled), "a failed run stays failed: %v", err)
	require.ErrorContains(t, err, "broke")
	require.Equal(t, workflows.RunStateFailed, st.State)
}
