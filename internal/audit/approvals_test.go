package audit_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/internal/audit"
	"github.com/salve-sre/salve/internal/domain"
)

// The approvals inbox reads what waits from the log in one query: a
// request counts until a decision, a timeout or the run's end follows
// it, or its deadline passes.
func TestOpenApprovals(t *testing.T) {
	stores(t, func(t *testing.T, open func() *audit.Store) {
		ctx := context.Background()
		s := open()
		now := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
		n := 0
		ev := func(wf, run, action, step string, deadline time.Time) domain.AuditEvent {
			n++
			e := domain.AuditEvent{ID: wf + "/" + run + "/" + action + "/" + step, Time: now.Add(time.Duration(n) * time.Second), Action: action,
				WorkflowID: wf, RunID: run, Step: step}
			if !deadline.IsZero() {
				e.Detail = map[string]string{"deadline": deadline.Format(time.RFC3339)}
			}
			return e
		}
		later := now.Add(time.Hour)
		_, err := s.Append(ctx, []domain.AuditEvent{
			ev("wf/waiting", "r1", domain.ActionApprovalRequested, "scale", later),
			ev("wf/granted", "r1", domain.ActionApprovalRequested, "scale", later),
			ev("wf/granted", "r1", domain.ActionApprovalGranted, "scale", time.Time{}),
			ev("wf/cancelled", "r1", domain.ActionApprovalRequested, "scale", later),
			ev("wf/cancelled", "r1", domain.ActionRunFinished, "", time.Time{}),
			ev("wf/expired", "r1", domain.ActionApprovalRequested, "scale", now.Add(-time.Minute)),
			ev("wf/second", "r1", domain.ActionApprovalRequested, "a", later),
			ev("wf/second", "r1", domain.ActionApprovalGranted, "a", time.Time{}),
			ev("wf/second", "r1", domain.ActionApprovalRequested, "b", later),
		})
		require.NoError(t, err)
		got, err := s.OpenApprovals(ctx, now)
		require.NoError(t, err)
		var names []string
		for _, a := range got {
			names = append(names, a.WorkflowID+"/"+a.RunID+"/"+a.Step)
		}
		require.Equal(t, []string{"wf/waiting/r1/scale", "wf/second/r1/b"}, names)
	})
}
