package slobudget

import (
	"slices"
	"time"
)

// The budget figures of incidents. Each is a plain formula over figures
// shown next to it (docs/dashboard.md), so a person can redo it by hand
// from the same Prometheus series:
//
//	d          = the run's duration, rounded up to a whole minute (Window)
//	errorRatio = 1 - good/total over d, ending when the run ended
//	burnRate   = errorRatio / (1 - objective)
//	consumed   = burnRate × d / period
//	saved      = burnRate × max(0, manualMinutes − d) / period
//
// consumed and saved are shares of the period's error budget: 0.0347 is
// 3.47 % of it. A burn rate of 1 spends the whole budget in exactly one
// period, so burnRate × d / period is the share spent during d.

// Window is the range an incident's error ratio is read over: its
// duration rounded up to a whole minute (at least one), because
// Prometheus range selectors and the burn figures are read per minute
// and rounding up never leaves out the incident's last seconds.
func Window(d time.Duration) time.Duration {
	if d <= 0 {
		return time.Minute
	}
	w := d.Truncate(time.Minute)
	if w < d {
		w += time.Minute
	}
	return w
}

// BurnRate is how many times faster than the budget allows the errors
// came: errorRatio / error budget.
func BurnRate(errorRatio, errorBudget float64) float64 {
	return errorRatio / errorBudget
}

// Consumed is the share of the period's error budget spent during an
// incident of window d at burnRate: burnRate × d / period.
func Consumed(burnRate float64, d, period time.Duration) float64 {
	return burnRate * d.Minutes() / period.Minutes()
}

// Saved estimates the share of the period's error budget remediation
// spared: had a person fixed the incident by hand in manual (the
// runbook's toil.manualMinutes), it would have burned at the same rate
// for max(0, manual − d) longer.
func Saved(burnRate float64, d, manual, period time.Duration) float64 {
	return burnRate * max(0, manual-d).Minutes() / period.Minutes()
}

// MTTR is the mean of the durations; false without any.
func MTTR(durations []time.Duration) (time.Duration, bool) {
	if len(durations) == 0 {
		return 0, false
	}
	var sum time.Duration
	for _, d := range durations {
		sum += d
	}
	return sum / time.Duration(len(durations)), true
}

// MTBF is the mean time between consecutive starts: the sum of the gaps
// between them in time order, which is (last − first) / (n − 1); false
// with fewer than two.
func MTBF(starts []time.Time) (time.Duration, bool) {
	if len(starts) < 2 {
		return 0, false
	}
	first, last := slices.MinFunc(starts, time.Time.Compare), slices.MaxFunc(starts, time.Time.Compare)
	return last.Sub(first) / time.Duration(len(starts)-1), true
}
