package slos

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// Burn is an SLO's state at one moment, read from Prometheus: the share of
// bad events over each window, and what the burn-rate conditions say.
type Burn struct {
	SLO string    `json:"slo"`
	At  time.Time `json:"at"`
	// ErrorRatio is the share of bad events over each window (5m … the
	// period), by Prometheus duration ("1h"); absent when Prometheus had
	// no data for the window.
	ErrorRatio map[string]float64 `json:"errorRatio"`
	// BurnRate is ErrorRatio over the error budget: 1 spends the budget in
	// exactly the period.
	BurnRate map[string]float64 `json:"burnRate"`
	// BudgetRemaining is the share of the period's error budget left (may
	// be negative: overspent); NaN when unknown. It is weighted by events
	// (bad / total over the whole period, which is what an Occurrences
	// budget is); the recorded slo:period_error_budget_remaining:ratio is
	// the mean of the 5-minute ratios, as Sloth records it, and differs
	// from it when traffic varies.
	BudgetRemaining float64 `json:"budgetRemaining"`
	// Fast and Slow are the page and ticket conditions of the generated
	// alerts, evaluated on the same windows.
	Fast bool `json:"fast"`
	Slow bool `json:"slow"`
	// Known is false when the speed could not be decided: a condition
	// that could hold is missing a window's data.
	Known bool `json:"known"`
	// ReadErrors says which windows could not be read (they count as
	// without data).
	ReadErrors string `json:"readErrors,omitempty"`
}

// Speed names the burn: fast, slow, none, or unknown.
func (b Burn) Speed() string {
	switch {
	case b.Fast:
		return "fast"
	case !b.Known:
		return "unknown"
	case b.Slow:
		return "slow"
	}
	return "none"
}

// Evaluate computes the burn from the error ratio of each window (keyed by
// PromDuration; a missing or NaN ratio is no data).
//
// A pair holds when both its windows are above the factor, and is ruled
// out when either is known to be at or below it; otherwise it is
// undecided. The speed is the first that can be decided, fastest first:
// fast if a fast pair holds; unknown if a fast pair is undecided (a fast
// burn cannot be ruled out); slow if a slow pair holds; unknown if one is
// undecided; none. So a runbook never takes its slow or no-burn policy
// while a fast burn is possible.
func (s *SLO) Evaluate(at time.Time, ratios map[string]float64) Burn {
	b := Burn{SLO: s.Name(), At: at, ErrorRatio: map[string]float64{}, BurnRate: map[string]float64{}, BudgetRemaining: math.NaN()}
	budget := s.ErrorBudget()
	for _, w := range s.Windows() {
		k := PromDuration(w)
		if r, ok := ratios[k]; ok && !math.IsNaN(r) && !math.IsInf(r, 0) {
			b.ErrorRatio[k] = r
			b.BurnRate[k] = r / budget
		}
	}
	decide := func(set []BurnWindow) (holds, undecided bool) {
		for _, w := range set {
			f := s.Factor(w.Factor)
			short, ok1 := b.BurnRate[PromDuration(w.Short)]
			long, ok2 := b.BurnRate[PromDuration(w.Long)]
			switch {
			case ok1 && ok2 && short > f && long > f:
				holds = true
			case (ok1 && short <= f) || (ok2 && long <= f):
				// ruled out
			default:
				undecided = true
			}
		}
		return holds, undecided
	}
	fast, fastOpen := decide(FastBurn)
	slow, slowOpen := decide(SlowBurn)
	b.Fast, b.Slow = fast, slow
	b.Known = fast || (!fastOpen && (slow || !slowOpen))
	if r, ok := b.ErrorRatio[PromDuration(s.Period())]; ok {
		b.BudgetRemaining = 1 - r/budget
	}
	return b
}

// Summary says the burn in one line, with its figures, for audit records,
// run pages and plans.
func (b Burn) Summary() string {
	var parts []string
	for _, k := range []string{"5m", "1h", "6h", "1d", "3d"} {
		if r, ok := b.BurnRate[k]; ok {
			parts = append(parts, fmt.Sprintf("%s %.2f", k, r))
		}
	}
	budget := "budget left unknown"
	if !math.IsNaN(b.BudgetRemaining) {
		budget = fmt.Sprintf("%.1f%% of the budget left", b.BudgetRemaining*100)
	}
	rates := "no burn-rate data"
	if len(parts) > 0 {
		rates = "burn rate " + strings.Join(parts, ", ")
	}
	unread := ""
	if b.ReadErrors != "" {
		unread = "; some windows could not be read"
	}
	return fmt.Sprintf("SLO %s: %s burn (%s; %s%s)", b.SLO, b.Speed(), rates, budget, unread)
}
