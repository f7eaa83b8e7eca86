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
		Actor: domain.Actor{Kind: domain.ActorAlert, Name: "WebDown"}, Detail: map[string]string{"wouldAct": "true", "summary": verdict}}
}

// ofVersion marks records as made by rb's current version (unless a test
// set another).
func ofVersion(rb *runbooks.Runbook, recs []domain.AuditEvent) []domain.AuditEvent {
	for i := range recs {
		if recs[i].RunbookHash == "" {
			recs[i].RunbookHash = rb.Hash
		}
	}
	return recs
}

func TestSummaryAndPromotionThreshold(t *testing.T) {
	rb := shadowRunbook(t)
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	recs := []domain.AuditEvent{
		evidence("agreed", t0), evidence("resolved_on_its_own", t0.Add(time.Hour)), evidence("disagreed", t0.Add(2*time.Hour)),
		{Action: domain.ActionShadowEvidence, Runbook: "restart-web", Outcome: "would_not_act", Time: t0.Add(3 * time.Hour), Actor: domain.Actor{Kind: domain.ActorAlert}, Detail: map[string]string{"wouldAct": "false"}},
		evidence("agreed", t0.Add(4*time.Hour)),
		{Action: domain.ActionShadowEvidence, Runbook: "other", Outcome: "agreed"}, // another runbook's
	}
	// Not evidence: a run of an older version of the runbook, and a shadow
	// run a person launched by hand.
	old := evidence("agreed", t0)
	old.RunbookHash = "sha256:an-older-version"
	byHand := evidence("agreed", t0)
	byHand.Actor = domain.Actor{Kind: domain.ActorUser, Name: "mallory"}
	recs = append(recs, old, byHand)
	s := trust.Summarize(rb, ofVersion(rb, recs))
	require.Equal(t, trust.RungShadow, s.Rung)
	require.Equal(t, 5, s.ShadowRuns)
	require.Equal(t, 4, s.WouldHaveActed)
	require.Equal(t, 2, s.Agreed)
	require.Equal(t, 1, s.Disagreed)
	require.Equal(t, 1, s.ResolvedOnItsOwn)
	require.Equal(t, 4, s.Compared, "agreed, disagreed and resolved on its own")
	require.InDelta(t, 0.5, *s.Agreement, 1e-9, "an alert that resolved with nobody acting counts against")
	require.InDelta(t, 0.25, *s.SelfResolvedShare, 1e-9)
	require.Equal(t, t0.Add(4*time.Hour), s.Recent[0].Time, "newest first")

	require.NoError(t, trust.Policy{MinRuns: 4, MinAgreement: 0.5}.Check(trust.RungShadow, trust.RungApprove, s))
	err := trust.Policy{MinRuns: 5, MinAgreement: 0.6}.Check(trust.RungShadow, trust.RungApprove, s)
	require.ErrorIs(t, err, trust.ErrBelowThreshold)
	require.ErrorContains(t, err, "4 runs compared with what happened instead, 5 needed")
	require.ErrorContains(t, err, "the runbook was right in 50% of 4 compared, 60% needed")
	require.ErrorContains(t, trust.Policy{}.Check(trust.RungEnforce, trust.RungApprove, s), "promotion goes up the ladder")
	require.ErrorContains(t, trust.Policy{MinRuns: 1, MinAgreement: 0.1}.Check(trust.RungShadow, trust.RungEnforce, s), "promote it to approve first")
	require.ErrorContains(t, trust.Policy{}.Check(trust.RungShadow, "yolo", s), "want approve or enforce")

	// Nothing compared: no promotion, whatever the count.
	none := trust.Summarize(rb, ofVersion(rb, []domain.AuditEvent{evidence("unresolved", t0), evidence("unresolved", t0)}))
	require.ErrorContains(t, trust.Policy{MinRuns: 1}.Check(trust.RungShadow, trust.RungApprove, none), "no run was compared")
	// Approvals count as agreement on the approve rung.
	appr := trust.Summarize(rb, ofVersion(rb, []domain.AuditEvent{
		{Action: domain.ActionApprovalGranted, Runbook: "restart-web"}, {Action: domain.ActionApprovalGranted, Runbook: "restart-web"},
		{Action: domain.ActionApprovalRejected, Runbook: "restart-web"},
	}))
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
			Actor: domain.Actor{Kind: domain.ActorUser, Name: "alice"}, Detail: map[string]string{"target": target, "acts": "true"}}
	}
	shadowLaunch := func(target string, at time.Time) domain.AuditEvent {
		l := launch("restart-web", target, at)
		l.Detail["acts"] = "false"
		return l
	}
	s := trust.Summarize(rb, ofVersion(rb, []domain.AuditEvent{
		shadow(t0, "prod/shop"), launch("restart-web", "prod/shop", t0.Add(5*time.Minute)), // by hand: agreed
		shadow(t0.Add(time.Hour), "prod/cart"), launch("scale-cart", "prod/cart", t0.Add(70*time.Minute)), // another runbook: disagreed
		shadow(t0.Add(2*time.Hour), "prod/pay"), launch("restart-web", "prod/pay", t0.Add(3*time.Hour)), // after the watch
		shadow(t0.Add(4*time.Hour), "prod/db"), launch("restart-web", "prod/web", t0.Add(4*time.Hour+time.Minute)), // another target
		shadow(t0.Add(5*time.Hour), "prod/api"), shadowLaunch("prod/api", t0.Add(5*time.Hour+time.Minute)), // a shadow run by hand: no action
	}))
	require.Equal(t, 1, s.Agreed)
	require.Equal(t, 1, s.Disagreed)
	require.Equal(t, 3, s.ResolvedOnItsOwn)
	require.Contains(t, s.Recent[4].Summary, "alice launched restart-web by hand on prod/shop")
}
