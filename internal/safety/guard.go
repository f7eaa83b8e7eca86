// Package safety keeps the state of the safety envelope — cooldowns, rate
// and concurrency limits, circuit breakers — in a JetStream key-value
// bucket, updated with compare-and-set. It survives restarts and is shared
// by every Salve replica: nothing lives in process memory.
package safety

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/salve-sre/salve/internal/bus"
	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/runbooks"
)

// Bucket is the key-value bucket of the safety state.
const Bucket = "SALVE_SAFETY"

// Checks that can refuse or change a run, as audited.
const (
	CheckCooldown          = "cooldown"
	CheckRate              = "max_runs_per_hour"
	CheckDailyRate         = "max_runs_per_day"
	CheckConcurrency       = "max_concurrent"
	CheckGlobalConcurrency = "max_concurrent_runs"
	CheckBreakerOpen       = "circuit_breaker_open"
	CheckTargetLocked      = "target_locked"
	CheckNoTarget          = "no_target"
	CheckBlastRadius       = "blast_radius"
	CheckSilenced          = "silenced"
	CheckMaintenance       = "maintenance_window"
	maxCASAttempts         = 20
	staleActiveEntries     = 24 * time.Hour
	globalKey              = "global"
)

// Checks lists every check an admission can name, for bounded metric
// labels.
var Checks = []string{CheckCooldown, CheckRate, CheckDailyRate, CheckConcurrency, CheckGlobalConcurrency,
	CheckBreakerOpen, CheckTargetLocked, CheckNoTarget, CheckBlastRadius, CheckSilenced, CheckMaintenance}

// Admission is the answer to "may this run start now?". It is stored in
// the bucket (activeRun) under its Go field names, as it always was.
type Admission struct {
	Allowed bool `json:"Allowed,omitempty"`
	// Reserved: this call took a place that Release gives back if nothing
	// starts (false when the run was already admitted, e.g. a redelivery).
	Reserved bool `json:"Reserved,omitempty"`
	// DryRun: the run may start, but only as a plan that changes nothing
	// (the runbook's circuit breaker is open).
	DryRun bool `json:"DryRun,omitempty"`
	// Check and Reason say which rule decided and why, for the audit log.
	Check  string `json:"Check,omitempty"`
	Reason string `json:"Reason,omitempty"`
	// Target is what the run acts on ("" when its runbook names none).
	Target string `json:"Target,omitempty"`
	// WaitForTarget: another run holds Target; the run must acquire it
	// (AcquireTarget) before acting, waiting at most TargetWait.
	WaitForTarget bool          `json:"WaitForTarget,omitempty"`
	TargetWait    time.Duration `json:"TargetWait,omitempty"`
	// RequireApproval: the run must wait for a person's approval before
	// acting (blast radius exceeded under onExceed: approve); Reason says
	// why.
	RequireApproval bool `json:"RequireApproval,omitempty"`
	// JoinOnly: a run of the incident was admitted for another alert, so
	// this one may only join that run. If that run has ended by the time
	// the alert reaches Temporal, no new run may start on this admission:
	// the alert is admitted again (and then meets the cooldown).
	JoinOnly bool `json:"-"`
}

// Guard decides admissions against the shared state.
type Guard struct {
	kv  Store
	now func() time.Time
	cfg Config
	// Silences, when set, is asked before runs of runbooks that respect
	// Alertmanager's silences.
	Silences SilenceChecker
	// docs are this process's copies of the state documents (docSlot).
	docs sync.Map // key -> *docSlot
}

// Configure sets the global part of the envelope (from the config file).
func (g *Guard) Configure(c Config) { g.cfg = c }

// Open creates (or finds) the bucket. replicas is the bucket's replication
// (3 on a production cluster, 1 for dev).
func Open(ctx context.Context, js jetstream.JetStream, replicas int) (*Guard, error) {
	if replicas <= 0 {
		replicas = 1
	}
	kv, err := bus.EnsureKeyValue(ctx, js, jetstream.KeyValueConfig{
		Bucket:      Bucket,
		Description: "Salve's safety envelope: cooldowns, rate and concurrency limits, circuit breakers",
		History:     1,
		Replicas:    replicas,
		Storage:     jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("safety state bucket %s: %w", Bucket, err)
	}
	return NewGuard(kv, time.Now), nil
}

// runbookState is one runbook's document (and, under globalKey, the
// document of all runs: only Active is used there).
type runbookState struct {
	// Starts are the admitted starts of the last day.
	Starts stamps `json:"starts,omitempty"`
	// Targets are the distinct targets acted on, with the last time, for
	// the blast radius.
	Targets map[string]time.Time `json:"targets,omitempty"`
	// Active are the admitted runs not yet finished, by workflow ID.
	Active map[string]activeRun `json:"active,omitempty"`
	// Failures are the failed runs within the breaker's window.
	Failures []time.Time `json:"failures,omitempty"`
	// OpenSince is when the circuit breaker opened; zero = closed.
	OpenSince time.Time `json:"openSince,omitzero"`
}

// activeRun remembers what the run's finish must apply: the settings of
// the runbook as it was admitted.
type activeRun struct {
	IncidentKey string `json:"incidentKey"`
	// AlertID is the alert admitted ("" for a launch without one).
	AlertID  string        `json:"alertId,omitempty"`
	Since    time.Time     `json:"since"`
	Cooldown time.Duration `json:"cooldown,omitempty"`
	Failures int           `json:"breakerFailures,omitempty"`
	Window   time.Duration `json:"breakerWindow,omitempty"`
	// Admission is what was decided, for a redelivered alert whose run
	// did not start before a crash: it must start the same way.
	Admission Admission `json:"admission"`
	// Global: the run holds a place under the global concurrency limit.
	Global bool `json:"global,omitempty"`
}

// A shadow runbook keeps its own state under shadowSpace: its runs count
// against its own limits only, as if it acted, and a promoted runbook
// starts with a clean slate instead of meeting its shadow runs' cooldowns
// and rate limits.
const shadowSpace = "shadow."

func space(rb *runbooks.Runbook) string {
	if rb.Spec.Safety.Shadow() {
		return shadowSpace
	}
	return ""
}

func runbookKey(space, name string) string { return space + "runbook." + name }

func cooldownKey(space, runbook, incident string) string {
	sum := sha256.Sum256([]byte(incident))
	return space + "cooldown." + runbook + "." + hex.EncodeToString(sum[:12])
}

// Admit decides whether a new run of rb for incidentKey may start now and,
// if so, reserves its place (counted against the rate and concurrency
// limits, and holding its target, until Finished or Release). alert is nil
// for a launch without one.
func (g *Guard) Admit(ctx context.Context, rb *runbooks.Runbook, alert *domain.AlertEvent, incidentKey, workflowID string) (Admission, error) {
	s := g.effective(rb.Spec.Safety)
	now := g.now().UTC()
	sp := space(rb)
	if cool, err := g.cooling(ctx, sp, rb.Name(), incidentKey, s, now); err != nil || cool != nil {
		return deref(cool), err
	}
	if (s.RespectSilences || g.cfg.Alertmanager.CheckSilences) && alert != nil && g.Silences != nil {
		sil, err := g.Silences.Matching(ctx, alert.Labels)
		if err != nil {
			// Not knowing whether a person silenced this alert, do not act
			// yet: the alert is retried until Alertmanager answers.
			return Admission{}, fmt.Errorf("check Alertmanager silences: %w", err)
		}
		if sil != nil {
			return Admission{Check: CheckSilenced, Reason: fmt.Sprintf("Alertmanager silence %s by %s matches the alert until %s: %q", sil.ID, sil.CreatedBy, sil.EndsAt.Format(time.RFC3339), sil.Comment)}, nil
		}
	}
	target, err := rb.Target(alert, nil)
	if err != nil {
		return Admission{Check: CheckNoTarget, Reason: err.Error()}, nil
	}

	var adm Admission
	var again bool
	global := g.cfg.MaxConcurrentRuns > 0
	err = g.update(ctx, runbookKey(sp, rb.Name()), func(st *runbookState) bool {
		again = false
		st.trim(now, s)
		if a, ok := st.Active[workflowID]; ok {
			adm, again = a.Admission, true // already admitted
			adm.Reserved = false
			// The same alert again is a redelivery (its run may not have
			// started before a crash); another alert may only join.
			adm.JoinOnly = alert != nil && a.AlertID != "" && a.AlertID != alert.ID
			return false
		}
		starts := 0
		for _, t := range st.Starts {
			if now.Sub(t) < time.Hour {
				starts++
			}
		}
		switch {
		case s.MaxRunsPerHour > 0 && starts >= s.MaxRunsPerHour:
			adm = Admission{Check: CheckRate, Reason: fmt.Sprintf("runbook %s started %d runs in the last hour (maxRunsPerHour %d)", rb.Name(), starts, s.MaxRunsPerHour)}
			return false
		case s.MaxRunsPerDay > 0 && len(st.Starts) >= s.MaxRunsPerDay:
			adm = Admission{Check: CheckDailyRate, Reason: fmt.Sprintf("runbook %s started %d runs in the last 24h (maxRunsPerDay %d)", rb.Name(), len(st.Starts), s.MaxRunsPerDay)}
			return false
		case s.MaxConcurrent > 0 && len(st.Active) >= s.MaxConcurrent:
			adm = Admission{Check: CheckConcurrency, Reason: fmt.Sprintf("runbook %s has %d runs going (maxConcurrent %d)", rb.Name(), len(st.Active), s.MaxConcurrent)}
			return false
		}
		adm = Admission{Allowed: true, Reserved: true, Target: target}
		if b := s.BlastRadius; b != nil && target != "" {
			if _, known := st.Targets[target]; !known && len(st.Targets) >= b.MaxTargets {
				reason := fmt.Sprintf("runbook %s acted on %d distinct targets in the last %s (blastRadius.maxTargets %d); %q would be one more", rb.Name(), len(st.Targets), b.Window, b.MaxTargets, target)
				if b.OnExceed != runbooks.BlastApprove {
					adm = Admission{Check: CheckBlastRadius, Reason: reason}
					return false
				}
				adm.RequireApproval, adm.Check, adm.Reason = true, CheckBlastRadius, reason+": the run waits for a person's approval"
			}
		}
		if !st.OpenSince.IsZero() {
			adm.DryRun, adm.Check = true, CheckBreakerOpen
			adm.Reason = fmt.Sprintf("the circuit breaker of runbook %s is open since %s: the run is a dry-run plan until an admin resets it (POST /v1/runbooks/%s/breaker/reset)", rb.Name(), st.OpenSince.Format(time.RFC3339), rb.Name())
		} else if w := g.cfg.activeWindow(rb.Name(), now); w != nil {
			adm.DryRun, adm.Check = true, CheckMaintenance
			adm.Reason = fmt.Sprintf("maintenance window %q until %s: the run is a dry-run plan that changes nothing", w.Name, w.End.Format(time.RFC3339))
		}
		st.Starts = append(st.Starts, now)
		if target != "" && s.BlastRadius != nil {
			if st.Targets == nil {
				st.Targets = map[string]time.Time{}
			}
			st.Targets[target] = now
		}
		if st.Active == nil {
			st.Active = map[string]activeRun{}
		}
		// Global is set before the global place is taken, so that one
		// write suffices; releasing a place never taken changes nothing.
		// A shadow run holds no global place (peek only looks).
		a := activeRun{IncidentKey: incidentKey, Since: now, Cooldown: s.Cooldown.D(), Admission: adm, Global: global && sp == ""}
		if alert != nil {
			a.AlertID = alert.ID
		}
		if cb := s.CircuitBreaker; cb != nil {
			a.Failures, a.Window = cb.Failures, cb.Window.D()
		}
		st.Active[workflowID] = a
		return true
	})
	if err != nil || !adm.Allowed {
		return adm, err
	}
	// The places below are taken one document at a time; a refusal gives
	// back what this admission took before it.
	undo := func(refused Admission) (Admission, error) {
		if _, err := g.release(ctx, sp, rb.Name(), workflowID); err != nil {
			return Admission{}, err
		}
		return refused, nil
	}
	if adm.Reserved {
		// The incident's last run may have finished between the cooldown
		// check above and the reservation: Finished starts the cooldown
		// before it frees the run's place, so it shows now.
		if cool, err := g.cooling(ctx, sp, rb.Name(), incidentKey, s, now); err != nil || cool != nil {
			if err != nil {
				_, _ = undo(Admission{})
				return Admission{}, err
			}
			return undo(*cool)
		}
	}
	if sp == shadowSpace {
		if again {
			// A redelivery: the run was admitted, and a place a real run
			// took since must not take the shadow run's back.
			return adm, nil
		}
		// A shadow run takes no place from real runs: it only learns
		// whether a real run would have found one.
		refused, err := g.peek(ctx, rb, workflowID, target, &adm)
		if err != nil || refused != nil {
			if err != nil {
				_, _ = undo(Admission{})
				return Admission{}, err
			}
			return undo(*refused)
		}
		return adm, nil
	}
	if limit := g.cfg.MaxConcurrentRuns; limit > 0 && !again {
		var refused *Admission
		err := g.update(ctx, globalKey, func(st *runbookState) bool {
			refused = nil
			st.trim(now, runbooks.Safety{})
			if len(st.Active) >= limit {
				refused = &Admission{Check: CheckGlobalConcurrency, Reason: fmt.Sprintf("%d alert-triggered runs are going across all runbooks (safety.maxConcurrentRuns %d)", len(st.Active), limit)}
				return false
			}
			if st.Active == nil {
				st.Active = map[string]activeRun{}
			}
			st.Active[workflowID] = activeRun{IncidentKey: incidentKey, Since: now}
			return true
		})
		if err != nil {
			_, _ = undo(Admission{})
			return Admission{}, err
		}
		if refused != nil {
			return undo(*refused)
		}
	}
	if target != "" {
		lock := s.LockPolicy()
		held, holder, err := g.AcquireTarget(ctx, target, rb.Name(), workflowID)
		if err != nil {
			_, _ = undo(Admission{})
			return Admission{}, err
		}
		if !held {
			busy := fmt.Sprintf("target %q is held by run %s (runbook %s) since %s", target, holder.WorkflowID, holder.Runbook, holder.Since.Format(time.RFC3339))
			if lock.OnBusy == runbooks.TargetBusySuppress {
				return undo(Admission{Check: CheckTargetLocked, Reason: busy})
			}
			adm.WaitForTarget, adm.TargetWait = true, lock.MaxWait.D()
			if adm.Check == "" {
				adm.Check, adm.Reason = CheckTargetLocked, busy+fmt.Sprintf(": the run waits up to %s for it before acting", lock.MaxWait)
			}
			// Remembered for a redelivery: the run must start the same way.
			if err := g.update(ctx, runbookKey(sp, rb.Name()), func(st *runbookState) bool {
				a, ok := st.Active[workflowID]
				if !ok {
					return false
				}
				a.Admission = adm
				st.Active[workflowID] = a
				return true
			}); err != nil {
				return Admission{}, err
			}
		}
	}
	return adm, nil
}

// peek decides a shadow admission's places shared with real runs — the
// global concurrency limit and the target — without taking them. It
// returns the refusal a real run would have met, or notes in adm what it
// would have waited for.
func (g *Guard) peek(ctx context.Context, rb *runbooks.Runbook, workflowID, target string, adm *Admission) (*Admission, error) {
	if limit := g.cfg.MaxConcurrentRuns; limit > 0 {
		st, _, err := g.read(ctx, globalKey)
		if err != nil {
			return nil, err
		}
		st.trim(g.now().UTC(), runbooks.Safety{})
		if len(st.Active) >= limit {
			return &Admission{Check: CheckGlobalConcurrency, Reason: fmt.Sprintf("%d alert-triggered runs are going across all runbooks (safety.maxConcurrentRuns %d): a real run would not start", len(st.Active), limit)}, nil
		}
	}
	if target == "" {
		return nil, nil
	}
	holder, err := g.TargetHolder(ctx, target)
	if err != nil || holder == nil || holder.WorkflowID == workflowID {
		return nil, err
	}
	busy := fmt.Sprintf("target %q is held by run %s (runbook %s) since %s", target, holder.WorkflowID, holder.Runbook, holder.Since.Format(time.RFC3339))
	if rb.Spec.Safety.LockPolicy().OnBusy == runbooks.TargetBusySuppress {
		return &Admission{Check: CheckTargetLocked, Reason: busy}, nil
	}
	if adm.Check == "" {
		adm.Check, adm.Reason = CheckTargetLocked, busy+": a real run would wait for it before acting"
	}
	return nil, nil
}

// TargetHolder returns the run holding target, or nil when none does (or
// its holder is stale).
func (g *Guard) TargetHolder(ctx context.Context, target string) (*TargetHolder, error) {
	e, err := g.kv.Get(ctx, targetKey(target))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read target lock: %w", err)
	}
	var cur TargetHolder
	if err := json.Unmarshal(e.Value(), &cur); err != nil {
		return nil, fmt.Errorf("target lock for %q is corrupt: %w", target, err)
	}
	if g.now().Sub(cur.Since) >= staleActiveEntries {
		return nil, nil
	}
	return &cur, nil
}

// cooling returns the refusal of an incident still in its cooldown, or nil.
func (g *Guard) cooling(ctx context.Context, space, runbook, incidentKey string, s runbooks.Safety, now time.Time) (*Admission, error) {
	if s.Cooldown <= 0 {
		return nil, nil
	}
	e, err := g.kv.Get(ctx, cooldownKey(space, runbook, incidentKey))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read cooldown: %w", err)
	}
	var until time.Time
	if json.Unmarshal(e.Value(), &until) != nil || !now.Before(until) {
		return nil, nil
	}
	return &Admission{Check: CheckCooldown, Reason: fmt.Sprintf("a run for incident %q finished recently: cooldown %s, until %s", incidentKey, s.Cooldown, until.Format(time.RFC3339))}, nil
}

func deref(a *Admission) Admission {
	if a == nil {
		return Admission{}
	}
	return *a
}

// TargetHolder is the run holding a target.
type TargetHolder struct {
	Target     string    `json:"target"`
	WorkflowID string    `json:"workflowId"`
	Runbook    string    `json:"runbook"`
	Since      time.Time `json:"since"`
}

func targetKey(target string) string {
	sum := sha256.Sum256([]byte(target))
	return "target." + hex.EncodeToString(sum[:16])
}

// AcquireTarget takes target for workflowID if no other run holds it. It
// reports whether workflowID holds it now and, if not, who does. Holding
// it already counts as success, so a retry is harmless.
func (g *Guard) AcquireTarget(ctx context.Context, target, runbook, workflowID string) (bool, TargetHolder, error) {
	key := targetKey(target)
	now := g.now().UTC()
	for range maxCASAttempts {
		var cur TargetHolder
		e, err := g.kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return false, cur, fmt.Errorf("read target lock: %w", err)
		default:
			if err := json.Unmarshal(e.Value(), &cur); err != nil {
				return false, cur, fmt.Errorf("target lock %s is corrupt: %w", key, err)
			}
			if cur.WorkflowID == workflowID {
				return true, cur, nil
			}
			// A holder that never reported its end (terminated by hand)
			// must not block the target for ever.
			if now.Sub(cur.Since) < staleActiveEntries {
				return false, cur, nil
			}
		}
		b, _ := json.Marshal(TargetHolder{Target: target, WorkflowID: workflowID, Runbook: runbook, Since: now})
		if e == nil {
			_, err = g.kv.Create(ctx, key, b)
		} else {
			_, err = g.kv.Update(ctx, key, b, e.Revision())
		}
		if err == nil {
			return true, TargetHolder{Target: target, WorkflowID: workflowID, Runbook: runbook, Since: now}, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !isWrongSequence(err) {
			return false, cur, fmt.Errorf("take target lock: %w", err)
		}
	}
	return false, TargetHolder{}, fmt.Errorf("take target lock %q: too much contention", target)
}

// releaseTarget frees target if workflowID holds it.
func (g *Guard) releaseTarget(ctx context.Context, target, workflowID string) error {
	if target == "" {
		return nil
	}
	key := targetKey(target)
	e, err := g.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read target lock: %w", err)
	}
	var cur TargetHolder
	if json.Unmarshal(e.Value(), &cur) == nil && cur.WorkflowID != workflowID {
		return nil
	}
	// Delete only the revision we read: a lock another run took since
	// stays.
	if err := g.kv.Delete(ctx, key, jetstream.LastRevision(e.Revision())); err != nil && !isWrongSequence(err) {
		return fmt.Errorf("release target lock: %w", err)
	}
	return nil
}

// Release gives back an admission that started nothing (the alert joined
// a run already going, or a later check refused it).
func (g *Guard) Release(ctx context.Context, runbook, workflowID string) error {
	found, err := g.release(ctx, "", runbook, workflowID)
	if err != nil || found {
		return err
	}
	_, err = g.release(ctx, shadowSpace, runbook, workflowID)
	return err
}

func (g *Guard) release(ctx context.Context, space, runbook, workflowID string) (bool, error) {
	var a activeRun
	var found bool
	err := g.update(ctx, runbookKey(space, runbook), func(st *runbookState) bool {
		a, found = st.Active[workflowID]
		if !found {
			return false
		}
		delete(st.Active, workflowID)
		for i, t := range st.Starts {
			if t.Equal(a.Since) {
				st.Starts = append(st.Starts[:i], st.Starts[i+1:]...)
				break
			}
		}
		return true
	})
	if err != nil || !found {
		return found, err
	}
	return true, g.freePlaces(ctx, a, workflowID)
}

// freePlaces gives back what a run held outside its runbook's document.
func (g *Guard) freePlaces(ctx context.Context, a activeRun, workflowID string) error {
	if err := g.releaseTarget(ctx, a.Admission.Target, workflowID); err != nil {
		return err
	}
	return g.update(ctx, globalKey, func(st *runbookState) bool {
		if _, ok := st.Active[workflowID]; !ok {
			return false
		}
		delete(st.Active, workflowID)
		return true
	})
}

// Finished applies a finished run: it frees its place, starts its
// incident's cooldown and counts a failure towards the circuit breaker.
// It is idempotent: a run not (or no longer) admitted changes nothing.
func (g *Guard) Finished(ctx context.Context, runbook, workflowID, outcome string, at time.Time) error {
	found, err := g.finished(ctx, "", runbook, workflowID, outcome, at)
	if err != nil || found {
		return err
	}
	// Not a real run's: a shadow run's, or none (a manual launch).
	_, err = g.finished(ctx, shadowSpace, runbook, workflowID, outcome, at)
	return err
}

func (g *Guard) finished(ctx context.Context, space, runbook, workflowID, outcome string, at time.Time) (bool, error) {
	var done activeRun
	var found, cooled bool
	var coolErr error
	err := g.update(ctx, runbookKey(space, runbook), func(st *runbookState) bool {
		coolErr = nil
		done, found = st.Active[workflowID]
		if !found {
			return false
		}
		// The cooldown starts before the place is freed: an admission
		// that finds the place free then finds the cooldown too.
		if done.Cooldown > 0 && !cooled {
			until, _ := json.Marshal(at.UTC().Add(done.Cooldown))
			if _, err := g.kv.Put(ctx, cooldownKey(space, runbook, done.IncidentKey), until); err != nil {
				coolErr = fmt.Errorf("start cooldown: %w", err)
				return false
			}
			cooled = true
		}
		delete(st.Active, workflowID)
		if outcome == "failed" && done.Failures > 0 {
			cutoff := at.Add(-done.Window)
			kept := st.Failures[:0]
			for _, f := range st.Failures {
				if f.After(cutoff) {
					kept = append(kept, f)
				}
			}
			st.Failures = append(kept, at.UTC())
			if len(st.Failures) >= done.Failures && st.OpenSince.IsZero() {
				st.OpenSince = at.UTC()
			}
		}
		return true
	})
	if err == nil {
		err = coolErr
	}
	if err != nil || !found {
		return found, err
	}
	return true, g.freePlaces(ctx, done, workflowID)
}

// BreakerState is a runbook's circuit breaker as shown to people.
type BreakerState struct {
	Runbook   string    `json:"runbook"`
	Open      bool      `json:"open"`
	OpenSince time.Time `json:"openSince,omitzero"`
	Failures  int       `json:"recentFailures"`
	Active    int       `json:"activeRuns"`
	Starts    int       `json:"startsLastHour"`
	StartsDay int       `json:"startsLastDay"`
	// Targets is the number of distinct targets within the blast-radius
	// window.
	Targets int `json:"recentTargets"`
}

// State reads a runbook's state.
func (g *Guard) State(ctx context.Context, runbook string) (BreakerState, error) {
	st, _, err := g.read(ctx, runbookKey("", runbook))
	if err != nil {
		return BreakerState{}, err
	}
	starts := 0
	for _, t := range st.Starts {
		if g.now().Sub(t) < time.Hour {
			starts++
		}
	}
	return BreakerState{Runbook: runbook, Open: !st.OpenSince.IsZero(), OpenSince: st.OpenSince,
		Failures: len(st.Failures), Active: len(st.Active), Starts: starts, StartsDay: len(st.Starts), Targets: len(st.Targets)}, nil
}

// Reset closes a runbook's circuit breaker and forgets its failures. It
// reports whether the breaker was open.
func (g *Guard) Reset(ctx context.Context, runbook string) (bool, error) {
	var was bool
	err := g.update(ctx, runbookKey("", runbook), func(st *runbookState) bool {
		was = !st.OpenSince.IsZero()
		st.OpenSince, st.Failures = time.Time{}, nil
		return true
	})
	return was, err
}

func (st *runbookState) trim(now time.Time, s runbooks.Safety) {
	keep := st.Starts[:0]
	for _, t := range st.Starts {
		if now.Sub(t) < 24*time.Hour {
			keep = append(keep, t)
		}
	}
	st.Starts = keep
	for target, t := range st.Targets {
		if s.BlastRadius == nil || now.Sub(t) >= s.BlastRadius.Window.D() {
			delete(st.Targets, target)
		}
	}
	for id, a := range st.Active {
		// A run that never reported its end (terminated by hand) must not
		// hold a place for ever.
		if now.Sub(a.Since) > staleActiveEntries {
			delete(st.Active, id)
		}
	}
	if cb := s.CircuitBreaker; cb != nil && st.OpenSince.IsZero() {
		kept := st.Failures[:0]
		for _, f := range st.Failures {
			if now.Sub(f) < cb.Window.D() {
				kept = append(kept, f)
			}
		}
		st.Failures = kept
	}
}

// stamps are times encoded exactly as encoding/json encodes time.Time
// (RFC 3339 with nanoseconds), in one pass: a runbook's document holds a
// day of starts, and encoding each through time.Time's MarshalJSON made
// most of an admission's cost in a storm.
type stamps []time.Time

// MarshalJSON encodes the times as a JSON array of RFC 3339 strings.
func (s stamps) MarshalJSON() ([]byte, error) {
	if s == nil {
		return []byte("null"), nil
	}
	b := make([]byte, 0, 2+len(s)*(len(time.RFC3339Nano)+3))
	b = append(b, '[')
	for i, t := range s {
		if y := t.Year(); y < 0 || y > 9999 {
			return nil, fmt.Errorf("start time %v: year outside [0,9999]", t)
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = t.AppendFormat(b, time.RFC3339Nano)
		b = append(b, '"')
	}
	return append(b, ']'), nil
}

func (g *Guard) read(ctx context.Context, key string) (runbookState, uint64, error) {
	var st runbookState
	e, err := g.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return st, 0, nil
	}
	if err != nil {
		return st, 0, fmt.Errorf("read safety state %s: %w", key, err)
	}
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		return st, 0, fmt.Errorf("safety state %s is corrupt: %w", key, err)
	}
	return st, e.Revision(), nil
}

// docSlot is this process's copy of one state document. Its mutex
// serialises this process's updates of the document: the trigger admits
// many incidents at once, and without it they would mostly lose their
// compare-and-set to each other. CAS still decides between processes.
type docSlot struct {
	mu  sync.Mutex
	st  *runbookState // last value this process read or wrote; nil = unknown
	rev uint64
}

// update applies change with compare-and-set, retrying when another
// replica wrote in between. change returns false to write nothing.
//
// The document this process last wrote is kept decoded: a storm of
// admissions of one runbook would otherwise re-read and re-decode a
// document that grows with its active runs for every one of them. A
// stale copy cannot do harm: a write based on it fails its
// compare-and-set, and a change that writes nothing (a refusal, a
// redelivery) is decided again on a fresh read before it counts.
func (g *Guard) update(ctx context.Context, key string, change func(*runbookState) bool) error {
	v, _ := g.docs.LoadOrStore(key, &docSlot{})
	slot := v.(*docSlot)
	slot.mu.Lock()
	defer slot.mu.Unlock()
	for range maxCASAttempts {
		fresh := slot.st == nil
		if fresh {
			st, rev, err := g.read(ctx, key)
			if err != nil {
				return err
			}
			slot.st, slot.rev = &st, rev
		}
		// change may modify the copy in place: from here on it is only
		// kept if it is what the bucket holds.
		st := slot.st
		slot.st = nil
		if !change(st) {
			if !fresh && !g.holds(ctx, key, slot.rev) {
				continue // decide again on what the bucket holds now
			}
			slot.st = st // unchanged but for trimming, which changes nothing that counts
			return nil
		}
		b, err := json.Marshal(st)
		if err != nil {
			return err
		}
		var rev uint64
		if slot.rev == 0 {
			rev, err = g.kv.Create(ctx, key, b)
		} else {
			rev, err = g.kv.Update(ctx, key, b, slot.rev)
		}
		if err == nil {
			slot.st, slot.rev = st, rev
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !isWrongSequence(err) {
			return fmt.Errorf("write safety state %s: %w", key, err)
		}
	}
	return fmt.Errorf("write safety state %s: too much contention (%d attempts)", key, maxCASAttempts)
}

// holds reports whether the bucket still holds revision rev of key (0:
// no such key), so a refusal decided on this process's copy stands
// without decoding the document again: in a storm most admissions of a
// runbook are refusals, and its document grows with its day of starts.
func (g *Guard) holds(ctx context.Context, key string, rev uint64) bool {
	e, err := g.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return rev == 0
	}
	return err == nil && e.Revision() == rev
}

func isWrongSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}
