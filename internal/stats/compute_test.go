package stats_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/internal/audit"
	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/internal/stats"
)

// store is an in-memory audit store with the real query semantics the
// computation relies on (action, since, after, limit).
type store struct {
	recs   []audit.Record
	alerts []audit.AlertState
}

func (s *store) Query(_ context.Context, f audit.Filter) ([]audit.Record, error) {
	var out []audit.Record
	for _, r := range s.recs {
		if r.Seq <= f.AfterSeq || (f.Action != "" && r.Event.Action != f.Action) || r.Event.Time.Before(f.Since) {
			continue
		}
		out = append(out, r)
		if len(out) == f.Limit {
			break
		}
	}
	return out, nil
}

func (s *store) Alerts(_ context.Context, f audit.AlertFilter) ([]audit.AlertState, error) {
	var out []audit.AlertState
	for _, a := range s.alerts {
		if !a.StartsAt.Before(f.Since) {
			out = append(out, a)
		}
	}
	return out, nil
}

func (s *store) add(ev domain.AuditEvent) {
	s.recs = append(s.recs, audit.Record{Seq: int64(len(s.recs) + 1), Event: ev})
}

var day0 = time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)

// occurrence adds an alert that fired at start (received 10s later),
// resolved after dur (0 = still firing), and what Salve did about it.
func (s *store) occurrence(name, fp string, start time.Time, dur time.Duration) string {
	a := audit.AlertState{Fingerprint: fp, Alertname: name, StartsAt: start, ReceivedAt: start.Add(10 * time.Second)}
	if dur > 0 {
		a.ResolvedAt = start.Add(dur)
	}
	s.alerts = append(s.alerts, a)
	return domain.AlertEventID(fp, domain.StatusFiring, start)
}

func (s *store) run(alertID, runbook, runID, owner, outcome string, at time.Time, firstStepAfter time.Duration, toil string, actor string) {
	s.add(domain.AuditEvent{Action: domain.ActionTriggerMatched, Time: at, Runbook: runbook, RunID: runID, Detail: map[string]string{"alertId": alertID}})
	s.add(domain.AuditEvent{Action: domain.ActionStepStarted, Time: at.Add(firstStepAfter), Runbook: runbook, RunID: runID})
	d := map[string]string{"owner": owner}
	if toil != "" {
		d["toilSeconds"] = toil
	}
	s.add(domain.AuditEvent{Action: domain.ActionRunFinished, Time: at.Add(time.Minute), Runbook: runbook, RunID: runID, Outcome: outcome,
		Actor: domain.Actor{Kind: actor}, Detail: d})
}

func TestCompute(t *testing.T) {
	s := &store{}
	// Day 1: DiskFull twice, both fixed by disk-cleanup (20 min of toil each).
	a1 := s.occurrence("DiskFull", "fp1", day0.Add(1*time.Hour), 10*time.Minute)
	s.run(a1, "disk-cleanup", "r1", "team-storage", "succeeded", day0.Add(1*time.Hour+10*time.Second), 2*time.Second, "1200", domain.ActorAlert)
	a2 := s.occurrence("DiskFull", "fp1", day0.Add(5*time.Hour), 20*time.Minute)
	s.run(a2, "disk-cleanup", "r2", "team-storage", "succeeded", day0.Add(5*time.Hour+10*time.Second), 4*time.Second, "900", domain.ActorAlert)
	// Day 2: CrashLoop, its run fails; resolved by a person after an hour.
	a3 := s.occurrence("CrashLoop", "fp2", day0.Add(26*time.Hour), time.Hour)
	s.run(a3, "restart", "r3", "team-web", "failed", day0.Add(26*time.Hour+10*time.Second), 6*time.Second, "", domain.ActorAlert)
	// An alert no runbook matches, resolved after 2h; one still firing.
	s.occurrence("Latency", "fp3", day0.Add(27*time.Hour), 2*time.Hour)
	s.occurrence("Latency", "fp3", day0.Add(30*time.Hour), 0)
	// A manual run that succeeded: no toil (a person launched it).
	s.add(domain.AuditEvent{Action: domain.ActionRunFinished, Time: day0.Add(30 * time.Hour), Runbook: "restart", RunID: "r4", Outcome: "succeeded",
		Actor: domain.Actor{Kind: domain.ActorUser, Name: "alice"}})
	// Before the window: ignored.
	s.occurrence("DiskFull", "fp1", day0.Add(-48*time.Hour), time.Minute)
	s.add(domain.AuditEvent{Action: domain.ActionRunFinished, Time: day0.Add(-47 * time.Hour), Runbook: "disk-cleanup", RunID: "r0", Outcome: "succeeded",
		Actor: domain.Actor{Kind: domain.ActorAlert}, Detail: map[string]string{"toilSeconds": "1200"}})

	c := &stats.Computer{Source: s, Pending: func(context.Context) (int, error) { return 2, nil }}
	rep, err := c.Compute(context.Background(), day0, day0.Add(3*24*time.Hour))
	require.NoError(t, err)

	require.Equal(t, 2100.0, rep.ToilSavedSeconds)
	require.Equal(t, []stats.RunbookToil{{Runbook: "disk-cleanup", Owner: "team-storage", Runs: 2, SavedSeconds: 2100}}, rep.ToilByRunbook)
	require.Equal(t, []stats.TeamToil{{Owner: "team-storage", SavedSeconds: 2100}}, rep.ToilByTeam)
	require.Len(t, rep.Days, 3)
	require.Equal(t, stats.DayPoint{Day: day0, SavedSeconds: 2100, Runs: 2, Alerts: 2}, rep.Days[0])
	require.Equal(t, stats.DayPoint{Day: day0.Add(24 * time.Hour), Runs: 2, Failed: 1, Alerts: 3}, rep.Days[1])

	require.Equal(t, 5, rep.Alerts)
	require.Equal(t, 3, rep.AlertsWithRunbook)
	require.InDelta(t, 3.0/5, *rep.Coverage, 1e-9)
	require.InDelta(t, 2.0/3, *rep.AutomationRate, 1e-9)
	require.InDelta(t, 15*60.0, *rep.MTTRAutomatedSeconds, 1e-9, "(10+20)/2 minutes")
	require.InDelta(t, 90*60.0, *rep.MTTRManualSeconds, 1e-9, "(60+120)/2 minutes")
	require.InDelta(t, 4.0, *rep.AlertToFirstActionP50Seconds, 1e-9, "median of 2, 4, 6 s after receipt")

	require.Equal(t, 4, rep.Runs)
	require.Equal(t, 3, rep.Succeeded)
	require.Equal(t, 1, rep.Failed)
	require.InDelta(t, 0.75, *rep.SuccessRate, 1e-9)
	require.Equal(t, []stats.RunbookRuns{{Runbook: "restart", Runs: 2, Failed: 1}}, rep.TopFailing)
	require.Equal(t, []stats.AlertCount{
		{Alertname: "DiskFull", Occurrences: 2, Automated: 2},
		{Alertname: "Latency", Occurrences: 2},
		{Alertname: "CrashLoop", Occurrences: 1},
	}, rep.NoisiestAlerts)
	require.Equal(t, []stats.AlertMTBF{
		{Alertname: "Latency", Occurrences: 2, MTBFSeconds: 3 * 3600},
		{Alertname: "DiskFull", Occurrences: 2, MTBFSeconds: 4 * 3600},
	}, rep.MTBF)
	require.Equal(t, 2, rep.PendingApprovals)
}

func TestComputeEmpty(t *testing.T) {
	rep, err := (&stats.Computer{Source: &store{}}).Compute(context.Background(), day0, day0.Add(24*time.Hour))
	require.NoError(t, err)
	require.Zero(t, rep.ToilSavedSeconds)
	require.Nil(t, rep.Coverage)
	require.Nil(t, rep.SuccessRate)
	require.NotNil(t, rep.ToilByRunbook)
	require.Len(t, rep.Days, 1)
}
