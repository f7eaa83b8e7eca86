package workflows

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/salve-sre/salve/activities/step"
	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/runbooks"
)

// UpdateApproval is the Temporal Update that approves or rejects the
// approval a run waits for. Its validator refuses a decision before it is
// written to history, so the caller learns at once whether it counted.
const UpdateApproval = "approval"

// Error types of refused decisions; the API maps them to HTTP statuses.
const (
	ErrTypeNotWaiting = "NotWaiting" // 409: nothing to decide, or already decided
	ErrTypeForbidden  = "Forbidden"  // 403: this person may not decide
	ErrTypeBadRequest = "BadRequest" // 400: e.g. no reason given
)

// Decisions as recorded in the run's status.
const (
	DecisionApproved = "approved"
	DecisionRejected = "rejected"
	DecisionTimedOut = "timed_out"
	DecisionSkipped  = "skipped" // the alert resolved first (onResolved: finish)
)

// Decision is the Update's argument: a person's answer to a pending
// approval. The API fills Actor and Groups from the caller's token.
type Decision struct {
	Approve bool         `json:"approve"`
	Step    string       `json:"step,omitempty"` // must match the waiting step when set
	Reason  string       `json:"reason"`
	Actor   domain.Actor `json:"actor"`
	Groups  []string     `json:"groups,omitempty"`
}

// DecisionAck is the Update's result.
type DecisionAck struct {
	Step     string `json:"step,omitempty"`
	Decision string `json:"decision"`
}

// ApprovalWait is the approval a run waits for now.
type ApprovalWait struct {
	Step        string    `json:"step,omitempty"` // "" = the whole run
	RequestedAt time.Time `json:"requestedAt"`
	Deadline    time.Time `json:"deadline"`
	OnTimeout   string    `json:"onTimeout"`
}

// ApprovalRecord is one decided approval.
type ApprovalRecord struct {
	Step     string    `json:"step,omitempty"`
	Decision string    `json:"decision"`
	By       string    `json:"by,omitempty"`
	Reason   string    `json:"reason,omitempty"`
	At       time.Time `json:"at"`
}

// errRejected ends a run a person rejected; like a cancel it is not a
// runbook failure.
var errRejected = errors.New("approval rejected")

// validateDecision runs before a decision is accepted. It must not change
// state: Temporal runs it outside of history.
func (r *run) validateDecision(d Decision) error {
	w := r.status.Approval
	switch {
	case w == nil || r.decision != nil:
		return temporal.NewApplicationError("this run is not waiting for an approval", ErrTypeNotWaiting)
	case d.Step != "" && d.Step != w.Step:
		return temporal.NewApplicationError(fmt.Sprintf("the run waits for approval of %s, not of step %q", stepLabel(w.Step), d.Step), ErrTypeNotWaiting)
	case strings.TrimSpace(d.Reason) == "":
		return temporal.NewApplicationError("a reason is required: say why, for the audit log", ErrTypeBadRequest)
	case d.Actor.Name == "":
		return temporal.NewApplicationError("the decision has no actor", ErrTypeBadRequest)
	}
	launchedBy := ""
	if r.in.Actor.Kind == domain.ActorUser {
		launchedBy = r.in.Actor.Name
	}
	if err := r.in.Runbook.Spec.Access.MayDecide(r.in.Runbook.Name(), d.Actor.Name, d.Groups, launchedBy); err != nil {
		return temporal.NewApplicationError(err.Error(), ErrTypeForbidden)
	}
	return nil
}

func stepLabel(name string) string {
	if name == "" {
		return "the whole run"
	}
	return fmt.Sprintf("step %q", name)
}

// awaitApproval waits for a person's decision on stepName ("" = the run)
// and reports whether to go on. A rejection returns errRejected; a timeout
// returns an error or nil per the approval's onTimeout. When the alert
// resolves under onResolved: finish (stoppable waits only), the wait ends
// with nil and r.finish set: the caller skips what was waiting.
func (r *run) awaitApproval(ctx workflow.Context, stepName string, a *runbooks.Approval, stoppable bool) error {
	eff := a.Effective()
	timeout, onTimeout := eff.Timeout.D(), eff.OnTimeout
	now := workflow.Now(ctx)
	r.decision = nil
	r.status.Approval = &ApprovalWait{Step: stepName, RequestedAt: now, Deadline: now.Add(timeout), OnTimeout: onTimeout}
	defer func() { r.status.Approval = nil; r.decision = nil }()
	r.auditWith(ctx, domain.ActionApprovalRequested, stepName, "waiting", nil, r.in.Actor,
		map[string]string{"deadline": now.Add(timeout).UTC().Format(time.RFC3339), "onTimeout": onTimeout})
	r.hook(ctx, step.HookApprovalNeeded, stepName, "", "")

	decided, err := workflow.AwaitWithTimeout(ctx, timeout, func() bool { return r.decision != nil || (stoppable && r.finish) })
	waited := workflow.Now(ctx).Sub(now)
	r.approvalWait += waited
	if err != nil {
		return err // cancelled while waiting
	}
	if r.decision == nil && stoppable && r.finish {
		// The alert resolved while a person was asked: nothing to approve.
		r.status.Approvals = append(r.status.Approvals, ApprovalRecord{Step: stepName, Decision: DecisionSkipped, Reason: r.status.StopReason, At: workflow.Now(ctx)})
		r.auditWith(ctx, domain.ActionApprovalSkipped, stepName, DecisionSkipped, nil, domain.Actor{Kind: domain.ActorSystem, Name: "workflow"},
			map[string]string{"reason": r.status.StopReason})
		return nil
	}
	if !decided {
		r.status.Approvals = append(r.status.Approvals, ApprovalRecord{Step: stepName, Decision: DecisionTimedOut, At: workflow.Now(ctx)})
		r.auditWith(ctx, domain.ActionApprovalTimedOut, stepName, onTimeout, nil, domain.Actor{Kind: domain.ActorSystem, Name: "workflow"}, nil)
		r.hook(ctx, step.HookApprovalTimedOut, stepName, "", "")
		if onTimeout == runbooks.ApprovalTimeoutGoOn {
			return nil
		}
		return fmt.Errorf("no decision on the approval of %s within %s", stepLabel(stepName), timeout)
	}
	d := *r.decision
	rec := ApprovalRecord{Step: stepName, By: d.Actor.Name, Reason: d.Reason, At: workflow.Now(ctx), Decision: DecisionApproved}
	action := domain.ActionApprovalGranted
	if !d.Approve {
		rec.Decision, action = DecisionRejected, domain.ActionApprovalRejected
	}
	r.status.Approvals = append(r.status.Approvals, rec)
	r.auditWith(ctx, action, stepName, rec.Decision, nil, d.Actor, map[string]string{"reason": d.Reason,
		"waitSeconds": strconv.FormatFloat(waited.Seconds(), 'f', 3, 64)})
	if !d.Approve {
		r.rejected = true
		r.status.StopReason = fmt.Sprintf("rejected by %s: %s", d.Actor.Name, d.Reason)
		return errRejected
	}
	return nil
}

// setDecision is the Update's handler; the validator has accepted d.
func (r *run) setDecision(_ workflow.Context, d Decision) (DecisionAck, error) {
	if r.status.Approval == nil || r.decision != nil {
		// A second decision raced the first past the validator.
		return DecisionAck{}, temporal.NewApplicationError("this run is not waiting for an approval", ErrTypeNotWaiting)
	}
	r.decision = &d
	ack := DecisionAck{Step: r.status.Approval.Step, Decision: DecisionApproved}
	if !d.Approve {
		ack.Decision = DecisionRejected
	}
	return ack, nil
}
