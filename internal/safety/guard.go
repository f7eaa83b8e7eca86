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
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/salve-sre/salve/runbooks"
)

// Bucket is the key-value bucket of the safety state.
const Bucket = "SALVE_SAFETY"

// Checks that can refuse or change a run, as audited.
const (
	CheckCooldown      = "cooldown"
	CheckRate          = "max_runs_per_hour"
	CheckConcurrency   = "max_concurrent"
	CheckBreakerOpen   = "circuit_breaker_open"
	maxCASAttempts     = 20
	staleActiveEntries = 24 * time.Hour
)

// Admission is the answer to "may this run start now?".
type Admission struct {
	Allowed bool
	// Reserved: this call took a place that Release gives back if nothing
	// starts (false when the run was already admitted, e.g. a redelivery).
	Reserved bool
	// DryRun: the run may start, but only as a plan that changes nothing
	// (the runbook's circuit breaker is open).
	DryRun bool
	// Check and Reason say which rule decided and why, for the audit log.
	Check  string
	Reason string
}

// Guard decides admissions against the shared state.
type Guard struct {
	kv  jetstream.KeyValue
	now func() time.Time
}

// Open creates (or finds) the bucket. replicas is the bucket's replication
// (3 on a production cluster, 1 for dev).
func Open(ctx context.Context, js jetstream.JetStream, replicas int) (*Guard, error) {
	if replicas <= 0 {
		replicas = 1
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      Bucket,
		Description: "Salve's safety envelope: cooldowns, rate and concurrency limits, circuit breakers",
		History:     1,
		Replicas:    replicas,
		Storage:     jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("safety state bucket %s: %w", Bucket, err)
	}
	return &Guard{kv: kv, now: time.Now}, nil
}

// runbookState is one runbook's document.
type runbookState struct {
	// Starts are the admitted starts of the last hour.
	Starts []time.Time `json:"starts,omitempty"`
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
	IncidentKey string        `json:"incidentKey"`
	Since       time.Time     `json:"since"`
	Cooldown    time.Duration `json:"cooldown,omitempty"`
	Failures    int           `json:"breakerFailures,omitempty"`
	Window      time.Duration `json:"breakerWindow,omitempty"`
}

func runbookKey(name string) string { return "runbook." + name }

func cooldownKey(runbook, incident string) string {
	sum := sha256.Sum256([]byte(incident))
	return "cooldown." + runbook + "." + hex.EncodeToString(sum[:12])
}

// Admit decides whether a new run of rb for incidentKey may start now and,
// if so, reserves its place (counted against the rate and concurrency
// limits until Finished or Release).
func (g *Guard) Admit(ctx context.Context, rb *runbooks.Runbook, incidentKey, workflowID string) (Admission, error) {
	s := rb.Spec.Safety
	now := g.now().UTC()
	if s.Cooldown > 0 {
		e, err := g.kv.Get(ctx, cooldownKey(rb.Name(), incidentKey))
		if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return Admission{}, fmt.Errorf("read cooldown: %w", err)
		}
		if err == nil {
			var until time.Time
			if json.Unmarshal(e.Value(), &until) == nil && now.Before(until) {
				return Admission{Check: CheckCooldown, Reason: fmt.Sprintf("a run for incident %q finished recently: cooldown %s, until %s", incidentKey, s.Cooldown, until.Format(time.RFC3339))}, nil
			}
		}
	}
	var adm Admission
	err := g.update(ctx, runbookKey(rb.Name()), func(st *runbookState) bool {
		st.trim(now, s)
		if _, again := st.Active[workflowID]; again {
			adm = Admission{Allowed: true} // a redelivered alert: already admitted
			return false
		}
		if s.MaxRunsPerHour > 0 && len(st.Starts) >= s.MaxRunsPerHour {
			adm = Admission{Check: CheckRate, Reason: fmt.Sprintf("runbook %s started %d runs in the last hour (maxRunsPerHour %d)", rb.Name(), len(st.Starts), s.MaxRunsPerHour)}
			return false
		}
		if s.MaxConcurrent > 0 && len(st.Active) >= s.MaxConcurrent {
			adm = Admission{Check: CheckConcurrency, Reason: fmt.Sprintf("runbook %s has %d runs going (maxConcurrent %d)", rb.Name(), len(st.Active), s.MaxConcurrent)}
			return false
		}
		adm = Admission{Allowed: true, Reserved: true}
		if !st.OpenSince.IsZero() {
			adm = Admission{Allowed: true, Reserved: true, DryRun: true, Check: CheckBreakerOpen,
				Reason: fmt.Sprintf("the circuit breaker of runbook %s is open since %s: the run is a dry-run plan until an admin resets it (POST /v1/runbooks/%s/breaker/reset)", rb.Name(), st.OpenSince.Format(time.RFC3339), rb.Name())}
		}
		st.Starts = append(st.Starts, now)
		if st.Active == nil {
			st.Active = map[string]activeRun{}
		}
		a := activeRun{IncidentKey: incidentKey, Since: now, Cooldown: s.Cooldown.D()}
		if cb := s.CircuitBreaker; cb != nil {
			a.Failures, a.Window = cb.Failures, cb.Window.D()
		}
		st.Active[workflowID] = a
		return true
	})
	return adm, err
}

// Release gives back an admission that started nothing (the alert joined
// a run already going).
func (g *Guard) Release(ctx context.Context, runbook, workflowID string) error {
	return g.update(ctx, runbookKey(runbook), func(st *runbookState) bool {
		a, ok := st.Active[workflowID]
		if !ok {
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
}

// Finished applies a finished run: it frees its place, starts its
// incident's cooldown and counts a failure towards the circuit breaker.
// It is idempotent: a run not (or no longer) admitted changes nothing.
func (g *Guard) Finished(ctx context.Context, runbook, workflowID, outcome string, at time.Time) error {
	var done activeRun
	var found bool
	err := g.update(ctx, runbookKey(runbook), func(st *runbookState) bool {
		done, found = st.Active[workflowID]
		if !found {
			return false
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
	if err != nil || !found || done.Cooldown <= 0 {
		return err
	}
	until, _ := json.Marshal(at.UTC().Add(done.Cooldown))
	if _, err := g.kv.Put(ctx, cooldownKey(runbook, done.IncidentKey), until); err != nil {
		return fmt.Errorf("start cooldown: %w", err)
	}
	return nil
}

// BreakerState is a runbook's circuit breaker as shown to people.
type BreakerState struct {
	Runbook   string    `json:"runbook"`
	Open      bool      `json:"open"`
	OpenSince time.Time `json:"openSince,omitzero"`
	Failures  int       `json:"recentFailures"`
	Active    int       `json:"activeRuns"`
	Starts    int       `json:"startsLastHour"`
}

// State reads a runbook's state.
func (g *Guard) State(ctx context.Context, runbook string) (BreakerState, error) {
	st, _, err := g.read(ctx, runbookKey(runbook))
	if err != nil {
		return BreakerState{}, err
	}
	return BreakerState{Runbook: runbook, Open: !st.OpenSince.IsZero(), OpenSince: st.OpenSince,
		Failures: len(st.Failures), Active: len(st.Active), Starts: len(st.Starts)}, nil
}

// Reset closes a runbook's circuit breaker and forgets its failures. It
// reports whether the breaker was open.
func (g *Guard) Reset(ctx context.Context, runbook string) (bool, error) {
	var was bool
	err := g.update(ctx, runbookKey(runbook), func(st *runbookState) bool {
		was = !st.OpenSince.IsZero()
		st.OpenSince, st.Failures = time.Time{}, nil
		return true
	})
	return was, err
}

func (st *runbookState) trim(now time.Time, s runbooks.Safety) {
	keep := st.Starts[:0]
	for _, t := range st.Starts {
		if now.Sub(t) < time.Hour {
			keep = append(keep, t)
		}
	}
	st.Starts = keep
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

// update applies change with compare-and-set, retrying when another
// replica wrote in between. change returns false to write nothing.
func (g *Guard) update(ctx context.Context, key string, change func(*runbookState) bool) error {
	for range maxCASAttempts {
		st, rev, err := g.read(ctx, key)
		if err != nil {
			return err
		}
		if !change(&st) {
			return nil
		}
		b, err := json.Marshal(st)
		if err != nil {
			return err
		}
		if rev == 0 {
			_, err = g.kv.Create(ctx, key, b)
		} else {
			_, err = g.kv.Update(ctx, key, b, rev)
		}
		if err == nil {
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !isWrongSequence(err) {
			return fmt.Errorf("write safety state %s: %w", key, err)
		}
	}
	return fmt.Errorf("write safety state %s: too much contention (%d attempts)", key, maxCASAttempts)
}

func isWrongSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}
