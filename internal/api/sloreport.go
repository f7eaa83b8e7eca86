package api

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/salve-sre/salve/internal/audit"
	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/internal/runs"
	"github.com/salve-sre/salve/internal/slobudget"
	"github.com/salve-sre/salve/runbooks"
	"github.com/salve-sre/salve/slos"
)

// Bounds of one SLO report.
const (
	// maxIncidentQueries bounds the Prometheus queries of one report (one
	// per incident); the newest incidents are read first.
	maxIncidentQueries = 200
	// maxSLOWindow is the longest ?since= window.
	maxSLOWindow = 400 * 24 * time.Hour
	// maxPages bounds the pages of runs (1000 each) and of trigger audit
	// records (10000 each) read per runbook.
	maxPages = 10
	// budgetReadsTimeout bounds all of one report's Prometheus reads.
	budgetReadsTimeout = 20 * time.Second
)

// SavedMethod is how the budget-saved estimate is made; the API answer
// and the dashboard page both state it.
const SavedMethod = "Estimate. For each run that an alert started and that succeeded and acted: " +
	"saved = burnRate × max(0, manual − d) / period, where d is the run's duration rounded up to a whole minute, " +
	"burnRate is the error ratio over d ending when the run ended divided by the error budget, " +
	"and manual is the manual MTTR of the same alerts: the mean firing-to-resolved time of the occurrences of the alertnames " +
	"these runs answered (for SLO burn alerts, of this SLO) that resolved in the window without a Salve run acting on them; " +
	"when there is none, the runbook's spec.toil.manualMinutes (how long the fix takes by hand), and the answer says so. " +
	"It assumes that without the runbook the errors would have gone on at the same rate until a person fixed them."

// SLODetail is one SLO with its incidents over a window
// (GET /v1/slos/{name}). The formulas are in internal/slobudget.
type SLODetail struct {
	SLOItem
	Units map[string]string `json:"units"`
	// From and To are the window: incidents are runs started in it.
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	// Incidents are the runs of Runbooks an alert started, newest first.
	Incidents []SLOIncident `json:"incidents"`
	// Queried is how many incidents' error ratios were read from
	// Prometheus; Capped says why not all of the closed ones were.
	Queried int    `json:"queried"`
	Capped  string `json:"capped,omitempty"`
	// BudgetError says why budget figures could not be read.
	BudgetError string `json:"budgetError,omitempty"`
	// BudgetConsumed is the sum of the incidents' budgetConsumed, over
	// the ConsumedIncidents that have one.
	BudgetConsumed    float64        `json:"budgetConsumed"`
	ConsumedIncidents int            `json:"consumedIncidents"`
	Saved             SLOSaved       `json:"saved"`
	Reliability       SLOReliability `json:"reliability"`
	// Truncated says when a runbook had more runs or trigger records in
	// the window than one report reads.
	Truncated string `json:"truncated,omitempty"`
}

// SLOIncident is one run an alert started, with the budget it consumed.
type SLOIncident struct {
	Runbook     string    `json:"runbook"`
	WorkflowID  string    `json:"workflowId"`
	RunID       string    `json:"runId"`
	IncidentKey string    `json:"incidentKey"`
	Status      string    `json:"status"`
	Start       time.Time `json:"start"`
	End         time.Time `json:"end,omitzero"`
	// DurationSeconds is end − start; null while the run goes on.
	DurationSeconds *float64 `json:"durationSeconds"`
	// WindowMinutes is d: the duration rounded up to a whole minute, the
	// range the error ratio is read over, ending at End.
	WindowMinutes  int      `json:"windowMinutes,omitempty"`
	ErrorRatio     *float64 `json:"errorRatio"`
	BurnRate       *float64 `json:"burnRate"`
	BudgetConsumed *float64 `json:"budgetConsumed"`
	// PlanOnly marks a run that acted on nothing: a dry run (the SLO
	// policy's notify, the safety envelope's, the runbook's mode) or a
	// shadow run. It is no remediation: no budget saved, not in MTTR.
	PlanOnly bool `json:"planOnly,omitempty"`
	// ManualMinutes is the runbook's toil.manualMinutes; BudgetSaved is
	// set for a succeeded run with it and a read burn rate.
	ManualMinutes float64  `json:"manualMinutes,omitempty"`
	BudgetSaved   *float64 `json:"budgetSaved"`
	// Note says why a figure is missing.
	Note string `json:"note,omitempty"`
	// Alertname is the alert that started the run.
	Alertname string `json:"alertname,omitempty"`
	// occurrence is the alert occurrence's key (domain.OccurrenceKey).
	occurrence string
}

// SLOSaved is the budget-saved estimate.
type SLOSaved struct {
	Method string `json:"method"`
	// Total is the sum of BudgetSaved over Incidents remediated incidents.
	Total     float64 `json:"total"`
	Incidents int     `json:"incidents"`
	// Skipped says which remediated incidents are not counted, and why.
	Skipped []string `json:"skipped,omitempty"`
	// ManualMTTRSeconds is the measured manual MTTR of the same alerts
	// (see Method), over ManualOccurrences of them; null with none, and
	// then each runbook's toil.manualMinutes stands in.
	ManualMTTRSeconds *float64 `json:"manualMttrSeconds"`
	ManualOccurrences int      `json:"manualOccurrences"`
	// Alertnames are the alerts whose manual MTTR was measured.
	Alertnames []string `json:"alertnames"`
}

// SLOReliability is MTTR and MTBF of the SLO's service: over the
// incidents of every runbook naming an SLO of that service.
type SLOReliability struct {
	Service   string   `json:"service"`
	SLOs      []string `json:"slos"`
	Incidents int      `json:"incidents"`
	// Closed is how many ended: MTTR is their mean duration.
	Closed      int      `json:"closed"`
	MTTRSeconds *float64 `json:"mttrSeconds"`
	// MTBFSeconds is the mean time between consecutive incident starts;
	// null with fewer than two.
	MTBFSeconds *float64 `json:"mtbfSeconds"`
}

// SLOReport computes the detail of SLO name over [from, to); a zero from
// is the SLO's period before to.
func (s *Server) SLOReport(ctx context.Context, name string, from, to time.Time) (SLODetail, error) {
	set := s.loadedSLOs()
	slo := set[name]
	if slo == nil {
		return SLODetail{}, unknownSLO(name, set)
	}
	if from.IsZero() {
		from = to.Add(-slo.Period())
	}
	byRunbook := s.sloRunbooks()
	rep := SLODetail{SLOItem: s.sloItem(ctx, slo, byRunbook[name]), Units: SLOUnits, From: from.UTC(), To: to.UTC(),
		Incidents: []SLOIncident{}, Saved: SLOSaved{Method: SavedMethod}}

	// The service's incidents: the runbooks of every SLO of the service.
	rel := SLOReliability{Service: slo.Spec.Service, SLOs: []string{}}
	var all []SLOIncident
	for _, other := range slices.Sorted(maps.Keys(set)) {
		if set[other].Spec.Service != slo.Spec.Service {
			continue
		}
		rel.SLOs = append(rel.SLOs, other)
		for _, rb := range byRunbook[other] {
			inc, truncated, err := s.alertRuns(ctx, rb, from, to)
			if err != nil {
				return SLODetail{}, err
			}
			if truncated {
				rep.Truncated = fmt.Sprintf("runbook %s has more runs or trigger records since %s than one report reads (%d pages): narrow the window with ?since=", rb, from.UTC().Format(time.RFC3339), maxPages)
			}
			all = append(all, inc...)
			if other == name {
				rep.Incidents = append(rep.Incidents, inc...)
			}
		}
	}
	newestFirst := func(a, b SLOIncident) int { return b.Start.Compare(a.Start) }
	slices.SortFunc(rep.Incidents, newestFirst)
	rep.Reliability = reliability(rel, all)
	s.readBudgets(ctx, slo, &rep)
	return rep, nil
}

// reliability computes MTTR over the closed incidents and MTBF over all
// their starts.
func reliability(rel SLOReliability, incidents []SLOIncident) SLOReliability {
	var durations []time.Duration
	var starts []time.Time
	for _, in := range incidents {
		starts = append(starts, in.Start)
		// A plan's run ends when the plan does, not when the service
		// recovers: its duration says nothing of repair time.
		if !in.End.IsZero() && !in.PlanOnly {
			durations = append(durations, in.End.Sub(in.Start))
		}
	}
	rel.Incidents, rel.Closed = len(incidents), len(durations)
	if m, ok := slobudget.MTTR(durations); ok {
		rel.MTTRSeconds = ptr(m.Seconds())
	}
	if m, ok := slobudget.MTBF(starts); ok {
		rel.MTBFSeconds = ptr(m.Seconds())
	}
	return rel
}

// readBudgets reads each closed incident's error ratio (newest first, at
// most maxIncidentQueries) and computes what it consumed and saved. The
// first failed read stops the reading: the others would fail alike.
func (s *Server) readBudgets(ctx context.Context, slo *slos.SLO, rep *SLODetail) {
	// One report's reads together take at most this long: a slow
	// Prometheus gives a report whose budgetError says so, not a request
	// held for 200 query timeouts.
	ctx, cancel := context.WithTimeout(ctx, budgetReadsTimeout)
	defer cancel()
	manual := map[string]float64{}
	if set := s.Runbooks.Current(); set != nil {
		for _, rb := range rep.Runbooks {
			if r, ok := set.Get(rb); ok {
				manual[rb] = r.Spec.Toil.ManualMinutes
			}
		}
	}
	s.manualMTTR(ctx, slo, rep)
	noManual := map[string]int{}
	unread := 0
	closed := 0
	for i := range rep.Incidents {
		in := &rep.Incidents[i]
		in.ManualMinutes = manual[in.Runbook]
		if in.End.IsZero() {
			in.Note = "still running: no budget figures until it ends"
			continue
		}
		closed++
		remediated := in.Status == runs.StatusSucceeded && !in.PlanOnly
		switch {
		case s.Budgets == nil:
			in.Note = "not read: " + NoPrometheus
		case rep.BudgetError != "":
			in.Note = "not read: an earlier read failed"
		case rep.Queried >= maxIncidentQueries:
			in.Note = fmt.Sprintf("not read: only the newest %d incidents are read", maxIncidentQueries)
		default:
			s.readIncident(ctx, slo, in, rep)
		}
		if !remediated {
			continue
		}
		switch {
		case in.BurnRate == nil:
			unread++
		case rep.Saved.ManualMTTRSeconds == nil && in.ManualMinutes <= 0:
			noManual[in.Runbook]++
		default:
			d := time.Duration(in.WindowMinutes) * time.Minute
			manual := time.Duration(in.ManualMinutes * float64(time.Minute))
			if m := rep.Saved.ManualMTTRSeconds; m != nil {
				manual = time.Duration(*m * float64(time.Second))
			}
			in.BudgetSaved = ptr(slobudget.Saved(*in.BurnRate, d, manual, slo.Period()))
			rep.Saved.Total += *in.BudgetSaved
			rep.Saved.Incidents++
		}
	}
	if s.Budgets == nil {
		rep.BudgetError = NoPrometheus
	}
	if closed > maxIncidentQueries {
		rep.Capped = fmt.Sprintf("budget figures were read for the newest %d of %d ended incidents (at most %d Prometheus queries per report): narrow the window with ?since= to read older ones", maxIncidentQueries, closed, maxIncidentQueries)
	}
	for _, rb := range slices.Sorted(maps.Keys(noManual)) {
		rep.Saved.Skipped = append(rep.Saved.Skipped, fmt.Sprintf("runbook %s: %d remediated incidents not counted: no occurrence of the same alerts resolved without Salve in the window, and the runbook has no spec.toil.manualMinutes (set how many minutes the fix takes by hand)", rb, noManual[rb]))
	}
	if rep.Saved.ManualMTTRSeconds == nil && rep.Saved.Incidents > 0 {
		rep.Saved.Skipped = append(rep.Saved.Skipped, "no occurrence of the same alerts resolved without Salve in the window: the runbooks' toil.manualMinutes stand in for the manual MTTR")
	}
	if unread > 0 {
		rep.Saved.Skipped = append(rep.Saved.Skipped, fmt.Sprintf("%d remediated incidents not counted: their error ratio was not read (see each incident's note)", unread))
	}
}

// readIncident reads one incident's error ratio over d at its end.
func (s *Server) readIncident(ctx context.Context, slo *slos.SLO, in *SLOIncident, rep *SLODetail) {
	d := slobudget.Window(in.End.Sub(in.Start))
	in.WindowMinutes = int(d / time.Minute)
	rep.Queried++
	ratio, ok, err := s.Budgets.ErrorRatioAt(ctx, slo, d, in.End)
	switch {
	case err != nil:
		rep.BudgetError = err.Error()
		in.Note = "not read: " + err.Error()
		return
	case !ok:
		in.Note = "no data: Prometheus had no events of the SLI over the window"
		return
	}
	rate := slobudget.BurnRate(ratio, slo.ErrorBudget())
	in.ErrorRatio, in.BurnRate = ptr(ratio), ptr(rate)
	in.BudgetConsumed = ptr(slobudget.Consumed(rate, d, slo.Period()))
	rep.BudgetConsumed += *in.BudgetConsumed
	rep.ConsumedIncidents++
}

// alertRuns lists the runs of runbook started in [from, to) by an alert:
// those whose start the trigger audited as trigger.matched. A person's
// launch is not an incident of the SLO. truncated is true when a page
// bound was hit.
func (s *Server) alertRuns(ctx context.Context, runbook string, from, to time.Time) (out []SLOIncident, truncated bool, err error) {
	started := map[string]bool{}
	planOnly := map[string]bool{} // by run ID: the trigger made it a plan
	alertOf := map[string]*audit.Record{}
	// The trigger records its decision just before the run starts: read
	// from a little earlier so a run starting right at from is matched.
	f := audit.Filter{Runbook: runbook, Action: domain.ActionTriggerMatched, Since: from.Add(-time.Hour), Limit: 10000}
	for page := 0; ; page++ {
		if page == maxPages {
			truncated = true
			break
		}
		recs, err := s.Audit.Query(ctx, f)
		if err != nil {
			return nil, false, fmt.Errorf("cannot read the audit store (trigger records of runbook %s): %w", runbook, err)
		}
		for _, r := range recs {
			if r.Event.RunID != "" {
				started[r.Event.RunID] = true
				d := r.Event.Detail
				planOnly[r.Event.RunID] = d["dryRun"] != "" || d["sloAction"] == runbooks.SLONotify
				alertOf[r.Event.RunID] = &r
			}
		}
		if len(recs) < f.Limit {
			break
		}
		f.AfterSeq = recs[len(recs)-1].Seq
	}
	// A runbook in dry-run or shadow mode acts on nothing at all.
	modePlans := false
	if set := s.Runbooks.Current(); set != nil {
		if rb, ok := set.Get(runbook); ok {
			modePlans = !rb.Spec.Safety.Acts()
		}
	}
	seen := map[string]bool{}
	var token []byte
	for page := 0; ; page++ {
		if page == maxPages {
			truncated = true
			break
		}
		list, next, err := s.Runs.ListFiltered(ctx, runs.ListFilter{Runbook: runbook, Since: from}, 1000, token)
		if err != nil {
			return nil, false, fmt.Errorf("cannot list the runs of runbook %s: Temporal: %w", runbook, err)
		}
		for _, r := range list {
			if r.Runbook != runbook || !started[r.RunID] || seen[r.RunID] || r.StartTime.Before(from) || !r.StartTime.Before(to) {
				continue
			}
			seen[r.RunID] = true
			in := SLOIncident{Runbook: runbook, WorkflowID: r.WorkflowID, RunID: r.RunID, IncidentKey: r.IncidentKey,
				Status: r.Status, Start: r.StartTime.UTC(), PlanOnly: planOnly[r.RunID] || modePlans || domain.IsShadowWorkflowID(r.WorkflowID)}
			if rec := alertOf[r.RunID]; rec != nil {
				in.Alertname = rec.Event.Detail["alertname"]
				in.occurrence, _ = domain.OccurrenceKey(rec.Event.Detail["alertId"])
			}
			if !r.CloseTime.IsZero() {
				in.End = r.CloseTime.UTC()
				in.DurationSeconds = ptr(in.End.Sub(in.Start).Seconds())
			}
			out = append(out, in)
		}
		if len(next) == 0 {
			break
		}
		token = next
	}
	return out, truncated, nil
}

func ptr[T any](v T) *T { return &v }

// manualMTTR measures the manual MTTR of the alerts the SLO's incidents
// answered: the occurrences of their alertnames (of this SLO, for SLO burn
// alerts) that resolved in the report's window without a Salve run
// acting on them. The alert history is the audit store's read model; an
// unreadable history leaves it unmeasured.
func (s *Server) manualMTTR(ctx context.Context, slo *slos.SLO, rep *SLODetail) {
	rep.Saved.Alertnames = []string{}
	acted := map[string]bool{}
	names := map[string]bool{}
	for _, in := range rep.Incidents {
		if in.Alertname != "" {
			names[in.Alertname] = true
		}
		if in.occurrence != "" && !in.PlanOnly && in.Status == runs.StatusSucceeded {
			acted[in.occurrence] = true
		}
	}
	var durations []time.Duration
	for _, name := range slices.Sorted(maps.Keys(names)) {
		rep.Saved.Alertnames = append(rep.Saved.Alertnames, name)
		alerts, err := s.Audit.Alerts(ctx, audit.AlertFilter{Alertname: name, Since: rep.From, Limit: 10000})
		if err != nil {
			rep.Saved.Skipped = append(rep.Saved.Skipped, "the alert history could not be read: "+err.Error())
			return
		}
		for _, a := range alerts {
			if a.ResolvedAt.IsZero() || !a.StartsAt.Before(rep.To) || acted[domain.OccurrenceKeyOf(a.Fingerprint, a.StartsAt)] {
				continue
			}
			if v, ok := a.Labels[slos.LabelSLO]; ok && v != slo.Name() {
				continue // another SLO's burn alert
			}
			durations = append(durations, a.Duration())
		}
	}
	rep.Saved.ManualOccurrences = len(durations)
	if m, ok := slobudget.MTTR(durations); ok {
		rep.Saved.ManualMTTRSeconds = ptr(m.Seconds())
	}
}
