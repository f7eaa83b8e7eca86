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
	// be negative: overspent); NaN when unknown.
	BudgetRemaining float64 `json:"budgetRemaining"`
	// Fast and Slow are the page and ticket conditions of the generated
	// alerts, evaluated on the same windows.
	Fast bool `json:"fast"`
	Slow bool `json:"slow"`
	// Known is false when a window the conditions need had no data.
	Known bool `json:"known"`
}

// Speed names the burn: fast, slow, none, or unknown.
func (b Burn) Speed() string {
	switch {
	case !b.Known:
		return "unknown"
	case b.Fast:
		return "fast"
	case b.Slow:
		return "slow"
	}
	return "none"
}

// Evaluate computes the burn from the error ratio of each window (keyed by
// PromDuration; a missing or NaN ratio is no data).
func (s *SLO) Evaluate(at time.Time, ratios map[string]float64) Burn {
	b := Burn{SLO: s.Name(), At: at, ErrorRatio: map[string]float64{}, BurnRate: map[string]float64{}, BudgetRemaining: math.NaN(), Known: true}
	budget := s.ErrorBudget()
	for _, w := range s.Windows() {
		k := PromDuration(w)
		if r, ok := ratios[k]; ok && !math.IsNaN(r) && !math.IsInf(r, 0) {
			b.ErrorRatio[k] = r
			b.BurnRate[k] = r / budget
		}
	}
	over := func(set []BurnWindow) bool {
		any := false
		for _, w := range set {
			short, ok1 := b.BurnRate[PromDuration(w.Short)]
			long, ok2 := b.BurnRate[PromDuration(w.Long)]
			if !ok1 || !ok2 {
				b.Known = false
				continue
			}
			f := s.Factor(w.Factor)
			any = any || (short > f && long > f)
		}
		return any
	}
	b.Fast = over(FastBurn)
	b.Slow = over(SlowBurn)
	if r, ok := b.ErrorRatio[PromDuration(s.Period())]; ok {
		b.BudgetRemaining = 1 - r/budget
	}
	if b.Fast || b.Slow {
		b.Known = true // a condition that holds on the windows it has holds
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
	return fmt.Sprintf("SLO %s: %s burn (%s; %s)", b.SLO, b.Speed(), rates, budget)
}
