package triggers

import (
	"context"
	"fmt"
	"math"
	"strconv"

	"github.com/salve-sre/salve/runbooks"
	"github.com/salve-sre/salve/slos"
)

// sloDecision is what a runbook's SLO policy says for a new run, and the
// figures it was decided on.
type sloDecision struct {
	slo    string
	action string // runbooks.SLOAct, SLOApprove or SLONotify
	reason string
	burn   slos.Burn
	err    error // why the burn could not be read
}

// decideBySLO reads the burn of the SLO rb names and picks the action its
// policy gives for that speed. A burn that cannot be read is "unknown":
// the policy's onUnknown (approve by default), never a stalled alert.
func (t *Trigger) decideBySLO(ctx context.Context, rb *runbooks.Runbook) sloDecision {
	p := rb.Spec.SLO
	d := sloDecision{slo: p.Name}
	speed := "unknown"
	var figures string
	switch {
	case t.Budgets == nil:
		d.err = fmt.Errorf("no Prometheus to read SLO %s from (set --prometheus-url)", p.Name)
	default:
		d.burn, d.err = t.Budgets.Burn(ctx, p.Name)
		if d.err == nil {
			speed, figures = d.burn.Speed(), d.burn.Summary()
		}
	}
	d.action = p.Action(speed)
	if d.err != nil {
		figures = fmt.Sprintf("SLO %s: burn unknown (%v)", p.Name, d.err)
		t.Log.WarnContext(ctx, "SLO burn not read; the runbook's onUnknown applies", "runbook", rb.Name(), "slo", p.Name, "action", d.action, "error", d.err)
	}
	switch d.action {
	case runbooks.SLOApprove:
		d.reason = figures + ": a person approves before it acts (spec.slo: " + speed + " burn → approve)"
	case runbooks.SLONotify:
		d.reason = figures + ": it only notifies; mutating steps are planned, not run (spec.slo: " + speed + " burn → notify)"
	default:
		d.reason = figures + ": it acts (spec.slo: " + speed + " burn → act)"
	}
	return d
}

// apply makes the run do what the decision says. A stricter choice the
// safety envelope already made (approval, dry run) stands.
func (d *sloDecision) apply(req *StartRequest) {
	switch d.action {
	case runbooks.SLOApprove:
		if req.ApprovalReason == "" {
			req.ApprovalReason = d.reason
		}
	case runbooks.SLONotify:
		req.DryRun, req.DryRunReason = true, d.reason
	}
}

// audit puts the decision and its figures in the run's trigger.matched
// record.
func (d *sloDecision) audit(detail map[string]string) {
	detail["slo"] = d.slo
	detail["sloAction"] = d.action
	detail["sloDecision"] = d.reason
	if d.err != nil {
		detail["sloBurn"] = "unknown"
		detail["sloError"] = d.err.Error()
		return
	}
	detail["sloBurn"] = d.burn.Speed()
	if !math.IsNaN(d.burn.BudgetRemaining) {
		detail["sloBudgetRemaining"] = strconv.FormatFloat(d.burn.BudgetRemaining, 'f', 4, 64)
	}
	for k, r := range d.burn.BurnRate {
		detail["sloBurnRate"+k] = strconv.FormatFloat(r, 'f', 3, 64)
	}
}
