package backtest

import (
	"context"
	"maps"
	"slices"
	"time"

	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/internal/safety"
	"github.com/salve-sre/salve/triggers"
)

// Decision is one decision of the trigger, as its audit record says.
type Decision struct {
	Time    time.Time `json:"time"`
	Runbook string    `json:"runbook,omitempty"`
	// Outcome is started, joined, suppressed, no_match or failed.
	Outcome string `json:"outcome"`
	// Check is the safety check that suppressed the alert, or that changed
	// how its run started (dry run, approval, target wait).
	Check string `json:"check,omitempty"`
}

// Outcomes of Decision.
const (
	OutcomeStarted    = triggers.DecisionStarted
	OutcomeJoined     = triggers.DecisionJoined
	OutcomeSuppressed = triggers.DecisionSuppressed
	OutcomeNoMatch    = triggers.DecisionNoMatch
	OutcomeFailed     = triggers.DecisionFailed
)

// recorder is the trigger's AuditRecorder: the report is made from the
// audit records the real trigger writes, as an operator would read them.
type recorder struct {
	decisions []Decision
	books     map[string]*tally
	going     int // runs going across runbooks
	peak      int
}

// tally is what is counted per runbook beyond the decisions.
type tally struct {
	incidents, targets map[string]bool
	going, peak        int
}

func newRecorder() *recorder { return &recorder{books: map[string]*tally{}} }

func (r *recorder) book(name string) *tally {
	t, ok := r.books[name]
	if !ok {
		t = &tally{incidents: map[string]bool{}, targets: map[string]bool{}}
		r.books[name] = t
	}
	return t
}

// RecordAll keeps the decisions among evs (resolutions signalled to a run
// decide nothing and are not kept).
func (r *recorder) RecordAll(_ context.Context, evs []domain.AuditEvent) error {
	for _, ev := range evs {
		d := Decision{Time: ev.Time, Runbook: ev.Runbook}
		switch {
		case ev.Action == domain.ActionTriggerMatched && ev.Outcome == triggers.DecisionStarted:
			d.Outcome, d.Check = OutcomeStarted, ev.Detail["safetyCheck"]
			t := r.book(ev.Runbook)
			t.incidents[ev.IncidentKey] = true
			if target := ev.Detail["target"]; target != "" {
				t.targets[target] = true
			}
		case ev.Action == domain.ActionRunJoined:
			d.Outcome = OutcomeJoined
		case ev.Action == domain.ActionTriggerSuppressed:
			d.Outcome, d.Check = OutcomeSuppressed, ev.Outcome
		case ev.Action == domain.ActionTriggerNoMatch:
			d.Outcome = OutcomeNoMatch
		case ev.Action == domain.ActionTriggerFailed:
			d.Outcome, d.Check = OutcomeFailed, ev.Error
		default:
			continue
		}
		r.decisions = append(r.decisions, d)
	}
	return nil
}

func (r *recorder) runStarted(runbook string, _ time.Time) {
	t := r.book(runbook)
	t.going++
	t.peak = max(t.peak, t.going)
	r.going++
	r.peak = max(r.peak, r.going)
}

func (r *recorder) runEnded(runbook string, _ time.Time) {
	r.book(runbook).going--
	r.going--
}

// Result is what a backtest found.
type Result struct {
	From        time.Time `json:"from"`
	To          time.Time `json:"to"`
	AlertStates int       `json:"alertStates"`
	// RunDurationSeconds is the modelled length of a run.
	RunDurationSeconds float64 `json:"runDurationSeconds"`
	// NoMatch counts alert states no runbook matched.
	NoMatch int `json:"alertStatesMatchingNoRunbook"`
	// PeakConcurrent is the most runs going at once across runbooks.
	PeakConcurrent int             `json:"peakConcurrentRuns"`
	Runbooks       []RunbookResult `json:"runbooks"`
	Note           string          `json:"note"`
	// Decisions are every decision in order, for timelines.
	Decisions []Decision `json:"-"`
}

// RunbookResult is one runbook's part of a backtest.
type RunbookResult struct {
	Runbook string `json:"runbook"`
	// Started counts the runs that would have started, of which
	// StartedDryRun as dry-run plans (maintenance window) and
	// StartedNeedingApproval waiting for a person (blast radius).
	Started                int `json:"started"`
	StartedDryRun          int `json:"startedDryRun"`
	StartedNeedingApproval int `json:"startedNeedingApproval"`
	// Joined counts the alert states that would have joined a run going.
	Joined int `json:"joined"`
	// Suppressed counts the alert states refused by the safety envelope,
	// SuppressedBy by check (safety.Check* names).
	Suppressed   int            `json:"suppressed"`
	SuppressedBy map[string]int `json:"suppressedBy"`
	// Failed counts alert states the trigger could not handle (e.g. the
	// incident key does not render).
	Failed int `json:"failed"`
	// Incidents and Targets count the distinct incident keys and targets
	// of the runs started.
	Incidents      int `json:"incidents"`
	Targets        int `json:"targets"`
	PeakConcurrent int `json:"peakConcurrentRuns"`
}

// Note is said with every report: what the simulation models.
const Note = "Run length is modelled: each run lasts the run duration, or ends when its alert resolves under onResolved: cancel or finish; every run succeeds (circuit breakers never open); no step is executed."

func (s *sim) result(states []domain.AlertEvent, o Options) *Result {
	res := &Result{AlertStates: len(states), RunDurationSeconds: o.RunDuration.Seconds(), PeakConcurrent: s.rec.peak, Note: Note, Decisions: s.rec.decisions}
	if len(states) > 0 {
		res.From, res.To = states[0].ReceivedAt, states[len(states)-1].ReceivedAt
	}
	by := map[string]*RunbookResult{}
	for _, rb := range o.Runbooks.All() {
		by[rb.Name()] = &RunbookResult{Runbook: rb.Name(), SuppressedBy: map[string]int{}}
	}
	for _, d := range s.rec.decisions {
		if d.Outcome == OutcomeNoMatch {
			res.NoMatch++
			continue
		}
		rr := by[d.Runbook]
		if rr == nil { // a retry for a runbook not in the set: cannot happen here
			continue
		}
		switch d.Outcome {
		case OutcomeStarted:
			rr.Started++
			switch d.Check {
			case safety.CheckMaintenance, safety.CheckBreakerOpen:
				rr.StartedDryRun++
			case safety.CheckBlastRadius:
				rr.StartedNeedingApproval++
			}
		case OutcomeJoined:
			rr.Joined++
		case OutcomeSuppressed:
			rr.Suppressed++
			rr.SuppressedBy[d.Check]++
		case OutcomeFailed:
			rr.Failed++
		}
	}
	for _, name := range slices.Sorted(maps.Keys(by)) {
		rr := by[name]
		if t, ok := s.rec.books[name]; ok {
			rr.Incidents, rr.Targets, rr.PeakConcurrent = len(t.incidents), len(t.targets), t.peak
		}
		res.Runbooks = append(res.Runbooks, *rr)
	}
	return res
}
