package app

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/salve-sre/salve/internal/bus"
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

// backlogLag is how old a consumer's oldest unprocessed message may be
// before /readyz warns about it.
const backlogLag = time.Minute

// backlogs reads every durable consumer's backlog (consumers a role has
// not created yet are left out).
func backlogs(ctx context.Context, js jetstream.JetStream) []bus.Backlog {
	var out []bus.Backlog
	for _, c := range bus.Consumers {
		b, err := bus.ReadBacklog(ctx, js, c, time.Now())
		if err != nil {
			continue
		}
		out = append(out, b)
	}
	return out
}

// backlogMetrics adapts backlogs to the metrics' gauges.
func backlogMetrics(js jetstream.JetStream) func() []metrics.Backlog {
	return func() []metrics.Backlog {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var out []metrics.Backlog
		for _, b := range backlogs(ctx, js) {
			out = append(out, metrics.Backlog{Consumer: b.Name, Pending: float64(b.Pending), OldestSeconds: b.Oldest.Seconds()})
		}
		return out
	}
}

// backlogWarning is what /readyz says of consumers that fall behind: a
// backlog is no reason to take Salve out of a load balancer (alerts are
// still stored), but it must not look like a plain OK.
func backlogWarning(ctx context.Context, js jetstream.JetStream) string {
	var parts []string
	for _, b := range backlogs(ctx, js) {
		if b.Oldest >= backlogLag {
			what := "messages"
			switch b.Name {
			case "recorder":
				what = "accepted audit events not yet recorded"
			case "recorder-alerts":
				what = "stored alerts whose alert.accepted is not yet recorded"
			case "trigger":
				what = "stored alerts not yet decided"
			case "incidents":
				what = "alerts not yet in the incidents read model"
			}
			parts = append(parts, fmt.Sprintf("%s is behind: %d %s, the oldest %s old", b.Name, b.Pending, what, b.Oldest.Round(time.Second)))
		}
	}
	return strings.Join(parts, "; ")
}
