package dashboard

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/salve-sre/salve/internal/api"
	"github.com/salve-sre/salve/internal/audit"
	"github.com/salve-sre/salve/internal/auth"
	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/internal/runs"
	"github.com/salve-sre/salve/internal/stats"
	"github.com/salve-sre/salve/internal/timeline"
	"github.com/salve-sre/salve/internal/tracing"
	"github.com/salve-sre/salve/internal/trust"
	"github.com/salve-sre/salve/runbooks"
	"github.com/salve-sre/salve/workflows"
)

// readTimeout bounds what one page waits for its data.
const readTimeout = 15 * time.Second

// ---- overview ----

// windows are the overview's time windows.
var windows = []struct {
	Key  string
	Days int
}{{"7d", 7}, {"30d", 30}, {"90d", 90}}

type overviewPage struct {
	Window  string
	Windows []string
	// Health lists the checks that failed or warn (e.g. a consumer
	// falling behind): the overview never looks fine when Salve is not.
	Health []api.CheckResult
	// StatsError is shown instead of the figures.
	StatsError string
	Report     stats.Report
	ToilHours  string // ToilSavedSeconds in hours, as shown
	ToilChart  *chart
	RunsChart  *chart
	Noisiest   []noisyAlert
	MaxToil    float64 // largest per-runbook figure, for the table bars
}

type noisyAlert struct {
	stats.AlertCount
	MTBFSeconds *float64
}

func (d *dashboard) overview(w http.ResponseWriter, r *http.Request, v *view) {
	win := r.URL.Query().Get("window")
	days := 0
	var keys []string
	for _, wd := range windows {
		keys = append(keys, wd.Key)
		if wd.Key == win {
			days = wd.Days
		}
	}
	if days == 0 {
		win, days = "7d", 7
	}
	pg := overviewPage{Window: win, Windows: keys}
	v.Title, v.Nav, v.Page = "Overview", "overview", &pg
	hctx, hcancel := context.WithTimeout(r.Context(), 3*time.Second)
	_, checks := d.o.API.Health(hctx, nil)
	hcancel()
	for _, c := range checks {
		if !c.OK || c.Warning != "" {
			pg.Health = append(pg.Health, c)
		}
	}
	if d.o.API.Stats == nil {
		pg.StatsError = "Statistics are not available on this server (no stats source is configured)."
		d.render(w, http.StatusOK, "overview", v)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	to := d.now()
	rep, err := d.o.API.Stats(ctx, to.Add(-time.Duration(days)*24*time.Hour), to)
	if err != nil {
		d.log.Error("dashboard stats", "error", err)
		pg.StatsError = "Cannot compute the figures: " + err.Error()
		d.render(w, http.StatusOK, "overview", v)
		return
	}
	pg.Report = rep
	pg.ToilHours = hours(rep.ToilSavedSeconds)
	pg.ToilChart = barChart("Toil saved per day (hours)", rep.Days, dayOf, func(p stats.DayPoint) float64 { return p.SavedSeconds / 3600 })
	pg.RunsChart = lineChart("Runs and failed runs per day", rep.Days, dayOf, []series[stats.DayPoint]{
		{Name: "runs", Class: "s-runs", Value: func(p stats.DayPoint) float64 { return float64(p.Runs) }},
		{Name: "failed", Class: "s-failed", Value: func(p stats.DayPoint) float64 { return float64(p.Failed) }},
		{Name: "alerts", Class: "s-alerts", Value: func(p stats.DayPoint) float64 { return float64(p.Alerts) }},
	})
	mtbf := map[string]float64{}
	for _, m := range rep.MTBF {
		mtbf[m.Alertname] = m.MTBFSeconds
	}
	for _, a := range rep.NoisiestAlerts {
		na := noisyAlert{AlertCount: a}
		if s, ok := mtbf[a.Alertname]; ok {
			na.MTBFSeconds = &s
		}
		pg.Noisiest = append(pg.Noisiest, na)
	}
	for _, t := range rep.ToilByRunbook {
		pg.MaxToil = max(pg.MaxToil, t.SavedSeconds)
	}
	for _, t := range rep.ToilByTeam {
		pg.MaxToil = max(pg.MaxToil, t.SavedSeconds)
	}
	d.render(w, http.StatusOK, "overview", v)
}

// ---- runs ----

type runListPage struct {
	Runbook, Status, Since, IncidentKey string
	Runbooks                            []string
	Statuses                            []string
	Runs                                []runs.Summary
	Error                               string
	NextURL                             string
	FirstURL                            string // the first page, when not on it
}

var runStatuses = []string{runs.StatusRunning, runs.StatusSucceeded, runs.StatusFailed, runs.StatusCancelled, runs.StatusTerminated, runs.StatusTimedOut}

const runsPerPage = 50

func (d *dashboard) runList(w http.ResponseWriter, r *http.Request, v *view) {
	q := r.URL.Query()
	pg := runListPage{Runbook: q.Get("runbook"), Status: q.Get("status"), Since: q.Get("since"), IncidentKey: q.Get("incidentKey"),
		Runbooks: d.runbookNames(), Statuses: runStatuses}
	v.Title, v.Nav, v.Page = "Runs", "runs", &pg
	f := runs.ListFilter{Runbook: pg.Runbook, Status: pg.Status, IncidentKey: pg.IncidentKey}
	if pg.Since != "" {
		t, err := domain.ParseSince(pg.Since, d.now())
		if err != nil {
			pg.Error = err.Error()
			d.render(w, http.StatusBadRequest, "runs", v)
			return
		}
		f.Since = t
	}
	var token []byte
	if tok := q.Get("pageToken"); tok != "" {
		b, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil {
			pg.Error = "The page token is not one from a previous page; start again from the first page."
			d.render(w, http.StatusBadRequest, "runs", v)
			return
		}
		token = b
		pg.FirstURL = "/ui/runs?" + without(q, "pageToken").Encode()
	}
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	list, next, err := d.o.API.Runs.ListFiltered(ctx, f, runsPerPage, token)
	if err != nil {
		code := http.StatusServiceUnavailable
		if errors.Is(err, runs.ErrBadRequest) {
			code = http.StatusBadRequest
		}
		pg.Error = "Cannot list runs: " + err.Error()
		d.render(w, code, "runs", v)
		return
	}
	pg.Runs = list
	if len(next) > 0 {
		nq := without(q, "pageToken")
		nq.Set("pageToken", base64.RawURLEncoding.EncodeToString(next))
		pg.NextURL = "/ui/runs?" + nq.Encode()
	}
	d.render(w, http.StatusOK, "runs", v)
}

type runPage struct {
	D           runs.Detail
	Status      *workflows.Status
	TemporalURL string
	StartedBy   string // who or what started the run
	Steps       []stepRow
	OnFailure   []stepRow
	Leases      []leaseRow
	Audit       []audit.Record
	AuditError  string
	AfterSeq    int64
	Running     bool
	// Approval actions, when the run waits and the caller may decide.
	CanDecide  bool
	DecideNote string
	CanCancel  bool
	Span       string // the run's duration so far
}

type stepRow struct {
	workflows.StepStatus
	Duration string
	Bar      *spanBar
	Output   string // pretty JSON
}

type leaseRow struct {
	Time    time.Time
	Step    string
	Action  string
	Outcome string
	Source  string
	Role    string
	Lease   string
	TTL     string
	Ref     string
	Scope   string
}

func (d *dashboard) runDetail(w http.ResponseWriter, r *http.Request, v *view) {
	id := r.PathValue("id")
	if id == "" {
		http.Redirect(w, r, "/ui/runs", http.StatusSeeOther)
		return
	}
	v.Nav = "runs"
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	det, err := d.o.API.Runs.Get(ctx, id, r.URL.Query().Get("runId"))
	if errors.Is(err, runs.ErrNotFound) {
		d.fail(w, v, http.StatusNotFound, "Run not found", fmt.Sprintf("There is no run %q.", id))
		return
	}
	if err != nil {
		d.fail(w, v, http.StatusServiceUnavailable, "Cannot read the run", err.Error())
		return
	}
	det.TraceURL = tracing.Link(d.o.API.TraceURL, det.TraceID)
	pg := runPage{D: det, Status: det.Run, Running: det.Status == runs.StatusRunning}
	v.Title, v.Page = "Run "+det.WorkflowID, &pg
	if d.o.TemporalUI != "" {
		pg.TemporalURL = strings.TrimSuffix(d.o.TemporalUI, "/") + "/namespaces/" + url.PathEscape(d.nsOrDef) +
			"/workflows/" + url.PathEscape(det.WorkflowID) + "/" + url.PathEscape(det.RunID) + "/history"
	}
	now := d.now()
	end := det.CloseTime
	if end.IsZero() {
		end = now
	}
	if !det.StartTime.IsZero() {
		pg.Span = humanDuration(end.Sub(det.StartTime))
	}
	if st := det.Run; st != nil {
		pg.Steps = stepRows(st.Steps, det.StartTime, end, now)
		pg.OnFailure = stepRows(st.OnFailure, det.StartTime, end, now)
		if st.LaunchedBy != "" {
			pg.StartedBy = "launched by " + st.LaunchedBy
		}
	}
	recs, err := d.o.API.Audit.Query(ctx, audit.Filter{WorkflowID: det.WorkflowID, Limit: 10000})
	if err != nil {
		pg.AuditError = "Cannot read the audit log: " + err.Error()
	}
	for _, rec := range recs {
		pg.AfterSeq = max(pg.AfterSeq, rec.Seq)
		ev := rec.Event
		if ev.RunID != "" && ev.RunID != det.RunID {
			continue // another run of the same incident
		}
		pg.Audit = append(pg.Audit, rec)
		switch ev.Action {
		case domain.ActionCredentialIssued, domain.ActionCredentialRevoked, domain.ActionCredentialRevokeFailed:
			dt := ev.Detail
			scope := dt["namespace"]
			if c := dt["cluster"]; c != "" {
				scope = strings.TrimPrefix(c+"/"+scope, "/")
			}
			pg.Leases = append(pg.Leases, leaseRow{Time: ev.Time, Step: ev.Step, Action: ev.Action, Outcome: ev.Outcome,
				Source: dt["source"], Role: dt["role"], Lease: dt["lease"], TTL: dt["ttl"], Ref: dt["ref"], Scope: scope})
		case domain.ActionRunStarted:
			if pg.StartedBy == "" {
				pg.StartedBy = actorText(ev.Actor)
			}
		}
	}
	if v.CanOperate && pg.Running {
		pg.CanCancel = d.mayCancel(v.User, det.Runbook)
		if st := det.Run; st != nil && st.Approval != nil {
			pg.CanDecide, pg.DecideNote = d.mayDecide(v.User, det.Runbook, st.LaunchedBy)
		}
	}
	d.render(w, http.StatusOK, "run", v)
}

// mayDecide says whether p may approve runs of a runbook (a hint: the run
// itself decides, by the same rule), and why not.
func (d *dashboard) mayDecide(p auth.Principal, runbook, launchedBy string) (bool, string) {
	rb, ok := d.runbook(runbook)
	if !ok {
		return true, ""
	}
	if err := rb.Spec.Access.MayDecide(runbook, p.Subject, p.Groups, launchedBy); err != nil {
		return false, err.Error() + "."
	}
	return true, ""
}

// mayCancel says whether p may cancel runs of a runbook: the API's rule.
func (d *dashboard) mayCancel(p auth.Principal, runbook string) bool {
	rb, ok := d.runbook(runbook)
	return !ok || rb.Spec.Access.MayCancel(runbook, p.Subject, p.Groups, p.Can(auth.RoleAdmin)) == nil
}

func actorText(a domain.Actor) string {
	switch a.Kind {
	case domain.ActorAlert:
		return "alert " + a.Name
	case domain.ActorUser:
		return "launched by " + a.Name
	}
	if a.Name == "" {
		return a.Kind
	}
	return a.Kind + " " + a.Name
}

func stepRows(steps []workflows.StepStatus, runStart, runEnd, now time.Time) []stepRow {
	out := make([]stepRow, 0, len(steps))
	span := runEnd.Sub(runStart)
	for _, s := range steps {
		row := stepRow{StepStatus: s}
		if !s.StartedAt.IsZero() {
			fin := s.FinishedAt
			if fin.IsZero() {
				fin = now
			}
			row.Duration = humanDuration(fin.Sub(s.StartedAt))
			if span > 0 && !runStart.IsZero() {
				row.Bar = newSpanBar(s.StartedAt.Sub(runStart), fin.Sub(s.StartedAt), span, s.State)
			}
		}
		if len(s.Output) > 0 {
			row.Output = prettyJSON(s.Output)
		}
		out = append(out, row)
	}
	return out
}

// ---- approvals ----

type approvalsPage struct {
	Approvals []approvalRow
	Error     string
}

type approvalRow struct {
	runs.PendingApproval
	CanDecide bool
	Note      string
}

func (d *dashboard) approvals(w http.ResponseWriter, r *http.Request, v *view) {
	pg := approvalsPage{}
	v.Title, v.Nav, v.Page = "Approvals", "approvals", &pg
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	list, err := d.o.API.Runs.PendingApprovals(ctx)
	if err != nil {
		// The list may be partial (some runs did not answer): show what
		// is known, and say that it may not be all.
		pg.Error = "The list may be incomplete: " + err.Error()
		if len(list) == 0 {
			pg.Error = "Cannot list the runs waiting for approval: " + err.Error()
			d.render(w, http.StatusServiceUnavailable, "approvals", v)
			return
		}
	}
	for _, a := range list {
		row := approvalRow{PendingApproval: a}
		if v.CanOperate {
			row.CanDecide, row.Note = d.mayDecide(v.User, a.Runbook, a.LaunchedBy)
		}
		pg.Approvals = append(pg.Approvals, row)
	}
	d.render(w, http.StatusOK, "approvals", v)
}

// ---- runbooks ----

type runbookListPage struct {
	Runbooks []runbookRow
}

type runbookRow struct {
	Name, Description, Owner string
	Matchers                 []string
	Steps                    int
	Approval                 bool
	Mode                     string
	ToilMinutes              float64
	Manual                   bool
}

func (d *dashboard) runbookNames() []string {
	var out []string
	if set := d.o.API.Runbooks.Current(); set != nil {
		for _, rb := range set.All() {
			out = append(out, rb.Name())
		}
	}
	return out
}

func (d *dashboard) runbook(name string) (*runbooks.Runbook, bool) {
	set := d.o.API.Runbooks.Current()
	if set == nil {
		return nil, false
	}
	return set.Get(name)
}

func (d *dashboard) runbookList(w http.ResponseWriter, r *http.Request, v *view) {
	pg := runbookListPage{}
	v.Title, v.Nav, v.Page = "Runbooks", "runbooks", &pg
	if set := d.o.API.Runbooks.Current(); set != nil {
		for _, rb := range set.All() {
			pg.Runbooks = append(pg.Runbooks, runbookRow{Name: rb.Name(), Description: rb.Metadata.Description, Owner: rb.Metadata.Owner,
				Matchers: rb.Spec.Trigger.Matchers, Steps: len(rb.Spec.Steps), Approval: rb.NeedsApproval(), Mode: modeOf(rb),
				ToilMinutes: rb.Spec.Toil.ManualMinutes, Manual: len(rb.Spec.Trigger.Matchers) == 0})
		}
	}
	d.render(w, http.StatusOK, "runbooks", v)
}

func modeOf(rb *runbooks.Runbook) string {
	if rb.Spec.Safety.Mode == "" {
		return runbooks.ModeEnforce
	}
	return rb.Spec.Safety.Mode
}

type runbookPage struct {
	RB          *runbooks.Runbook
	Mode        string
	Params      []paramField
	Safety      []kv
	Access      []kv
	Credentials []kv
	Recent      []runs.Summary
	Stats       *runs.RunbookStats
	StatsError  string
	// Toil saved by this runbook in the last 30 days, if known.
	ToilSaved  string
	ToilRuns   int
	ToilNote   string
	CanLaunch  bool
	LaunchNote string
	Labels     map[string]string
	// Evidence is the runbook's trust evidence; EvidenceError says why it
	// is missing.
	Evidence      *trust.EvidenceAnswer
	EvidenceError string
}

type kv struct{ Key, Value string }

// paramField is one generated launch-form field.
type paramField struct {
	Name        string
	ID          string // the element id
	Type        string // string, int, bool, duration, enum
	Input       string // select, checkbox, number, text
	Description string
	Required    bool
	Default     string
	Checked     bool
	Values      []string
	Min, Max    string
	Pattern     string // HTML pattern attribute (durations)
	Hint        string // what the API will accept
	Source      string // from a label or annotation, for alert runs
}

// durationPattern is what Go's time.ParseDuration takes, for the browser's
// own check of a duration field; the API checks again.
const durationPattern = `([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+`

func paramFields(rb *runbooks.Runbook) []paramField {
	names := make([]string, 0, len(rb.Spec.Params))
	for n := range rb.Spec.Params {
		names = append(names, n)
	}
	// Required first, then by name: the form reads top-down.
	sort.Slice(names, func(i, j int) bool {
		a, b := rb.Spec.Params[names[i]], rb.Spec.Params[names[j]]
		if a.Required != b.Required {
			return a.Required
		}
		return names[i] < names[j]
	})
	var out []paramField
	for _, n := range names {
		p := rb.Spec.Params[n]
		f := paramField{Name: n, ID: "param-" + n, Type: p.Type, Description: p.Description, Required: p.Required, Default: p.Default,
			Values: p.Values, Min: p.Min, Max: p.Max}
		if f.Type == "" {
			f.Type = runbooks.ParamString
		}
		switch {
		case p.FromLabel != "":
			f.Source = "alert label " + p.FromLabel
		case p.FromAnnotation != "":
			f.Source = "alert annotation " + p.FromAnnotation
		}
		switch f.Type {
		case runbooks.ParamEnum:
			f.Input = "select"
			f.Hint = "one of " + strings.Join(p.Values, ", ")
		case runbooks.ParamBool:
			f.Input, f.Checked = "checkbox", p.Default == "true"
		case runbooks.ParamInt:
			f.Input = "number"
			f.Hint = "a whole number"
			switch {
			case p.Min != "" && p.Max != "":
				f.Hint += " from " + p.Min + " to " + p.Max
			case p.Min != "":
				f.Hint += " ≥ " + p.Min
			case p.Max != "":
				f.Hint += " ≤ " + p.Max
			}
		case runbooks.ParamDuration:
			f.Input, f.Pattern = "text", durationPattern
			f.Hint = "a duration such as 30s, 5m or 1h30m"
			if p.Min != "" {
				f.Hint += ", at least " + p.Min
			}
			if p.Max != "" {
				f.Hint += ", at most " + p.Max
			}
		default:
			f.Input = "text"
			if p.Pattern != "" {
				f.Hint = "must match " + p.Pattern
			}
		}
		out = append(out, f)
	}
	return out
}

func (d *dashboard) runbookDetail(w http.ResponseWriter, r *http.Request, v *view) {
	name := r.PathValue("name")
	v.Nav = "runbooks"
	rb, ok := d.runbook(name)
	if !ok {
		d.fail(w, v, http.StatusNotFound, "Runbook not found", fmt.Sprintf("No runbook %q is loaded (loaded: %s).", name, strings.Join(d.runbookNames(), ", ")))
		return
	}
	pg := runbookPage{RB: rb, Mode: modeOf(rb), Params: paramFields(rb), Labels: rb.Metadata.Labels}
	v.Title, v.Page = "Runbook "+rb.Name(), &pg
	sf := rb.Spec.Safety
	add := func(list *[]kv, k, val string) { *list = append(*list, kv{k, val}) }
	add(&pg.Safety, "mode", pg.Mode)
	if sf.Cooldown > 0 {
		add(&pg.Safety, "cooldown", sf.Cooldown.String())
	}
	if sf.MaxRunsPerHour > 0 {
		add(&pg.Safety, "max runs per hour", strconv.Itoa(sf.MaxRunsPerHour))
	}
	if sf.MaxConcurrent > 0 {
		add(&pg.Safety, "max concurrent runs", strconv.Itoa(sf.MaxConcurrent))
	}
	if cb := sf.CircuitBreaker; cb != nil {
		add(&pg.Safety, "circuit breaker", fmt.Sprintf("%d failures within %s (not enforced in this version)", cb.Failures, cb.Window))
	}
	if a := sf.Approval; a != nil && a.Required {
		add(&pg.Safety, "approval", approvalText(a))
	}
	if rb.Spec.Trigger.OnResolved != "" {
		add(&pg.Safety, "when the alert resolves", rb.Spec.Trigger.OnResolved)
	}
	acc := rb.Spec.Access
	if len(acc.Launchers) > 0 {
		add(&pg.Access, "launchers", strings.Join(acc.Launchers, ", "))
	}
	if len(acc.Approvers) > 0 {
		add(&pg.Access, "approvers", strings.Join(acc.Approvers, ", "))
	}
	if acc.AllowSelfApproval {
		add(&pg.Access, "self-approval", "allowed")
	}
	for _, src := range slices.Sorted(maps.Keys(rb.Spec.Credentials)) {
		c := rb.Spec.Credentials[src]
		val := "Vault role " + c.VaultRole
		if c.TTL > 0 {
			val += ", TTL " + c.TTL.String()
		}
		add(&pg.Credentials, src, val)
	}
	if v.CanOperate {
		pg.CanLaunch = acc.MayLaunch(name, v.User.Subject, v.User.Groups) == nil
		if !pg.CanLaunch {
			pg.LaunchNote = fmt.Sprintf("Only %s may launch this runbook.", strings.Join(acc.Launchers, ", "))
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	if ev, err := d.o.API.Evidence(ctx, rb); err != nil {
		pg.EvidenceError = "Evidence is unavailable: " + err.Error()
	} else {
		pg.Evidence = &ev
	}
	recent, st, err := d.o.API.Runs.Stats(ctx, rb.Name(), 100)
	if err != nil {
		pg.StatsError = "Recent runs are unavailable: " + err.Error()
	} else {
		if len(recent) > 20 {
			recent = recent[:20]
		}
		pg.Recent, pg.Stats = recent, &st
	}
	if d.o.API.Stats == nil {
		pg.ToilNote = "not available on this server"
	} else {
		now := d.now()
		rep, err := d.o.API.Stats(ctx, now.Add(-30*24*time.Hour), now)
		if err != nil {
			pg.ToilNote = "unavailable: " + err.Error()
		} else {
			pg.ToilSaved = hours(0) + " h"
			for _, t := range rep.ToilByRunbook {
				if t.Runbook == rb.Name() {
					pg.ToilSaved, pg.ToilRuns = hours(t.SavedSeconds)+" h", t.Runs
				}
			}
		}
	}
	d.render(w, http.StatusOK, "runbook", v)
}

func approvalText(a *runbooks.Approval) string {
	eff := a.Effective()
	return fmt.Sprintf("required, timeout %s, then %s", humanDuration(eff.Timeout.D()), eff.OnTimeout)
}

// ---- audit ----

type auditPage struct {
	Action, Runbook, IncidentKey, WorkflowID, Since string
	After                                           int64
	Actions                                         []string
	Records                                         []audit.Record
	Error                                           string
	NextURL                                         string
	FirstURL                                        string
	Verify                                          *audit.VerifyResult
	VerifyError                                     string
}

// auditActions are the actions people filter on, for the form's list.
var auditActions = []string{
	domain.ActionAlertAccepted, domain.ActionTriggerMatched, domain.ActionTriggerNoMatch, domain.ActionTriggerSuppressed, domain.ActionTriggerFailed, domain.ActionTriggerRetried,
	domain.ActionRunStarted, domain.ActionRunJoined, domain.ActionRunSignalled, domain.ActionRunFinished, domain.ActionRunRefused,
	domain.ActionRunLaunched, domain.ActionRunPlanned, domain.ActionRunCancelRequest,
	domain.ActionStepStarted, domain.ActionStepSucceeded, domain.ActionStepFailed, domain.ActionStepSkipped, domain.ActionStepPlanned,
	domain.ActionApprovalRequested, domain.ActionApprovalGranted, domain.ActionApprovalRejected, domain.ActionApprovalTimedOut,
	domain.ActionApprovalSkipped, domain.ActionCredentialIssued, domain.ActionCredentialRevoked, domain.ActionCredentialRevokeFailed,
	domain.ActionRunbookLoaded, domain.ActionRunbookRejected, domain.ActionRunbookRemoved, domain.ActionRunbookReload, domain.ActionAuthDenied,
}

const auditPerPage = 100

func (d *dashboard) auditLog(w http.ResponseWriter, r *http.Request, v *view) {
	q := r.URL.Query()
	pg := auditPage{Action: q.Get("action"), Runbook: q.Get("runbook"), IncidentKey: q.Get("incidentKey"), WorkflowID: q.Get("workflowId"),
		Since: q.Get("since"), Actions: auditActions}
	if _, set := q["since"]; !set {
		pg.Since = "24h"
	}
	v.Title, v.Nav, v.Page = "Audit log", "audit", &pg
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	res, err := d.o.API.Audit.Verify(ctx)
	if err != nil {
		pg.VerifyError = err.Error()
	} else {
		pg.Verify = &res
	}
	f := audit.Filter{Action: pg.Action, Runbook: pg.Runbook, IncidentKey: pg.IncidentKey, WorkflowID: pg.WorkflowID, Limit: auditPerPage}
	if pg.Since != "" {
		t, err := domain.ParseSince(pg.Since, d.now())
		if err != nil {
			pg.Error = err.Error()
			d.render(w, http.StatusBadRequest, "audit", v)
			return
		}
		f.Since = t
	}
	if a := q.Get("after"); a != "" {
		n, err := strconv.ParseInt(a, 10, 64)
		if err != nil || n < 0 {
			pg.Error = "after must be a sequence number from a previous page"
			d.render(w, http.StatusBadRequest, "audit", v)
			return
		}
		f.AfterSeq, pg.After = n, n
		fq := without(q, "after")
		fq.Set("since", pg.Since)
		pg.FirstURL = "/ui/audit?" + fq.Encode()
	}
	recs, err := d.o.API.Audit.Query(ctx, f)
	if err != nil {
		pg.Error = "Cannot read the audit store: " + err.Error()
		d.render(w, http.StatusServiceUnavailable, "audit", v)
		return
	}
	pg.Records = recs
	if len(recs) == f.Limit {
		nq := without(q, "after")
		nq.Set("since", pg.Since)
		nq.Set("after", strconv.FormatInt(recs[len(recs)-1].Seq, 10))
		pg.NextURL = "/ui/audit?" + nq.Encode()
	}
	d.render(w, http.StatusOK, "audit", v)
}

// ---- incidents ----

type incidentPage struct {
	Key      string
	Timeline timeline.Timeline
}

// incident shows an incident's timeline, built from the same records as
// GET /v1/timelines/{key}.
func (d *dashboard) incident(w http.ResponseWriter, r *http.Request, v *view) {
	key := r.PathValue("key")
	if _, k, err := domain.ParseWorkflowID(key); err == nil {
		key = k
	}
	v.Nav = "runs"
	if key == "" {
		d.fail(w, v, http.StatusNotFound, "Incident not found", "Name an incident: /ui/incidents/<incident key>.")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	tl, found, err := timeline.Load(ctx, d.o.API.Audit, key)
	if err != nil {
		d.fail(w, v, http.StatusServiceUnavailable, "Cannot read the audit log", err.Error())
		return
	}
	if !found {
		d.fail(w, v, http.StatusNotFound, "Incident not found", fmt.Sprintf("The audit log has no records of incident %q.", key))
		return
	}
	v.Title, v.Page = "Incident "+key, &incidentPage{Key: key, Timeline: tl}
	d.render(w, http.StatusOK, "incident", v)
}

// ---- helpers ----

func without(q url.Values, key string) url.Values {
	out := url.Values{}
	for k, vs := range q {
		if k != key && len(vs) > 0 && vs[0] != "" {
			out[k] = vs
		}
	}
	return out
}
