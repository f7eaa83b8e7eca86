package triggers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync/atomic"
	"time"

	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/internal/safety"
	"github.com/salve-sre/salve/internal/tracing"
	"github.com/salve-sre/salve/runbooks"
	"github.com/salve-sre/salve/slos"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
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
	// Quiet joins a running run without telling it of the alert (it has
	// heard MaxToldPerRun already): nothing is added to its history.
	Quiet bool
	// JoinOnly: the alert may join the incident's run but not start a
	// new one when an earlier run of the incident has ended: the starter
	// then answers ErrRunEnded.
	JoinOnly bool
}

// ErrRunEnded is StartOrJoin's answer to a JoinOnly request whose run has
// ended: the alert must be decided again.
var ErrRunEnded = errors.New("the incident's admitted run has ended")

// StartResult says what happened.
type StartResult struct {
	RunID   string
	Started bool // false: the alert joined a running run
	// Trace is the started run's trace, as a W3C traceparent; "" when
	// tracing is off or the alert joined.
	Trace string
}

// Starter starts or joins runs; internal/runs implements it with Temporal.
type Starter interface {
	// StartOrJoin starts the incident's run, or delivers the alert to the
	// run already going for it.
	StartOrJoin(ctx context.Context, req StartRequest) (StartResult, error)
	// Notify delivers alerts (repeats, resolutions) to a running run in
	// one signal; it returns false, nil when no run is going.
	Notify(ctx context.Context, workflowID string, evs ...domain.AlertEvent) (bool, error)
}

// permanentError marks an error no retry can fix.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent marks err as one no retry can fix (Temporal refused the
// request itself, a template cannot render): the trigger then parks the
// alert for a person instead of retrying it.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// IsPermanent reports whether err was marked Permanent.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

// FailedAlert is one (alert, runbook) pair the trigger could not handle
// and no retry would fix. It waits for a person: after a fix (a runbook
// change, a Salve upgrade), they send it back to the trigger.
type FailedAlert struct {
	// ID names the pair (FailedID); it is the key people retry with.
	ID          string    `json:"id"`
	AlertID     string    `json:"alertId"`
	Alertname   string    `json:"alertname,omitempty"`
	Status      string    `json:"status"`
	Runbook     string    `json:"runbook"`
	IncidentKey string    `json:"incidentKey,omitempty"`
	WorkflowID  string    `json:"workflowId,omitempty"`
	Reason      string    `json:"reason"`
	FailedAt    time.Time `json:"failedAt"`
	// StreamSeq is where the alert is stored in ALERTS: a retry sends
	// that message back, so nothing but the alert's place is kept here.
	StreamSeq uint64 `json:"streamSeq"`
}

// FailedID names the (alert, runbook) pair: hex, fit for a KV key and a URL.
func FailedID(alertID, runbook string) string {
	sum := sha256.Sum256([]byte(alertID + "\x00" + runbook))
	return hex.EncodeToString(sum[:16])
}

// FailedStore keeps parked alerts; internal/bus implements it.
type FailedStore interface {
	Park(ctx context.Context, f FailedAlert) error
}

// Guard is the safety envelope: it admits new runs (cooldown, rate and
// concurrency limits, circuit breaker); internal/safety implements it.
type Guard interface {
	Admit(ctx context.Context, rb *runbooks.Runbook, alert *domain.AlertEvent, incidentKey, workflowID string) (safety.Admission, error)
	Release(ctx context.Context, runbook, workflowID string) error
}

// BudgetReader reads an SLO's error-budget burn now; internal/slobudget
// implements it with Prometheus.
type BudgetReader interface {
	Burn(ctx context.Context, slo string) (slos.Burn, error)
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
	DecisionFailed     = "failed"   // parked: no retry can fix it
)

// TriggerMetrics counts trigger decisions; internal/metrics implements
// it. A decision is counted once its audit record is stored.
type TriggerMetrics interface {
	TriggerDecision(runbook, decision string)
	// SafetyCheck counts an alert whose new run the safety envelope
	// refused or changed, by the check that decided.
	SafetyCheck(runbook, check string)
	// SLODecision counts a run started under an SLO policy, by the SLO,
	// the burn (fast, slow, none, unknown) and what the run does (act,
	// approve, notify).
	SLODecision(slo, burn, action string)
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
	// Failed parks alerts no retry can fix. Nil: such an alert is only
	// audited (trigger.failed) and cannot be retried from the API.
	Failed FailedStore
	// Now is the clock decisions are stamped with; nil = time.Now. A
	// simulation (salve backtest) sets its simulated clock.
	Now func() time.Time
	// Budgets reads the error-budget burn of the SLO a runbook names
	// (spec.slo); nil = none can be read, and such runbooks' new runs do
	// what their policy says for an unknown burn.
	Budgets BudgetReader

	told   toldRuns  // what each run was told (MaxToldPerRun)
	traces runTraces // the trace of each run this process started
}

// Inbound is one stored alert as the consumer hands it over.
type Inbound struct {
	Event domain.AlertEvent
	// StreamSeq is the alert's place in ALERTS (0 = not known).
	StreamSeq uint64
	// OnlyRunbook, when set, limits handling to that runbook: a person
	// retried the alert's failed handling by it.
	OnlyRunbook string
	// Parent is the span that stored the alert (its message's trace
	// context); invalid when tracing is off or the message had none.
	Parent trace.SpanContext
}

// part is one alert's business with one runbook (or with none: no match).
type part struct {
	in  *Inbound
	rb  *runbooks.Runbook // nil: the alert matched no runbook
	key string
	// keyErr is why the runbook's incident key does not render.
	keyErr error
	wfID   string
}

// Handle matches one alert against the runbooks and starts, joins or
// notifies runs. It returns an error when a retry can help (Temporal or the
// audit stream unavailable); the caller then redelivers the alert. Every
// step is idempotent, so a redelivery never makes a second run. An error
// no retry can fix parks the alert (trigger.failed) and returns nil.
func (t *Trigger) Handle(ctx context.Context, ev domain.AlertEvent) error {
	in := &Inbound{Event: ev}
	var errs []error
	for _, p := range t.parts(in) {
		if _, err := t.handleOne(ctx, p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// parts splits an alert into its business with each matching runbook.
func (t *Trigger) parts(in *Inbound) []part {
	set := t.Runbooks.Current()
	var matched []*runbooks.Runbook
	if set != nil {
		matched = set.Match(in.Event)
	}
	if in.OnlyRunbook != "" {
		matched = slices.DeleteFunc(matched, func(rb *runbooks.Runbook) bool { return rb.Name() != in.OnlyRunbook })
	}
	if len(matched) == 0 {
		return []part{{in: in}}
	}
	out := make([]part, 0, len(matched))
	for _, rb := range matched {
		p := part{in: in, rb: rb}
		if p.key, p.keyErr = rb.IncidentKey(in.Event); p.keyErr == nil {
			p.wfID = rb.WorkflowID(p.key)
		}
		out = append(out, p)
	}
	return out
}

// handleOne handles one part. running says the incident's run is going
// after it (started or joined), so later repeats in the same batch can
// join it in one signal.
func (t *Trigger) handleOne(ctx context.Context, p part) (running bool, err error) {
	if tracing.Enabled() {
		var span trace.Span
		ctx, span = t.startSpan(ctx, p)
		defer func() { tracing.Fail(span, err); span.End() }()
	}
	ev, rb, now := p.in.Event, p.rb, t.now()
	if rb == nil {
		if p.in.OnlyRunbook != "" {
			// A retry for a runbook that no longer matches (or exists).
			return false, t.fail(ctx, p, fmt.Errorf("retried for runbook %s, which does not match this alert now", p.in.OnlyRunbook))
		}
		return false, t.decided(ctx, "", DecisionNoMatch, t.record(ctx, domain.AuditEvent{
			ID: "trigger/" + ev.ID + "/no_match", Time: now, Actor: alertActor(ev),
			Action: domain.ActionTriggerNoMatch, Outcome: ev.Status,
			Detail: map[string]string{"alertId": ev.ID, "alertname": ev.Name()},
		}))
	}
	if p.keyErr != nil {
		// The runbook's key template does not fit this alert: no retry
		// can help until the runbook changes.
		return false, t.fail(ctx, p, fmt.Errorf("incident key: %w", p.keyErr))
	}
	running, err = t.decide(ctx, p, now)
	if IsPermanent(err) {
		return false, t.fail(ctx, p, err)
	}
	if err != nil {
		return false, fmt.Errorf("runbook %s: %w", rb.Name(), err)
	}
	return running, nil
}

// fail parks a part no retry can fix and audits why. Its errors (the
// store or the audit stream unavailable) are retryable.
func (t *Trigger) fail(ctx context.Context, p part, cause error) error {
	ev, now := p.in.Event, t.now()
	runbook, hash := p.in.OnlyRunbook, ""
	if p.rb != nil {
		runbook, hash = p.rb.Name(), p.rb.Hash
	}
	reason := cause.Error()
	if len(reason) > 2000 {
		reason = reason[:2000] + "…"
	}
	f := FailedAlert{
		ID: FailedID(ev.ID, runbook), AlertID: ev.ID, Alertname: ev.Name(), Status: ev.Status,
		Runbook: runbook, IncidentKey: p.key, WorkflowID: p.wfID, Reason: reason, FailedAt: now, StreamSeq: p.in.StreamSeq,
	}
	t.Log.WarnContext(ctx, "alert cannot be handled; parked for a person", "runbook", runbook, "alert_id", ev.ID, "failed_id", f.ID, "error", reason)
	if t.Failed != nil {
		if err := t.Failed.Park(ctx, f); err != nil {
			return fmt.Errorf("park failed alert %s: %w", f.ID, err)
		}
	}
	return t.decided(ctx, runbook, DecisionFailed, t.record(ctx, domain.AuditEvent{
		ID: "trigger/" + ev.ID + "/" + runbook + "/failed", Time: now, Actor: alertActor(ev),
		Action: domain.ActionTriggerFailed, Runbook: runbook, RunbookHash: hash,
		WorkflowID: p.wfID, IncidentKey: p.key, Outcome: DecisionFailed, Error: reason,
		Detail: map[string]string{"alertId": ev.ID, "alertname": ev.Name(), "status": ev.Status, "failedId": f.ID},
	}))
}

func (t *Trigger) decide(ctx context.Context, p part, now time.Time) (bool, error) {
	ev, rb, key, wfID := p.in.Event, p.rb, p.key, p.wfID
	base := domain.AuditEvent{
		Time: now, Actor: alertActor(ev), Runbook: rb.Name(), RunbookHash: rb.Hash,
		WorkflowID: wfID, IncidentKey: key,
		Detail: map[string]string{"alertId": ev.ID, "alertname": ev.Name(), "status": ev.Status},
	}
	log := t.Log.With("runbook", rb.Name(), "workflow_id", wfID, "alert_id", ev.ID)

	if ev.Status == domain.StatusResolved {
		a := base
		a.ID, a.Action, a.Outcome = "trigger/"+ev.ID+"/"+rb.Name()+"/resolved", domain.ActionRunSignalled, "resolved"
		if tell, _ := t.told.split(wfID, []domain.AlertEvent{ev}); len(tell) == 0 {
			// The run heard of a resolution already and of all it may.
			a.Outcome, a.Detail["told"] = "not_told", "no"
			return false, t.decided(ctx, rb.Name(), DecisionResolved, t.record(ctx, a))
		}
		delivered, err := t.Starter.Notify(ctx, wfID, ev)
		if err != nil {
			return false, fmt.Errorf("notify run %s: %w", wfID, err)
		}
		if delivered {
			t.told.told(wfID, []domain.AlertEvent{ev})
		} else {
			a.Outcome = "no_running_run"
			t.told.forget(wfID)
		}
		log.Debug("resolved alert", "delivered", delivered)
		return false, t.decided(ctx, rb.Name(), DecisionResolved, t.record(ctx, a))
	}

	var (
		req StartRequest
		adm safety.Admission
		res StartResult
		slo *sloDecision // read once, for the first admission that needs it
	)
	// At most three admissions: the run an alert was to join may end
	// between its admission and its start (ErrRunEnded), and then the
	// alert is admitted again.
	for attempt := 1; ; attempt++ {
		req = StartRequest{WorkflowID: wfID, Runbook: rb, IncidentKey: key, Alert: ev, RequestID: ev.ID}
		adm = safety.Admission{}
		if t.Guard != nil {
			var err error
			if adm, err = t.Guard.Admit(ctx, rb, &ev, key, wfID); err != nil {
				return false, fmt.Errorf("safety check for %s: %w", wfID, err)
			}
			if !adm.Allowed {
				// No new run. A run already going for the incident still
				// hears of the alert.
				delivered, err := t.Starter.Notify(ctx, wfID, ev)
				if err != nil {
					return false, fmt.Errorf("notify run %s: %w", wfID, err)
				}
				a := base
				a.ID = "trigger/" + ev.ID + "/" + rb.Name()
				if delivered {
					a.Action, a.Outcome = domain.ActionRunJoined, DecisionJoined
				} else {
					a.Action, a.Outcome, a.Error = domain.ActionTriggerSuppressed, adm.Check, adm.Reason
					log.InfoContext(ctx, "alert suppressed by the safety envelope", "check", adm.Check, "reason", adm.Reason)
				}
				if tracing.Enabled() {
					t.traceRefusal(ctx, wfID, delivered, adm)
				}
				decision := DecisionSuppressed
				if delivered {
					decision = DecisionJoined
				}
				err = t.decided(ctx, rb.Name(), decision, t.record(ctx, a))
				if err == nil && !delivered && t.Metrics != nil {
					t.Metrics.SafetyCheck(rb.Name(), adm.Check)
				}
				return delivered, err
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
			req.JoinOnly = adm.JoinOnly
		}
		if rb.Spec.SLO != nil && !req.DryRun {
			if slo == nil {
				d := t.decideBySLO(ctx, rb)
				slo = &d
			}
			slo.apply(&req)
		}
		if tell, _ := t.told.split(wfID, []domain.AlertEvent{ev}); len(tell) == 0 {
			req.Quiet = true
		}
		var err error
		res, err = t.Starter.StartOrJoin(ctx, req)
		if errors.Is(err, ErrRunEnded) && attempt < 3 {
			log.Debug("the run to join has ended; deciding again")
			continue
		}
		if err != nil {
			if adm.Reserved {
				_ = t.Guard.Release(context.WithoutCancel(ctx), rb.Name(), wfID)
			}
			return false, fmt.Errorf("start or join run %s: %w", wfID, err)
		}
		break
	}
	if !res.Started && adm.Reserved {
		// Joined a run already going: this admission started nothing.
		if err := t.Guard.Release(ctx, rb.Name(), wfID); err != nil {
			return false, fmt.Errorf("release safety reservation of %s: %w", wfID, err)
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
	if slo != nil && res.Started {
		slo.audit(a.Detail)
	}
	sloCounted := slo != nil && res.Started
	switch {
	case res.Started:
		t.told.forget(wfID) // a new run of the incident: it heard of this alert
		t.told.told(wfID, []domain.AlertEvent{ev})
	case req.Quiet:
		a.Detail["told"] = "no"
	default:
		t.told.told(wfID, []domain.AlertEvent{ev})
	}
	a.RunID = res.RunID
	a.ID = "trigger/" + ev.ID + "/" + rb.Name()
	if res.Started {
		a.Action, a.Outcome = domain.ActionTriggerMatched, DecisionStarted
	} else {
		a.Action, a.Outcome = domain.ActionRunJoined, DecisionJoined
	}
	if res.Started {
		log.InfoContext(ctx, "alert started a run", "run_id", res.RunID)
	} else {
		log.DebugContext(ctx, "alert joined a run", "run_id", res.RunID)
	}
	if tracing.Enabled() {
		if res.Started {
			t.traces.remember(wfID, res.RunID, tracing.SpanContextOf(res.Trace))
		} else {
			t.onRunTraceOf(ctx, wfID, res.RunID, "joined", tracing.AttrAlertID.String(ev.ID))
		}
	}
	err := t.decided(ctx, rb.Name(), a.Outcome, t.record(ctx, a))
	if err == nil && adm.Check != "" && res.Started && t.Metrics != nil {
		t.Metrics.SafetyCheck(rb.Name(), adm.Check)
	}
	if err == nil && sloCounted && t.Metrics != nil {
		t.Metrics.SLODecision(slo.slo, a.Detail["sloBurn"], slo.action)
	}
	return true, err
}

// now is the time decisions are stamped with, in UTC.
func (t *Trigger) now() time.Time {
	if t.Now != nil {
		return t.Now().UTC()
	}
	return time.Now().UTC()
}

// decided counts a decision whose audit record was stored (err == nil): a
// redelivery after a failed record is counted once, when it succeeds.
func (t *Trigger) decided(ctx context.Context, runbook, decision string, err error) error {
	if err == nil && t.Metrics != nil {
		t.Metrics.TriggerDecision(runbook, decision)
	}
	if err == nil && tracing.Enabled() {
		trace.SpanFromContext(ctx).SetAttributes(tracing.AttrDecision.String(decision))
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

// handleBatch handles one lane's parts in arrival order and returns each
// part's error. After a part finds its incident's run going, the firing
// repeats of that incident later in the batch join it together: one
// signal and one audit publish for all of them, instead of a safety
// check, a Temporal start and a signal each.
func (t *Trigger) handleBatch(ctx context.Context, parts []part) []error {
	errs := make([]error, len(parts))
	done := make([]bool, len(parts))
	for i := range parts {
		if done[i] {
			continue
		}
		done[i] = true
		running, err := t.handleOne(ctx, parts[i])
		errs[i] = err
		if !running {
			continue
		}
		var group []int
		for j := i + 1; j < len(parts); j++ {
			if done[j] || parts[j].wfID != parts[i].wfID || parts[j].rb != parts[i].rb {
				continue
			}
			if parts[j].in.Event.Status != domain.StatusFiring {
				break // a resolution keeps its place in the order
			}
			group = append(group, j)
		}
		if len(group) == 0 {
			continue
		}
		joined, err := t.joinAll(ctx, parts, group)
		for _, j := range group {
			if joined {
				done[j], errs[j] = true, err
			}
		}
		// Not joined (the run ended meanwhile): each is handled alone.
	}
	return errs
}

// joinAll delivers the parts at idx to their running run in one signal and
// audits each as joined. It returns false, nil when no run is going.
func (t *Trigger) joinAll(ctx context.Context, parts []part, idx []int) (_ bool, err error) {
	first := parts[idx[0]]
	if tracing.Enabled() {
		var span trace.Span
		ctx, span = t.startJoinSpan(ctx, parts, idx)
		defer func() { tracing.Fail(span, err); span.End() }()
	}
	evs := make([]domain.AlertEvent, 0, len(idx))
	for _, j := range idx {
		evs = append(evs, parts[j].in.Event)
	}
	// The run was found going just before: what it may not be told
	// (MaxToldPerRun) joins it quietly.
	tell, skip := t.told.split(first.wfID, evs)
	if len(tell) > 0 {
		delivered, err := t.Starter.Notify(ctx, first.wfID, tell...)
		if err != nil || !delivered {
			if err != nil {
				err = fmt.Errorf("runbook %s: notify run %s: %w", first.rb.Name(), first.wfID, err)
			} else {
				t.told.forget(first.wfID)
			}
			return err != nil, err
		}
		t.told.told(first.wfID, tell)
		if tracing.Enabled() {
			t.onRunTrace(ctx, first.wfID, "joined", attribute.Int("salve.alerts", len(idx)))
		}
	}
	quiet := map[string]bool{}
	for _, ev := range skip {
		quiet[ev.ID] = true
	}
	now := t.now()
	recs := make([]domain.AuditEvent, 0, len(idx))
	for _, ev := range evs {
		rec := domain.AuditEvent{
			ID: "trigger/" + ev.ID + "/" + first.rb.Name(), Time: now, Actor: alertActor(ev),
			Action: domain.ActionRunJoined, Outcome: DecisionJoined,
			Runbook: first.rb.Name(), RunbookHash: first.rb.Hash, WorkflowID: first.wfID, IncidentKey: first.key,
			Detail: map[string]string{"alertId": ev.ID, "alertname": ev.Name(), "status": ev.Status},
		}
		if quiet[ev.ID] {
			rec.Detail["told"] = "no"
		}
		recs = append(recs, rec)
	}
	if err := t.Audit.RecordAll(ctx, recs); err != nil {
		return true, fmt.Errorf("record %d joins of %s: %w", len(recs), first.wfID, err)
	}
	if t.Metrics != nil {
		for range recs {
			t.Metrics.TriggerDecision(first.rb.Name(), DecisionJoined)
		}
	}
	return true, nil
}
