package timeline_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/internal/audit"
	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/internal/timeline"
)

// Load on a real audit store: the incident's records, its runs' step
// records (which carry no incident key), and its alerts only.
func TestLoadReadsTheIncidentsRunsAndAlerts(t *testing.T) {
	ctx := context.Background()
	store, err := audit.Open(ctx, filepath.Join(t.TempDir(), "audit.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	t0 := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	const wf = "salve/restart/shop/cart"
	fired := domain.AlertEvent{ID: "00000000000000a1|firing|x", Fingerprint: "00000000000000a1", Status: domain.StatusFiring,
		Labels: map[string]string{"alertname": "Crash"}, StartsAt: t0, ReceivedAt: t0}
	other := domain.AlertEvent{ID: "00000000000000b2|firing|x", Fingerprint: "00000000000000b2", Status: domain.StatusFiring,
		Labels: map[string]string{"alertname": "Other"}, StartsAt: t0, ReceivedAt: t0}
	_, err = store.Append(ctx, []domain.AuditEvent{
		domain.AlertAccepted(fired),
		domain.AlertAccepted(other),
		{ID: "m", Time: t0.Add(time.Second), Action: domain.ActionTriggerMatched, Runbook: "restart", WorkflowID: wf, IncidentKey: "shop/cart", Detail: map[string]string{"alertId": fired.ID}},
		{ID: "s", Time: t0.Add(2 * time.Second), Action: domain.ActionStepSucceeded, Runbook: "restart", WorkflowID: wf, Step: "restart"},
		{ID: "x", Time: t0.Add(3 * time.Second), Action: domain.ActionStepSucceeded, Runbook: "restart", WorkflowID: "salve/restart/other", Step: "restart"},
	})
	require.NoError(t, err)

	tl, found, err := timeline.Load(ctx, store, "shop/cart")
	require.NoError(t, err)
	require.True(t, found)
	var seqs []int64
	for _, e := range tl.Entries {
		seqs = append(seqs, e.Seq)
	}
	require.Equal(t, []int64{1, 3, 4}, seqs, "its alert, its decision and its run's step; not the other alert or run")

	_, found, err = timeline.Load(ctx, store, "nobody")
	require.NoError(t, err)
	require.False(t, found)
}
