package triggers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync/atomic"
	"time"

	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/internal/safety"
	"github.com/salve-sre/salve/runbooks"
)

// StartRequest asks for the one run of an incident.
type StartRequest struct {
	WorkflowID  string
	Runbook     *runbooks.Runbook
	IncidentKey string
	Alert       domain.AlertEvent
	// RequestID makes the start idempotent: a redelivered alert maps to the
	// run it already started or joined, even after that run finished.
	RequestID string
	// DryRun starts the run as a plan that changes nothing, for
	// DryRunReason (e.g. the runbook's circuit breaker is open).
	DryRun       bool
	DryRunReason string
	// Target is what the run acts on; with TargetWait > 0 another run
	// holds it and the run must acquire it, waiting at most TargetWait,
	// before acting.
	Target     string
	TargetWait time.Duration
	// ApprovalReason, when set, makes the run wait for a person's approval
	// before acting, for this reason (e.g. its blast radius is exceeded).
	ApprovalReason string
}

// StartResult says what happened.
type StartResult struct {
	RunID   string
	Started bool // false: the alert joined a running run
}

// Starter starts or joins runs; internal/runs implements it with Temporal.
type Starter interface {
	// StartOrJoin starts the incident's run, or delivers the alert to the
	// run already going for it.
	StartOrJoin(ctx context.Context, req StartRequest) (StartResult, error)
	// Notify delivers an alert (e.g. resolved) to a running run; it returns
	// false, nil when no run is going.
	Notify(ctx context.Context, workflowID string, ev domain.AlertEvent) (bool, error)
}

// Guard is the safety envelope: it admits new runs (cooldown, rate and
// concurrency limits, circuit breaker); internal/safety implements it.
type Guard interface {
	Admit(ctx context.Context, rb *runbooks.Runbook, alert *domain.AlertEvent, incidentKey, workflowID string) (safety.Admission, error)
	Release(ctx context.Context, runbook, workflowID string) error
}

// Runbooks returns the current runbook set (it may be reloaded).
type Runbooks interface {
	Current() *runbooks.Set
}

// StaticRunbooks is a fixed set.
type StaticRunbooks struct{ Set *runbooks.Set }

// Current returns the set.
func (s StaticRunbooks) Current() *runbooks.Set { return s.Set }

// AtomicRunbooks is a set that can be swapped while triggers read it.
type AtomicRunbooks struct{ p atomic.Pointer[runbooks.Set] }

// Store replaces the set.
func (a *AtomicRunbooks) Store(s *runbooks.Set) { a.p.Store(s) }

// Current returns the set.
func (a *AtomicRunbooks) Current() *runbooks.Set { return a.p.Load() }

// Trigger decisions, as TriggerMetrics sees them.
const (
	DecisionStarted    = "started"
	DecisionJoined     = "joined"
	DecisionResolved   = "resolved_signalled" // a resolved alert, delivered or with no run going
	DecisionSuppressed = "suppressed"
	DecisionNoMatch    = "no_match" // runbook ""
)

// TriggerMetrics counts trigger decisions; internal/metrics implements
// it. A decision is counted once its audit record is stored.
type TriggerMetrics interface {
	TriggerDecision(runbook, decision string)
	// SafetyCheck counts an alert whose new run the safety envelope
	// refused or changed, by the check that decided.
	SafetyCheck(runbook, check string)
}

// Trigger decides what each stored alert does.
type Trigger struct {
	Runbooks Runbooks
	Starter  Starter
	Audit    AuditRecorder
	Log      *slog.Logger
	Metrics  TriggerMetrics // nil = none
	// Guard, when set, must admit every new run; nil = no safety limits.
	Guard Guard
}

// Handle matches one alert against the runbooks and starts, joins or
// notifies runs. It returns an error when a retry can help (Temporal or the
// audit stream unavailable); the caller then redelivers the alert. Every
// step is idempotent, so a redelivery never makes a second run.
func (t *Trigger) Handle(ctx context.Context, ev domain.AlertEvent) error {
	set := t.Runbooks.Current()
	var matched []*runbooks.Runbook
	if set != nil {
		matched = set.Match(ev)
	}
	now := time.Now().UTC()
	if len(matched) == 0 {
		return t.decided("", DecisionNoMatch, t.record(ctx, domain.AuditEvent{
			ID: "trigger/" + ev.ID + "/no_match", Time: now, Actor: alertActor(ev),
			Action: domain.ActionTriggerNoMatch, Outcome: ev.Status,
			Detail: map[string]string{"alertId": ev.ID, "alertname": ev.Name()},
		}))
	}
	var errs []error
	for _, rb := range matched {
		if err := t.handleOne(ctx, rb, ev, now); err != nil {
			errs = append(errs, fmt.Errorf("runbook %s: %w", rb.Name(), err))
		}
	}
	return errors.Join(errs...)
}

func (t *Trigger) handleOne(ctx context.Context, rb *runbooks.Runbook, ev domain.AlertEvent, now time.Time) error {
	key, err := rb.IncidentKey(ev)
	if err != nil {
		// The runbook's key template does not fit this alert: retrying
		// cannot help, so audit the suppression and move on.
		t.Log.Warn("alert matched but has no incident key", "runbook", rb.Name(), "error", err)
		return t.decided(rb.Name(), DecisionSuppressed, t.record(ctx, domain.AuditEvent{
			ID: "trigger/" + ev.ID + "/" + rb.Name() + "/suppressed", Time: now, Actor: alertActor(ev),
			Action: domain.ActionTriggerSuppressed, Runbook: rb.Name(), RunbookHash: rb.Hash,
			Outcome: "no_incident_key", Error: err.Error(),
			Detail: map[string]string{"alertId": ev.ID, "alertname": ev.Name()},
		}))
	}
	wfID := domain.WorkflowID(rb.Name(), key)
	base := domain.AuditEvent{
		Time: now, Actor: alertActor(ev), Runbook: rb.Name(), RunbookHash: rb.Hash,
		WorkflowID: wfID, IncidentKey: key,
		Detail: map[string]string{"alertId": ev.ID, "alertname": ev.Name(), "status": ev.Status},
	}
	log := t.Log.With("runbook", rb.Name(), "workflow_id", wfID, "alert_id", ev.ID)

	if ev.Status == domain.StatusResolved {
		delivered, err := t.Starter.Notify(ctx, wfID, ev)
		if err != nil {
			return fmt.Errorf("notify run %s: %w", wfID, err)
		}
		a := base
		a.ID, a.Action, a.Outcome = "trigger/"+ev.ID+"/"+rb.Name()+"/resolved", domain.ActionRunSignalled, "resolved"
		if !delivered {
			a.Outcome = "no_running_run"
		}
		log.Info("resolved alert", "delivered", delivered)
		return t.decided(rb.Name(), DecisionResolved, t.record(ctx, a))
	}

	req := StartRequest{WorkflowID: wfID, Runbook: rb, IncidentKey: key, Alert: ev, RequestID: ev.ID}
	var adm safety.Admission
	if t.Guard != nil {
		var err error
		if adm, err = t.Guard.Admit(ctx, rb, &ev, key, wfID); err != nil {
			return fmt.Errorf("safety check for %s: %w", wfID, err)
		}
		if !adm.Allowed {
			// No new run. A run already going for the incident still
			// hears of the alert.
			delivered, err := t.Starter.Notify(ctx, wfID, ev)
			if err != nil {
				return fmt.Errorf("notify run %s: %w", wfID, err)
			}
			a := base
			a.ID = "trigger/" + ev.ID + "/" + rb.Name()
			if delivered {
				a.Action, a.Outcome = domain.ActionRunJoined, DecisionJoined
			} else {
				a.Action, a.Outcome, a.Error = domain.ActionTriggerSuppressed, adm.Check, adm.Reason
				log.Info("alert suppressed by the safety envelope", "check", adm.Check, "reason", adm.Reason)
			}
			decision := DecisionSuppressed
			if delivered {
				decision = DecisionJoined
			}
			err = t.decided(rb.Name(), decision, t.record(ctx, a))
			if err == nil && !delivered && t.Metrics != nil {
				t.Metrics.SafetyCheck(rb.Name(), adm.Check)
			}
			return err
		}
		req.Target = adm.Target
		switch {
		case adm.DryRun:
			req.DryRun, req.DryRunReason = true, adm.Reason
		case adm.RequireApproval:
			req.ApprovalReason = adm.Reason
		}
		if adm.WaitForTarget {
			req.TargetWait = adm.TargetWait
		}
	}
	res, err := t.Starter.StartOrJoin(ctx, req)
	if err != nil {
		if adm.Reserved {
			_ = t.Guard.Release(context.WithoutCancel(ctx), rb.Name(), wfID)
		}
		return fmt.Errorf("start or join run %s: %w", wfID, err)
	}
	if !res.Started && adm.Reserved {
		// Joined a run already going: this admission started nothing.
		if err := t.Guard.Release(ctx, rb.Name(), wfID); err != nil {
			return fmt.Errorf("release safety reservation of %s: %w", wfID, err)
		}
	}
	a := base
	a.Detail = maps.Clone(base.Detail)
	if adm.Check != "" && res.Started {
		// The envelope changed how the run goes: say how and why.
		a.Detail["safetyCheck"] = adm.Check
		switch {
		case adm.DryRun:
			a.Detail["dryRun"] = adm.Reason
		case adm.RequireApproval:
			a.Detail["approvalRequired"] = adm.Reason
		case adm.WaitForTarget:
			a.Detail["waitForTarget"] = adm.Reason
		}
	}
	if adm.Target != "" {
		a.Detail["target"] = adm.Target
	}
	a.RunID = res.RunID
	a.ID = "trigger/" + ev.ID + "/" + rb.Name()
	if res.Started {
		a.Action, a.Outcome = domain.ActionTriggerMatched, DecisionStarted
	} else {
		a.Action, a.Outcome = domain.ActionRunJoined, DecisionJoined
	}
	log.Info("alert matched runbook", "outcome", a.Outcome, "run_id", res.RunID)
	err = t.decided(rb.Name(), a.Outcome, t.record(ctx, a))
	if err == nil && adm.Check != "" && res.Started && t.Metrics != nil {
		t.Metrics.SafetyCheck(rb.Name(), adm.Check)
	}
	return err
}

// decided counts a decision whose audit record was stored (err == nil): a
// redelivery after a failed record is counted once, when it succeeds.
func (t *Trigger) decided(runbook, decision string, err error) error {
	if err == nil && t.Metrics != nil {
		t.Metrics.TriggerDecision(runbook, decision)
	}
	return err
}

func (t *Trigger) record(ctx context.Context, ev domain.AuditEvent) error {
	if err := t.Audit.RecordAll(ctx, []domain.AuditEvent{ev}); err != nil {
		return fmt.Errorf("record %s: %w", ev.Action, err)
	}
	return nil
}

func alertActor(ev domain.AlertEvent) domain.Actor {
	return domain.Actor{Kind: domain.ActorAlert, Name: ev.Name()}
}
