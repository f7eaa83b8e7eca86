package trust_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/activities"
	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/internal/trust"
	"github.com/salve-sre/salve/runbooks"
)

func shadowRunbook(t *testing.T) *runbooks.Runbook {
	reg, err := activities.NewRegistry()
	require.NoError(t, err)
	rb, err := runbooks.Parse("x.yaml", []byte(`apiVersion: salve/v1
kind: Runbook
metadata: {name: restart-web}
spec:
  safety: {mode: shadow}
  steps:
    - {name: check, action: http.request, with: {url: "http://svc/health"}}
`), reg)
	require.NoError(t, err)
	return rb
}

func evidence(verdict string, at time.Time) domain.AuditEvent {
	return domain.AuditEvent{Action: domain.ActionShadowEvidence, Runbook: "restart-web", Outcome: verdict, Time: at,
		Detail: map[string]string{"wouldAct": "true", "summary": verdict}}
}

func TestSummaryAndPromotionThreshold(t *testing.T) {
	rb := shadowRunbook(t)
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	recs := []domain.AuditEvent{
		evidence("agreed", t0), evidence("resolved_on_its_own", t0.Add(time.Hour)), evidence("disagreed", t0.Add(2*time.Hour)),
		{Action: domain.ActionShadowEvidence, Runbook: "restart-web", Outcome: "would_not_act", Time: t0.Add(3 * time.Hour), Detail: map[string]string{"wouldAct": "false"}},
		evidence("agreed", t0.Add(4*time.Hour)),
		{Action: domain.ActionShadowEvidence, Runbook: "other", Outcome: "agreed"}, // another runbook's
	}
	s := trust.Summarize(rb, recs)
	require.Equal(t, trust.RungShadow, s.Rung)
	require.Equal(t, 5, s.ShadowRuns)
	require.Equal(t, 4, s.WouldHaveActed)
	require.Equal(t, 2, s.Agreed)
	require.Equal(t, 1, s.Disagreed)
	require.Equal(t, 1, s.ResolvedOnItsOwn)
	require.Equal(t, 3, s.Compared)
	require.InDelta(t, 2.0/3, *s.Agreement, 1e-9)
	require.InDelta(t, 0.25, *s.SelfResolvedShare, 1e-9)
	require.Equal(t, t0.Add(4*time.Hour), s.Recent[0].Time, "newest first")

	p := trust.Policy{MinRuns: 4, MinAgreement: 0.6}
	require.NoError(t, p.Check(trust.RungShadow, trust.RungEnforce, s))
	err := trust.Policy{MinRuns: 5, MinAgreement: 0.7}.Check(trust.RungShadow, trust.RungApprove, s)
	require.ErrorIs(t, err, trust.ErrBelowThreshold)
	require.ErrorContains(t, err, "4 runs with evidence")
	require.ErrorContains(t, err, "agreement with people 67% of 3 compared, 70% needed")
	require.ErrorContains(t, trust.Policy{}.Check(trust.RungEnforce, trust.RungApprove, s), "promotion goes up the ladder")
	require.ErrorContains(t, trust.Policy{}.Check(trust.RungShadow, "yolo", s), "want approve or enforce")

	// Nothing compared: no promotion, whatever the count.
	none := trust.Summarize(rb, []domain.AuditEvent{evidence("unresolved", t0), evidence("unresolved", t0)})
	require.ErrorContains(t, trust.Policy{MinRuns: 1}.Check(trust.RungShadow, trust.RungApprove, none), "no run was compared")
	// Approvals count as agreement on the approve rung.
	appr := trust.Summarize(rb, []domain.AuditEvent{
		{Action: domain.ActionApprovalGranted, Runbook: "restart-web"}, {Action: domain.ActionApprovalGranted, Runbook: "restart-web"},
		{Action: domain.ActionApprovalRejected, Runbook: "restart-web"},
	})
	require.Equal(t, 3, appr.EvidenceRuns)
	require.NoError(t, trust.Policy{MinRuns: 3, MinAgreement: 0.6}.Check(trust.RungApprove, trust.RungEnforce, appr))
}

func TestPolicyValidate(t *testing.T) {
	require.NoError(t, trust.Policy{}.Validate())
	require.ErrorContains(t, trust.Policy{MinAgreement: 80}.Validate(), "a share from 0 to 1")
	require.ErrorContains(t, trust.Policy{MinRuns: -1}.Validate(), "must not be negative")
	require.Equal(t, trust.Policy{MinRuns: 5, MinAgreement: 0.8}, trust.Policy{}.Effective())
}

// A person's launch on a shadow run's target during its watch is a
// person acting: this runbook by hand agrees, another disagrees; a launch
// outside the watch or on another target changes nothing.
func TestLaunchesDuringTheWatch(t *testing.T) {
	rb := shadowRunbook(t)
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	shadow := func(at time.Time, target string) domain.AuditEvent {
		ev := evidence("resolved_on_its_own", at.Add(20*time.Minute))
		ev.Detail["target"], ev.Detail["since"] = target, at.Format(time.RFC3339Nano)
		return ev
	}
	launch := func(runbook, target string, at time.Time) domain.AuditEvent {
		return domain.AuditEvent{Action: domain.ActionRunLaunched, Outcome: "started", Runbook: runbook, Time: at,
			Actor: domain.Actor{Kind: domain.ActorUser, Name: "alice"}, Detail: map[string]string{"target": target}}
	}
	s := trust.Summarize(rb, []domain.AuditEvent{
		shadow(t0, "prod/shop"), launch("restart-web", "prod/shop", t0.Add(5*time.Minute)), // by hand: agreed
		shadow(t0.Add(time.Hour), "prod/cart"), launch("scale-cart", "prod/cart", t0.Add(70*time.Minute)), // another runbook: disagreed
		shadow(t0.Add(2*time.Hour), "prod/pay"), launch("restart-web", "prod/pay", t0.Add(3*time.Hour)), // after the watch
		shadow(t0.Add(4*time.Hour), "prod/db"), launch("restart-web", "prod/web", t0.Add(4*time.Hour+time.Minute)), // another target
	})
	require.Equal(t, 1, s.Agreed)
	require.Equal(t, 1, s.Disagreed)
	require.Equal(t, 2, s.ResolvedOnItsOwn)
	require.Contains(t, s.Recent[3].Summary, "alice launched restart-web by hand on prod/shop")
}
