// Package trust owns the trust ladder a runbook climbs before it acts on
// its own — dry-run, shadow, approve, enforce — the evidence gathered on
// the way (shadow runs' verdicts, people's approvals), and the rule that
// says when that evidence allows a promotion.
package trust

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/runbooks"
)

// Rungs of the ladder, lowest first.
const (
	RungDryRun  = runbooks.ModeDryRun
	RungShadow  = runbooks.ModeShadow
	RungApprove = "approve" // mode enforce, every run waits for a person's approval
	RungEnforce = runbooks.ModeEnforce
)

// Rungs lists the ladder from the bottom.
var Rungs = []string{RungDryRun, RungShadow, RungApprove, RungEnforce}

// RungOf names the rung a runbook's safety settings put it on.
func RungOf(s runbooks.Safety) string {
	switch {
	case s.DryRun():
		return RungDryRun
	case s.Shadow():
		return RungShadow
	case s.Approval != nil && s.Approval.Required:
		return RungApprove
	}
	return RungEnforce
}

// Policy is how much evidence a promotion needs (config: trust).
type Policy struct {
	// MinRuns is the fewest runs compared with what happened instead:
	// shadow runs that would have acted after which a person acted on the
	// target or the alert resolved on its own, and runs a person approved
	// or rejected.
	MinRuns int `yaml:"minRuns" json:"minRuns"`
	// MinAgreement is the smallest share, 0 to 1, of those in which the
	// runbook was right: a person changed the target as the shadow run
	// would have, or approved the run. A person doing otherwise, a
	// rejection, and an alert resolving with nobody acting (the runbook
	// would have acted for nothing) count against it.
	MinAgreement float64 `yaml:"minAgreement" json:"minAgreement"`
}

// Defaults of Policy.
const (
	DefaultMinRuns      = 5
	DefaultMinAgreement = 0.8
)

// Effective returns the policy with its defaults.
func (p Policy) Effective() Policy {
	if p.MinRuns == 0 {
		p.MinRuns = DefaultMinRuns
	}
	if p.MinAgreement == 0 {
		p.MinAgreement = DefaultMinAgreement
	}
	return p
}

// Validate says what is wrong with a configured policy.
func (p Policy) Validate() error {
	var errs []error
	if p.MinRuns < 0 {
		errs = append(errs, errors.New("trust.minRuns: must not be negative (0 means the default, 5)"))
	}
	if p.MinAgreement < 0 || p.MinAgreement > 1 {
		errs = append(errs, fmt.Errorf("trust.minAgreement: a share from 0 to 1 (e.g. 0.8), got %g", p.MinAgreement))
	}
	return errors.Join(errs...)
}

// Summary is a runbook's evidence.
type Summary struct {
	Runbook string `json:"runbook"`
	Rung    string `json:"rung"`
	// ShadowRuns are shadow runs whose watch ended; WouldHaveActed of them
	// planned a mutating step.
	ShadowRuns     int `json:"shadowRuns"`
	WouldHaveActed int `json:"wouldHaveActed"`
	// By verdict (workflows.Verdict*).
	Agreed           int `json:"agreed"`
	Disagreed        int `json:"disagreed"`
	ResolvedOnItsOwn int `json:"resolvedOnItsOwn"`
	Unresolved       int `json:"unresolved"`
	// People's decisions on runs that waited for approval.
	Approved int `json:"approved"`
	Rejected int `json:"rejected"`
	// EvidenceRuns = WouldHaveActed + Approved + Rejected; Compared =
	// Agreed + Disagreed + ResolvedOnItsOwn + Approved + Rejected;
	// Agreement = (Agreed + Approved) / Compared, nil when nothing was
	// compared. Only runs of the runbook's current version (its content
	// hash) count, and of shadow runs only alert-triggered ones: a
	// person's launch of a shadow runbook is no evidence of what alerts
	// need.
	EvidenceRuns int      `json:"evidenceRuns"`
	Compared     int      `json:"compared"`
	Agreement    *float64 `json:"agreement,omitempty"`
	// SelfResolvedShare is the share of would-have-acted shadow runs
	// whose alert resolved with nobody acting: high means the runbook
	// would often act for nothing.
	SelfResolvedShare *float64 `json:"selfResolvedShare,omitempty"`
	LastShadowRun     string   `json:"lastShadowRun,omitempty"`
	// Recent are the newest shadow runs' verdicts, newest first.
	Recent []Verdict `json:"recent,omitempty"`
}

// Verdict is one shadow run's evidence as audited.
type Verdict struct {
	Time       time.Time `json:"time"`
	WorkflowID string    `json:"workflowId"`
	Verdict    string    `json:"verdict"`
	Summary    string    `json:"summary"`
}

// Verdicts, as workflows records them (workflows.Verdict*: this package
// reads the audit log and must not import the workflow).
const (
	verdictAgreed    = "agreed"
	verdictDisagreed = "disagreed"
	verdictResolved  = "resolved_on_its_own"
	verdictOpen      = "unresolved"
	maxRecent        = 10
)

// Summarize reads a runbook's evidence out of audit records, in any
// order: its shadow.evidence events and approval decisions, and people's
// launches (run.launched, of any runbook) that name a target: a launch on
// a shadow run's target during its watch is a person acting on it — this
// runbook launched by hand agrees, another runbook disagrees.
func Summarize(rb *runbooks.Runbook, records []domain.AuditEvent) Summary {
	s := Summary{Runbook: rb.Name(), Rung: RungOf(rb.Spec.Safety)}
	launches := launchesByTarget(records)
	for _, ev := range records {
		if ev.Runbook != rb.Name() || ev.RunbookHash != rb.Hash {
			continue
		}
		switch ev.Action {
		case domain.ActionShadowEvidence:
			if ev.Actor.Kind != domain.ActorAlert {
				continue
			}
			s.ShadowRuns++
			if ev.Detail["wouldAct"] == "true" {
				s.WouldHaveActed++
			}
			summary := ev.Detail["summary"]
			if by, ok := launchedDuring(launches, ev); ok && (ev.Outcome == verdictResolved || ev.Outcome == verdictOpen) {
				ev.Outcome = verdictDisagreed
				if by.Runbook == rb.Name() {
					ev.Outcome = verdictAgreed
				}
				summary = fmt.Sprintf("Would have acted; %s launched %s by hand on %s meanwhile.", by.Actor.Name, by.Runbook, by.Detail["target"])
			}
			switch ev.Outcome {
			case verdictAgreed:
				s.Agreed++
			case verdictDisagreed:
				s.Disagreed++
			case verdictResolved:
				s.ResolvedOnItsOwn++
			case verdictOpen:
				s.Unresolved++
			}
			s.Recent = append(s.Recent, Verdict{Time: ev.Time, WorkflowID: ev.WorkflowID, Verdict: ev.Outcome, Summary: summary})
		case domain.ActionApprovalGranted:
			s.Approved++
		case domain.ActionApprovalRejected:
			s.Rejected++
		}
	}
	s.EvidenceRuns = s.WouldHaveActed + s.Approved + s.Rejected
	s.Compared = s.Agreed + s.Disagreed + s.ResolvedOnItsOwn + s.Approved + s.Rejected
	if s.Compared > 0 {
		a := float64(s.Agreed+s.Approved) / float64(s.Compared)
		s.Agreement = &a
	}
	if s.WouldHaveActed > 0 {
		r := float64(s.ResolvedOnItsOwn) / float64(s.WouldHaveActed)
		s.SelfResolvedShare = &r
	}
	slices.SortStableFunc(s.Recent, func(a, b Verdict) int { return b.Time.Compare(a.Time) })
	if len(s.Recent) > 0 {
		s.LastShadowRun = s.Recent[0].Time.UTC().Format(time.RFC3339)
	}
	if len(s.Recent) > maxRecent {
		s.Recent = s.Recent[:maxRecent]
	}
	return s
}

// launchesByTarget indexes people's launches that started a run able to
// act (not a shadow or dry-run runbook's) on a target.
func launchesByTarget(records []domain.AuditEvent) map[string][]domain.AuditEvent {
	out := map[string][]domain.AuditEvent{}
	for _, ev := range records {
		if ev.Action == domain.ActionRunLaunched && ev.Outcome == "started" && ev.Actor.Kind == domain.ActorUser &&
			ev.Detail["target"] != "" && ev.Detail["acts"] == "true" {
			out[ev.Detail["target"]] = append(out[ev.Detail["target"]], ev)
		}
	}
	return out
}

// launchedDuring finds a launch on a shadow run's target between the
// start of its watch and its evidence.
func launchedDuring(launches map[string][]domain.AuditEvent, shadow domain.AuditEvent) (domain.AuditEvent, bool) {
	target := shadow.Detail["target"]
	since, err := time.Parse(time.RFC3339Nano, shadow.Detail["since"])
	if target == "" || err != nil {
		return domain.AuditEvent{}, false
	}
	for _, l := range launches[target] {
		if !l.Time.Before(since) && !l.Time.After(shadow.Time) {
			return l, true
		}
	}
	return domain.AuditEvent{}, false
}

// ErrBelowThreshold wraps the reasons a promotion lacks evidence.
var ErrBelowThreshold = errors.New("not enough evidence")

// Check says whether the evidence allows promoting a runbook on rung from
// to rung to: nil, an error wrapping ErrBelowThreshold that lists what is
// missing, or another error for a move that is no promotion.
func (p Policy) Check(from, to string, s Summary) error {
	p = p.Effective()
	fi, ti := slices.Index(Rungs, from), slices.Index(Rungs, to)
	switch {
	case to != RungApprove && to != RungEnforce:
		return fmt.Errorf("promote to %q: want approve or enforce", to)
	case fi >= ti:
		return fmt.Errorf("runbook %s is on rung %s already; promotion goes up the ladder %s", s.Runbook, from, strings.Join(Rungs, " → "))
	case to == RungEnforce && from != RungApprove:
		return fmt.Errorf("runbook %s is on rung %s: promote it to approve first; one rung at a time (%s)", s.Runbook, from, strings.Join(Rungs, " → "))
	}
	var missing []string
	if s.Compared < p.MinRuns {
		missing = append(missing, fmt.Sprintf("%d runs compared with what happened instead, %d needed (trust.minRuns)", s.Compared, p.MinRuns))
	}
	switch {
	case s.Agreement == nil:
		missing = append(missing, "no run was compared with what happened: nobody acted on a shadow run's target, no alert resolved on its own, no approval was decided")
	case *s.Agreement < p.MinAgreement:
		missing = append(missing, fmt.Sprintf("the runbook was right in %.0f%% of %d compared, %.0f%% needed (trust.minAgreement)", *s.Agreement*100, s.Compared, p.MinAgreement*100))
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s", ErrBelowThreshold, strings.Join(missing, "; "))
	}
	return nil
}

// EvidenceAnswer is the answer of GET /v1/runbooks/{name}/evidence.
type EvidenceAnswer struct {
	Summary Summary `json:"summary"`
	Policy  Policy  `json:"policy"`
	// Next is the rung a promotion would go to (approve from dry-run or
	// shadow, enforce from approve; "" on enforce), and whether the
	// evidence allows it; Missing says what it lacks.
	Next    string `json:"next,omitempty"`
	Allowed bool   `json:"allowed"`
	Missing string `json:"missing,omitempty"`
	// Backtest, when asked for (?backtest=7d), is what the runbook would
	// have done with the alerts Salve received in that window.
	Backtest *BacktestSummary `json:"backtest,omitempty"`
}

// BacktestSummary is a backtest of one runbook beside its evidence.
type BacktestSummary struct {
	From        time.Time      `json:"from"`
	To          time.Time      `json:"to"`
	AlertStates int            `json:"alertStates"`
	Started     int            `json:"started"`
	Joined      int            `json:"joined"`
	Suppressed  int            `json:"suppressed"`
	By          map[string]int `json:"suppressedBy,omitempty"`
	Peak        int            `json:"peakConcurrentRuns"`
}

// PromoteRequest is the body of POST /v1/runbooks/{name}/promote.
type PromoteRequest struct {
	To string `json:"to"`
	// Override promotes below the evidence threshold; it needs a reason.
	Override bool   `json:"override,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

// PromoteAnswer says what a promotion decided, and what to change in the
// runbook's file: Salve records the decision, people change the file (in
// git, reviewed), and the reload applies it.
type PromoteAnswer struct {
	Runbook  string  `json:"runbook"`
	From     string  `json:"from"`
	To       string  `json:"to"`
	Override bool    `json:"override,omitempty"`
	Summary  Summary `json:"summary"`
	Source   string  `json:"source"`
	Change   string  `json:"change"`
}
