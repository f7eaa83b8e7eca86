package backtest

import (
	"maps"
	"slices"
)

// Diff compares a backtest of changed runbooks with one of the runbooks
// they replace, over the same alert states.
type Diff struct {
	Runbooks []RunbookDiff `json:"runbooks"`
}

// RunbookDiff is one runbook's change. Side is "both", "new" (only in the
// runbooks tried) or "removed" (only in the runbooks compared against);
// the deltas are new minus old.
type RunbookDiff struct {
	Runbook         string         `json:"runbook"`
	Side            string         `json:"side"`
	Started         int            `json:"started"`
	StartedBefore   int            `json:"startedBefore"`
	StartedDelta    int            `json:"startedDelta"`
	Joined          int            `json:"joined"`
	JoinedBefore    int            `json:"joinedBefore"`
	Suppressed      int            `json:"suppressed"`
	SuppressedDelta int            `json:"suppressedDelta"`
	SuppressedBy    map[string]int `json:"suppressedByDelta"`
}

// Sides of RunbookDiff.
const (
	SideBoth    = "both"
	SideNew     = "new"
	SideRemoved = "removed"
)

// Compare says how now differs from before, runbook by runbook.
func Compare(now, before *Result) Diff {
	a, b := byName(now), byName(before)
	names := slices.Sorted(maps.Keys(a))
	for n := range b {
		if _, ok := a[n]; !ok {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	var d Diff
	for _, n := range names {
		x, inNow := a[n]
		y, inBefore := b[n]
		side := SideBoth
		switch {
		case !inBefore:
			side = SideNew
		case !inNow:
			side = SideRemoved
		}
		rd := RunbookDiff{Runbook: n, Side: side,
			Started: x.Started, StartedBefore: y.Started, StartedDelta: x.Started - y.Started,
			Joined: x.Joined, JoinedBefore: y.Joined,
			Suppressed: x.Suppressed, SuppressedDelta: x.Suppressed - y.Suppressed, SuppressedBy: map[string]int{}}
		for c, v := range x.SuppressedBy {
			rd.SuppressedBy[c] += v
		}
		for c, v := range y.SuppressedBy {
			rd.SuppressedBy[c] -= v
		}
		maps.DeleteFunc(rd.SuppressedBy, func(_ string, v int) bool { return v == 0 })
		d.Runbooks = append(d.Runbooks, rd)
	}
	return d
}

func byName(r *Result) map[string]RunbookResult {
	m := map[string]RunbookResult{}
	for _, rr := range r.Runbooks {
		m[rr.Runbook] = rr
	}
	return m
}
