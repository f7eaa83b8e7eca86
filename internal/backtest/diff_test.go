package backtest_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/internal/audit"
	"github.com/salve-sre/salve/internal/backtest"
	"github.com/salve-sre/salve/internal/safety"
)

func TestCompareTwoVersions(t *testing.T) {
	occs := []backtest.Occurrence{down("a", "p", 0, 1), down("a", "q", 10, 11), down("a", "r", 40, 41)}
	now := run(t, backtest.Options{Runbooks: set(t, book(t, "rb", "", "{cooldown: 1h}"), book(t, "fresh", "", "{}"))}, occs...)
	before := run(t, backtest.Options{Runbooks: set(t, book(t, "rb", "", "{cooldown: 5m}"), book(t, "gone", "", "{}"))}, occs...)
	d := backtest.Compare(now, before)
	require.Equal(t, []backtest.RunbookDiff{
		{Runbook: "fresh", Side: backtest.SideNew, Started: 3, StartedDelta: 3, SuppressedBy: map[string]int{}},
		{Runbook: "gone", Side: backtest.SideRemoved, StartedBefore: 3, StartedDelta: -3, SuppressedBy: map[string]int{}},
		{Runbook: "rb", Side: backtest.SideBoth, Started: 1, StartedBefore: 3, StartedDelta: -2,
			Suppressed: 2, SuppressedDelta: 2, SuppressedBy: map[string]int{safety.CheckCooldown: 2}},
	}, d.Runbooks)
}

// pages answers like GET /v1/alerts with a page size of 10,000.
type pages []audit.AlertState

func (p pages) Alerts(_ context.Context, since time.Time, limit int) ([]audit.AlertState, error) {
	var out []audit.AlertState
	for _, a := range p {
		if !a.StartsAt.Before(since) && len(out) < limit {
			out = append(out, a)
		}
	}
	return out, nil
}

func TestSalveHistoryIsReadPageByPage(t *testing.T) {
	var all pages
	for i := range 25000 {
		s := t0.Add(time.Duration(i/3) * time.Second) // three alerts per instant: pages end mid-instant
		all = append(all, audit.AlertState{Fingerprint: backtest.Fingerprint(map[string]string{"i": string(rune(i))}), StartsAt: s, ReceivedAt: s, ResolvedAt: s.Add(time.Minute)})
	}
	occs, err := backtest.SalveOccurrences(context.Background(), all, t0, t0.Add(24*time.Hour), nil)
	require.NoError(t, err)
	require.Len(t, occs, 25000)
}
