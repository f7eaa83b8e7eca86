package triggers_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/triggers"
)

// An incident that keeps firing new alerts while its run goes on must not
// grow the run's history without bound: the run is told of its first
// MaxToldPerRun notifications and of its first resolution; every alert is
// still audited as a join, the quiet ones marked told: no.
func TestRunIsToldABoundedNumberOfAlerts(t *testing.T) {
	set := testSet(t, restartRunbook)
	st := &fakeStarter{running: map[string]bool{}}
	audit := &fakeAudit{}
	tr := &triggers.Trigger{Runbooks: triggers.StaticRunbooks{Set: set}, Starter: st, Audit: audit, Log: slog.New(slog.DiscardHandler)}
	ctx := context.Background()
	t0 := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
	labels := map[string]string{"alertname": "Crash", "severity": "warning", "namespace": "shop", "deployment": "cart"}
	ev := func(i int, status string) domain.AlertEvent {
		fp := fmt.Sprintf("fp%d", i)
		return domain.AlertEvent{ID: domain.AlertEventID(fp, status, t0), Fingerprint: fp, Status: status, Labels: labels, StartsAt: t0}
	}
	const wf = "salve/restart/shop/cart"

	// One at a time (a trickle: every alert its own batch), then in
	// batches, 3×MaxToldPerRun distinct alerts in all.
	n := triggers.MaxToldPerRun * 3
	for i := range n / 2 {
		require.NoError(t, tr.Handle(ctx, ev(i, domain.StatusFiring)))
	}
	var batch []domain.AlertEvent
	for i := n / 2; i < n; i++ {
		batch = append(batch, ev(i, domain.StatusFiring))
		if len(batch) == 50 {
			for _, err := range tr.HandleBatch(ctx, batch) {
				require.NoError(t, err)
			}
			batch = nil
		}
	}
	// The first (the run's own alert, in its input) plus what signals
	// carried: never more than the bound.
	require.Equal(t, triggers.MaxToldPerRun-1, st.told[wf], "signalled notifications")

	// The first resolution is still told (onResolved depends on it); a
	// second is not.
	require.NoError(t, tr.Handle(ctx, ev(0, domain.StatusResolved)))
	require.Equal(t, triggers.MaxToldPerRun, st.told[wf])
	require.NoError(t, tr.Handle(ctx, ev(1, domain.StatusResolved)))
	require.Equal(t, triggers.MaxToldPerRun, st.told[wf])

	// Nothing is lost from the record: one decision per alert.
	joined, quiet := 0, 0
	for _, e := range audit.events {
		if e.Action == domain.ActionRunJoined {
			joined++
			if e.Detail["told"] == "no" {
				quiet++
			}
		}
	}
	require.Equal(t, n-1, joined)
	require.Equal(t, n-triggers.MaxToldPerRun, quiet)

	// Once the run is over, the incident's next run starts afresh.
	st.running[wf] = false
	require.NoError(t, tr.Handle(ctx, ev(n, domain.StatusFiring)))
	require.True(t, st.running[wf], "a new run started")
	before := st.told[wf]
	require.NoError(t, tr.Handle(ctx, ev(n+1, domain.StatusFiring)))
	require.False(t, st.starts[len(st.starts)-1].Quiet)
	require.Equal(t, before+1, st.told[wf], "the incident's new run is told again")
}
