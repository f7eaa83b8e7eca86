package app

import (
	"context"
	"time"

	"github.com/salve-sre/salve/internal/metrics"
	"github.com/salve-sre/salve/internal/runs"
	"github.com/salve-sre/salve/internal/vault"
	"github.com/salve-sre/salve/runbooks"
)

// pendingApprovalsTTL is how long salve_approvals_pending reuses one count:
// counting asks Temporal about every running run.
const pendingApprovalsTTL = 15 * time.Second

// storeRunbooks wraps a runbook loader's Store so every (re)load also
// refreshes the runbook metrics (salve_runbooks_loaded and the zero series
// of each runbook).
func storeRunbooks(store func(*runbooks.Set), m *metrics.Metrics) func(*runbooks.Set) {
	return func(s *runbooks.Set) {
		store(s)
		var names []string
		if s != nil {
			for _, rb := range s.All() {
				names = append(names, rb.Name())
			}
		}
		m.Runbooks(names)
	}
}

// leaseTotals adapts Vault's lease counters to the metrics' totals: the
// bridge lives here, in the composition root, so internal/vault and
// internal/metrics (both L2) import neither the other.
func leaseTotals(c *vault.LeaseCounters) func() metrics.LeaseTotals {
	return func() metrics.LeaseTotals {
		var t metrics.LeaseTotals
		for _, r := range c.Snapshot() {
			t.Issued += r.Issued
			t.Revoked += r.Revoked
			t.IssueFailed += r.Failed
			t.RevokeFailed += r.RevokeFailed
		}
		return t
	}
}

// pendingApprovals is the cached count behind salve_approvals_pending.
func pendingApprovals(rs *runs.Runs) func() float64 {
	return metrics.CachedCount(pendingApprovalsTTL, func(ctx context.Context) (int, error) {
		p, err := rs.PendingApprovals(ctx)
		return len(p), err
	})
}
