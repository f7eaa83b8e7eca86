package stats

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strconv"
	"time"

	"github.com/salve-sre/salve/internal/audit"
	"github.com/salve-sre/salve/internal/domain"
)

// Source is what the figures are computed from: the audit store.
type Source interface {
	Query(ctx context.Context, f audit.Filter) ([]audit.Record, error)
	Alerts(ctx context.Context, f audit.AlertFilter) ([]audit.AlertState, error)
}

// maxRecords bounds one computation; a window with more records than this
// is refused rather than answered wrongly.
const maxRecords = 500_000

// Computer computes reports.
type Computer struct {
	Source Source
	// Pending counts the runs waiting for approval now; nil = 0.
	Pending func(ctx context.Context) (int, error)
	// Breakers lists the circuit breakers now; nil = none.
	Breakers func(ctx context.Context) ([]Breaker, error)
}

// Compute returns the figures for [from, to).
func (c *Computer) Compute(ctx context.Context, from, to time.Time) (Report, error) {
	rep := Report{From: from.UTC(), To: to.UTC()}
	// Runs finishing or starting in the window may belong to alerts that
	// started in it, so read run records from its start to now.
	finished, err := c.records(ctx, domain.ActionRunFinished, from)
	if err != nil {
		return rep, err
	}
	var triggers []audit.Record
	for _, a := range []string{domain.ActionTriggerMatched, domain.ActionRunJoined, domain.ActionTriggerSuppressed} {
		recs, err := c.records(ctx, a, from)
		if err != nil {
			return rep, err
		}
		triggers = append(triggers, recs...)
	}
	started, err := c.records(ctx, domain.ActionStepStarted, from)
	if err != nil {
		return rep, err
	}
	alerts, err := c.alerts(ctx, from, to)
	if err != nil {
		return rep, err
	}

	days := newDays(from, to)
	c.runFigures(&rep, finished, from, to, days)

	// Which runs each alert occurrence led to, and how they ended.
	outcome := map[string]domain.AuditEvent{} // run ID -> run.finished
	for _, r := range finished {
		outcome[r.Event.RunID] = r.Event
	}
	firstStep := map[string]time.Time{} // run ID -> first step start
	for _, r := range started {
		if t, ok := firstStep[r.Event.RunID]; !ok || r.Event.Time.Before(t) {
			firstStep[r.Event.RunID] = r.Event.Time
		}
	}
	type links struct {
		matched bool     // some runbook matched
		started []string // runs this alert started
		runs    []string // runs it started or joined
	}
	byAlert := map[string]*links{} // fingerprint|startsAt -> links
	for _, r := range triggers {
		key, ok := domain.OccurrenceKey(r.Event.Detail["alertId"])
		if !ok {
			continue
		}
		l := byAlert[key]
		if l == nil {
			l = &links{}
			byAlert[key] = l
		}
		l.matched = true
		if r.Event.RunID != "" && r.Event.Action != domain.ActionTriggerSuppressed {
			l.runs = append(l.runs, r.Event.RunID)
			if r.Event.Action == domain.ActionTriggerMatched {
				l.started = append(l.started, r.Event.RunID)
			}
		}
	}

	var mttrAuto, mttrManual, toAction []float64
	perName := map[string]*AlertCount{}
	starts := map[string][]time.Time{}
	for _, a := range alerts {
		rep.Alerts++
		if d := days.of(a.StartsAt); d != nil {
			d.Alerts++
		}
		nc := perName[a.Alertname]
		if nc == nil {
			nc = &AlertCount{Alertname: a.Alertname}
			perName[a.Alertname] = nc
		}
		nc.Occurrences++
		starts[a.Alertname] = append(starts[a.Alertname], a.StartsAt)

		l := byAlert[domain.OccurrenceKeyOf(a.Fingerprint, a.StartsAt)]
		automated := false
		if l != nil {
			rep.AlertsWithRunbook++
			for _, id := range l.runs {
				if ev, ok := outcome[id]; ok && ev.Outcome == "succeeded" && ev.Actor.Kind == domain.ActorAlert {
					automated = true
				}
			}
			var first time.Time
			for _, id := range l.started {
				if t, ok := firstStep[id]; ok && (first.IsZero() || t.Before(first)) {
					first = t
				}
			}
			if !first.IsZero() && !a.ReceivedAt.IsZero() {
				toAction = append(toAction, math.Max(0, first.Sub(a.ReceivedAt).Seconds()))
			}
		}
		if automated {
			nc.Automated++
		}
		if !a.ResolvedAt.IsZero() {
			if automated {
				mttrAuto = append(mttrAuto, a.Duration().Seconds())
			} else {
				mttrManual = append(mttrManual, a.Duration().Seconds())
			}
		}
	}
	rep.Coverage = ratio(rep.AlertsWithRunbook, rep.Alerts)
	// Resolved after a successful automated run: exactly the occurrences
	// counted in the automated MTTR.
	rep.AutomationRate = ratio(len(mttrAuto), rep.AlertsWithRunbook)
	rep.MTTRAutomatedSeconds = mean(mttrAuto)
	rep.MTTRManualSeconds = mean(mttrManual)
	rep.AlertToFirstActionP50Seconds = median(toAction)

	for _, nc := range perName {
		rep.NoisiestAlerts = append(rep.NoisiestAlerts, *nc)
	}
	sort.Slice(rep.NoisiestAlerts, func(i, j int) bool {
		a, b := rep.NoisiestAlerts[i], rep.NoisiestAlerts[j]
		if a.Occurrences != b.Occurrences {
			return a.Occurrences > b.Occurrences
		}
		return a.Alertname < b.Alertname
	})
	rep.NoisiestAlerts = top(rep.NoisiestAlerts, 10)
	for name, ts := range starts {
		if len(ts) < 2 {
			continue
		}
		sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
		gap := ts[len(ts)-1].Sub(ts[0]).Seconds() / float64(len(ts)-1)
		rep.MTBF = append(rep.MTBF, AlertMTBF{Alertname: name, Occurrences: len(ts), MTBFSeconds: gap})
	}
	sort.Slice(rep.MTBF, func(i, j int) bool {
		if rep.MTBF[i].MTBFSeconds != rep.MTBF[j].MTBFSeconds {
			return rep.MTBF[i].MTBFSeconds < rep.MTBF[j].MTBFSeconds
		}
		return rep.MTBF[i].Alertname < rep.MTBF[j].Alertname
	})
	rep.MTBF = top(rep.MTBF, 10)
	rep.Days = days.points()

	if c.Pending != nil {
		// The figures stand without it: say what is missing instead.
		n, err := c.Pending(ctx)
		rep.PendingApprovals = n
		if err != nil {
			rep.PendingApprovalsError = err.Error()
		}
	}
	rep.CircuitBreakers = []Breaker{}
	if c.Breakers != nil {
		b, err := c.Breakers(ctx)
		if err != nil {
			return rep, fmt.Errorf("circuit breakers: %w", err)
		}
		rep.CircuitBreakers = append(rep.CircuitBreakers, b...)
	}
	if rep.ToilByRunbook == nil {
		rep.ToilByRunbook = []RunbookToil{}
	}
	if rep.ToilByTeam == nil {
		rep.ToilByTeam = []TeamToil{}
	}
	if rep.MTBF == nil {
		rep.MTBF = []AlertMTBF{}
	}
	if rep.NoisiestAlerts == nil {
		rep.NoisiestAlerts = []AlertCount{}
	}
	if rep.TopFailing == nil {
		rep.TopFailing = []RunbookRuns{}
	}
	return rep, nil
}

// runFigures counts the runs that finished in the window and the toil
// they saved.
func (c *Computer) runFigures(rep *Report, finished []audit.Record, from, to time.Time, days *dayIndex) {
	toil := map[string]*RunbookToil{}
	team := map[string]float64{}
	perRunbook := map[string]*RunbookRuns{}
	for _, r := range finished {
		ev := r.Event
		if ev.Time.Before(from) || !ev.Time.Before(to) {
			continue
		}
		rep.Runs++
		rr := perRunbook[ev.Runbook]
		if rr == nil {
			rr = &RunbookRuns{Runbook: ev.Runbook}
			perRunbook[ev.Runbook] = rr
		}
		rr.Runs++
		day := days.of(ev.Time)
		if day != nil {
			day.Runs++
		}
		switch ev.Outcome {
		case "succeeded":
			rep.Succeeded++
		case "failed":
			rep.Failed++
			rr.Failed++
			if day != nil {
				day.Failed++
			}
		case "cancelled", "rejected":
			rep.Cancelled++
		}
		// Only automated successes save toil; the workflow writes
		// toilSeconds for exactly those.
		v, ok := ev.Detail["toilSeconds"]
		if !ok {
			continue
		}
		secs, err := strconv.ParseFloat(v, 64)
		if err != nil || secs < 0 {
			continue
		}
		rep.ToilSavedSeconds += secs
		t := toil[ev.Runbook]
		if t == nil {
			t = &RunbookToil{Runbook: ev.Runbook, Owner: ev.Detail["owner"]}
			toil[ev.Runbook] = t
		}
		t.Runs++
		t.SavedSeconds += secs
		owner := ev.Detail["owner"]
		if owner == "" {
			owner = "(no owner)"
		}
		team[owner] += secs
		if day != nil {
			day.SavedSeconds += secs
		}
	}
	rep.SuccessRate = ratio(rep.Succeeded, rep.Succeeded+rep.Failed)
	for _, t := range toil {
		rep.ToilByRunbook = append(rep.ToilByRunbook, *t)
	}
	sort.Slice(rep.ToilByRunbook, func(i, j int) bool {
		a, b := rep.ToilByRunbook[i], rep.ToilByRunbook[j]
		if a.SavedSeconds != b.SavedSeconds {
			return a.SavedSeconds > b.SavedSeconds
		}
		return a.Runbook < b.Runbook
	})
	for o, s := range team {
		rep.ToilByTeam = append(rep.ToilByTeam, TeamToil{Owner: o, SavedSeconds: s})
	}
	sort.Slice(rep.ToilByTeam, func(i, j int) bool {
		if rep.ToilByTeam[i].SavedSeconds != rep.ToilByTeam[j].SavedSeconds {
			return rep.ToilByTeam[i].SavedSeconds > rep.ToilByTeam[j].SavedSeconds
		}
		return rep.ToilByTeam[i].Owner < rep.ToilByTeam[j].Owner
	})
	for _, rr := range perRunbook {
		if rr.Failed > 0 {
			rep.TopFailing = append(rep.TopFailing, *rr)
		}
	}
	sort.Slice(rep.TopFailing, func(i, j int) bool {
		a, b := rep.TopFailing[i], rep.TopFailing[j]
		if a.Failed != b.Failed {
			return a.Failed > b.Failed
		}
		return a.Runbook < b.Runbook
	})
	rep.TopFailing = top(rep.TopFailing, 10)
}

// records reads every record of one action since from.
func (c *Computer) records(ctx context.Context, action string, from time.Time) ([]audit.Record, error) {
	var out []audit.Record
	var after int64
	for {
		page, err := c.Source.Query(ctx, audit.Filter{Action: action, Since: from, AfterSeq: after, Limit: 10000})
		if err != nil {
			return nil, fmt.Errorf("read %s records: %w", action, err)
		}
		out = append(out, page...)
		if len(out) > maxRecords {
			return nil, fmt.Errorf("more than %d %s records in the window: choose a shorter one", maxRecords, action)
		}
		if len(page) < 10000 {
			return out, nil
		}
		after = page[len(page)-1].Seq
	}
}

// alerts reads the occurrences that started in [from, to).
func (c *Computer) alerts(ctx context.Context, from, to time.Time) ([]audit.AlertState, error) {
	var out []audit.AlertState
	seen := map[string]bool{}
	since := from
	for {
		page, err := c.Source.Alerts(ctx, audit.AlertFilter{Since: since, Limit: 10000})
		if err != nil {
			return nil, fmt.Errorf("read alerts: %w", err)
		}
		for _, a := range page {
			key := a.Fingerprint + "|" + a.StartsAt.UTC().Format(time.RFC3339Nano)
			if seen[key] || !a.StartsAt.Before(to) {
				continue
			}
			seen[key] = true
			out = append(out, a)
		}
		if len(out) > maxRecords {
			return nil, fmt.Errorf("more than %d alerts in the window: choose a shorter one", maxRecords)
		}
		if len(page) < 10000 || !page[len(page)-1].StartsAt.Before(to) {
			return out, nil
		}
		// The next page starts at the last start seen; equal starts are
		// read again and skipped by seen.
		next := page[len(page)-1].StartsAt
		if next.Equal(since) {
			return nil, fmt.Errorf("more than 10000 alerts started at %s: cannot page through them", next)
		}
		since = next
	}
}

type dayIndex struct {
	first time.Time
	days  []DayPoint
}

func newDays(from, to time.Time) *dayIndex {
	first := from.UTC().Truncate(24 * time.Hour)
	d := &dayIndex{first: first}
	for t := first; t.Before(to); t = t.Add(24 * time.Hour) {
		d.days = append(d.days, DayPoint{Day: t})
	}
	return d
}

func (d *dayIndex) of(t time.Time) *DayPoint {
	i := int(t.UTC().Sub(d.first) / (24 * time.Hour))
	if t.Before(d.first) || i < 0 || i >= len(d.days) {
		return nil
	}
	return &d.days[i]
}

func (d *dayIndex) points() []DayPoint {
	if d.days == nil {
		return []DayPoint{}
	}
	return d.days
}

func ratio(n, d int) *float64 {
	if d == 0 {
		return nil
	}
	v := float64(n) / float64(d)
	return &v
}

func mean(xs []float64) *float64 {
	if len(xs) == 0 {
		return nil
	}
	s := 0.0
	for _, x := range xs {
		s += x
	}
	v := s / float64(len(xs))
	return &v
}

func median(xs []float64) *float64 {
	if len(xs) == 0 {
		return nil
	}
	s := append([]float64{}, xs...)
	sort.Float64s(s)
	v := s[len(s)/2]
	if len(s)%2 == 0 {
		v = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return &v
}

func top[T any](s []T, n int) []T {
	if len(s) > n {
		return s[:n]
	}
	return s
}
