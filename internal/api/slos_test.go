package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/internal/api"
	"github.com/salve-sre/salve/internal/audit"
	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/internal/runs"
	"github.com/salve-sre/salve/internal/slobudget"
	"github.com/salve-sre/salve/runbooks"
	"github.com/salve-sre/salve/slos"
	"github.com/salve-sre/salve/triggers"
)

// Two runbooks name checkout-availability (99.9 %, 30 days): one with the
// time its fix takes by hand, one without.
const (
	rollbackRunbook = `apiVersion: salve/v1
kind: Runbook
metadata: {name: rollback-checkout}
spec:
  trigger: {matchers: ['alertname="SLOErrorBudgetBurn"']}
  slo: {name: checkout-availability}
  toil: {manualMinutes: 90}
  steps:
    - {name: ping, action: http.request, with: {url: 'http://checkout.internal/rollback'}}
`
	scaleRunbook = `apiVersion: salve/v1
kind: Runbook
metadata: {name: scale-checkout}
spec:
  trigger: {matchers: ['alertname="SLOErrorBudgetBurn"']}
  slo: {name: checkout-availability}
  steps:
    - {name: ping, action: http.request, with: {url: 'http://checkout.internal/scale'}}
`
	// latencySLO is a second SLO of another service, whose reads fail.
	latencySLO = `apiVersion: openslo/v1alpha
kind: SLO
metadata: {name: search-latency}
spec:
  service: search
  objectives:
    - ratioMetrics:
        good: {source: prometheus, queryType: promql, query: 'sum(rate(search_fast_total[{{.window}}]))'}
        total: {source: prometheus, queryType: promql, query: 'sum(rate(search_total[{{.window}}]))'}
      target: 0.99
  timeWindows: [{count: 28, unit: Day}]
`
)

// sloRuns answers run lists from a fixed list, filtered like Temporal.
type sloRuns struct {
	api.RunService
	list []runs.Summary
}

func (f *sloRuns) ListFiltered(_ context.Context, lf runs.ListFilter, _ int, _ []byte) ([]runs.Summary, []byte, error) {
	var out []runs.Summary
	for _, r := range f.list {
		if (lf.Runbook == "" || r.Runbook == lf.Runbook) && !r.StartTime.Before(lf.Since) {
			out = append(out, r)
		}
	}
	return out, nil, nil
}

// promCall is one query the fake Prometheus received.
type promCall struct {
	Query string
	Time  time.Time
}

// fakeProm answers /api/v1/query with the error ratio ratios gives for the
// query's window; "" = an empty vector; "error" = Prometheus refuses it.
type fakeProm struct {
	mu    sync.Mutex
	calls []promCall
}

func (p *fakeProm) start(t testing.TB, ratio func(query string) string) *httptest.Server {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/query" || r.ParseForm() != nil {
			http.NotFound(w, r)
			return
		}
		q := r.Form.Get("query")
		var sec float64
		_, _ = fmt.Sscan(r.Form.Get("time"), &sec)
		p.mu.Lock()
		p.calls = append(p.calls, promCall{q, time.Unix(0, int64(sec*1e9)).UTC()})
		p.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch v := ratio(q); v {
		case "":
			fmt.Fprint(w, `{"status":"success","data":{"resultType":"vector","result":[]}}`)
		case "error":
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"status":"error","errorType":"bad_data","error":"parse error: unexpected character"}`)
		default:
			fmt.Fprintf(w, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[%d,"%s"]}]}}`, time.Now().Unix(), v)
		}
	}))
	t.Cleanup(ts.Close)
	return ts
}

func (p *fakeProm) received() []promCall {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]promCall(nil), p.calls...)
}

// sloWorld is the fixture's SLO setup: SLOs, runbooks naming them, runs
// and the trigger records of the runs alerts started.
type sloWorld struct {
	now        time.Time
	checkout   *slos.SLO
	prom       *fakeProm
	runs       *sloRuns
	a, b, d, e runs.Summary // the incidents (see withSLOs)
}

func parseSLO(t testing.TB, name, src string) *slos.SLO {
	t.Helper()
	s, err := slos.Parse(name, []byte(src))
	require.NoError(t, err)
	return s
}

// withSLOs gives the fixture checkout-availability and search-latency, a
// fake Prometheus, and these runs (now = the minute the test started):
//
//	A rollback-checkout  alert  succeeded  now−10h, 30 min     error ratio over 30m: 5 %
//	B rollback-checkout  alert  failed     now−5h,  9 min 30 s error ratio over 10m: 0.2 %
//	C rollback-checkout  manual succeeded  now−3h,  20 min     (not an incident)
//	D rollback-checkout  alert  running    since now−1h
//	E scale-checkout     alert  succeeded  now−20h, 15 min     error ratio over 15m: 1 %
//	F rollback-checkout  alert  succeeded  now−40d             (before the period)
func withSLOs(t testing.TB, fx *fixture, prometheus bool) *sloWorld {
	t.Helper()
	data, err := os.ReadFile("../../slos/checkout-availability.yaml")
	require.NoError(t, err)
	w := &sloWorld{now: time.Now().UTC().Truncate(time.Minute), checkout: parseSLO(t, "slos/checkout-availability.yaml", string(data)), prom: &fakeProm{}}
	latency := parseSLO(t, "slos/search-latency.yaml", latencySLO)
	set := map[string]*slos.SLO{w.checkout.Name(): w.checkout, latency.Name(): latency}
	fx.srv.SLOs = func() map[string]*slos.SLO { return set }

	cat, base, err := loadRunbooks()
	require.NoError(t, err)
	rbs := base.All()
	for name, src := range map[string]string{"rollback-checkout.yaml": rollbackRunbook, "scale-checkout.yaml": scaleRunbook} {
		rb, err := runbooks.Parse("runbooks/"+name, []byte(src), cat)
		require.NoError(t, err)
		rbs = append(rbs, rb)
	}
	rset, err := runbooks.NewSet(rbs...)
	require.NoError(t, err)
	fx.srv.Runbooks = triggers.StaticRunbooks{Set: rset}

	at := func(h time.Duration) time.Time { return w.now.Add(-h) }
	run := func(rb, id, status string, start time.Time, d time.Duration) runs.Summary {
		s := runs.Summary{WorkflowID: domain.WorkflowID(rb, id), RunID: "run-" + id, Runbook: rb, IncidentKey: id, Status: status, StartTime: start}
		if d > 0 {
			s.CloseTime = start.Add(d)
		}
		return s
	}
	w.a = run("rollback-checkout", "a", runs.StatusSucceeded, at(10*time.Hour), 30*time.Minute)
	w.b = run("rollback-checkout", "b", runs.StatusFailed, at(5*time.Hour), 9*time.Minute+30*time.Second)
	c := run("rollback-checkout", "c", runs.StatusSucceeded, at(3*time.Hour), 20*time.Minute)
	w.d = run("rollback-checkout", "d", runs.StatusRunning, at(time.Hour), 0)
	w.e = run("scale-checkout", "e", runs.StatusSucceeded, at(20*time.Hour), 15*time.Minute)
	f := run("rollback-checkout", "f", runs.StatusSucceeded, at(40*24*time.Hour), 10*time.Minute)
	w.runs = &sloRuns{RunService: fx.srv.Runs, list: []runs.Summary{w.d, c, w.b, w.a, w.e, f}}
	fx.srv.Runs = w.runs
	for _, r := range []runs.Summary{w.a, w.b, w.d, w.e, f} {
		addTriggerMatched(fx, r)
	}

	if prometheus {
		ts := w.prom.start(t, func(q string) string {
			switch {
			case strings.Contains(q, "search_"):
				return "error"
			case strings.Contains(q, "[30m]"):
				return "0.05"
			case strings.Contains(q, "[10m]"):
				return "0.002"
			case strings.Contains(q, "[15m]"):
				return "0.01"
			case strings.Contains(q, "[30d]"):
				return "0.0004"
			}
			return "0.0001"
		})
		r, err := slobudget.New(ts.URL, fx.srv.SLOs)
		require.NoError(t, err)
		fx.srv.Budgets = r
	}
	return w
}

func addTriggerMatched(fx *fixture, r runs.Summary) {
	fx.audit.mu.Lock()
	defer fx.audit.mu.Unlock()
	seq := int64(len(fx.audit.recs) + 1)
	fx.audit.recs = append(fx.audit.recs, audit.Record{Seq: seq, Event: domain.AuditEvent{
		ID: "trigger/" + r.RunID, Time: r.StartTime, Action: domain.ActionTriggerMatched, Outcome: "started",
		Actor: domain.Actor{Kind: domain.ActorSystem, Name: "trigger"}, Runbook: r.Runbook, WorkflowID: r.WorkflowID, RunID: r.RunID,
		IncidentKey: r.IncidentKey, Detail: map[string]string{"slo": "checkout-availability"}}})
}

func getJSON[T any](t *testing.T, fx *fixture, path string) T {
	t.Helper()
	rec := fx.do(request{method: http.MethodGet, path: path, token: fx.tok.viewer})
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	var v T
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &v), rec.Body.String())
	return v
}

// The figures, computed by hand for the runs of withSLOs (30 days =
// 43200 min, error budget 0.001):
//
//	A: burn 0.05/0.001 = 50; consumed 50 × 30/43200 = 0.0347222;
//	   saved 50 × (90 − 30)/43200 = 0.0694444
//	B: d = 9 min 30 s → 10 min; burn 2; consumed 2 × 10/43200 = 0.000462963
//	E: burn 10; consumed 10 × 15/43200 = 0.00347222; no manualMinutes
//	total consumed (1500 + 20 + 150)/43200 = 0.0386574
//	MTTR over A, B, E: (1800 + 570 + 900)/3 = 1090 s
//	MTBF over the starts of E, A, B, D: 19 h / 3 = 22800 s
func TestSLODetailFigures(t *testing.T) {
	fx := newFixture(t)
	w := withSLOs(t, fx, true)
	rep := getJSON[api.SLODetail](t, fx, "/v1/slos/checkout-availability")

	require.Equal(t, "checkout", rep.Service)
	require.Equal(t, 0.999, rep.Objective)
	require.Equal(t, 30, rep.PeriodDays)
	require.Equal(t, []string{"rollback-checkout", "scale-checkout"}, rep.Runbooks)
	require.WithinDuration(t, w.now.Add(-30*24*time.Hour), rep.From, 2*time.Minute, "default window: the period")
	require.NotNil(t, rep.Burn)
	require.InDelta(t, 0.6, *rep.Burn.BudgetRemaining, 1e-9, "1 − 0.0004/0.001")

	var ids []string
	for _, in := range rep.Incidents {
		ids = append(ids, in.RunID)
	}
	require.Equal(t, []string{"run-d", "run-b", "run-a", "run-e"}, ids, "alert-started runs in the period, newest first; no manual launch")
	byID := map[string]api.SLOIncident{}
	for _, in := range rep.Incidents {
		byID[in.RunID] = in
	}
	a, b, d, e := byID["run-a"], byID["run-b"], byID["run-d"], byID["run-e"]
	require.Equal(t, 30, a.WindowMinutes)
	require.InDelta(t, 1800, *a.DurationSeconds, 1e-9)
	require.InDelta(t, 0.05, *a.ErrorRatio, 1e-12)
	require.InDelta(t, 50, *a.BurnRate, 1e-9)
	require.InDelta(t, 0.0347222, *a.BudgetConsumed, 1e-7)
	require.InDelta(t, 0.0694444, *a.BudgetSaved, 1e-7)
	require.Equal(t, 10, b.WindowMinutes, "9 min 30 s rounds up to 10 min")
	require.InDelta(t, 0.000462963, *b.BudgetConsumed, 1e-9)
	require.Nil(t, b.BudgetSaved, "a failed run saved nothing")
	require.Nil(t, d.DurationSeconds)
	require.Nil(t, d.BudgetConsumed)
	require.Contains(t, d.Note, "still running")
	require.InDelta(t, 0.00347222, *e.BudgetConsumed, 1e-8)
	require.Nil(t, e.BudgetSaved)

	require.Equal(t, 3, rep.Queried)
	require.Equal(t, 3, rep.ConsumedIncidents)
	require.InDelta(t, 1670.0/43200, rep.BudgetConsumed, 1e-12)
	require.Empty(t, rep.Capped)
	require.Empty(t, rep.BudgetError)

	require.Equal(t, api.SavedMethod, rep.Saved.Method)
	require.InDelta(t, 3000.0/43200, rep.Saved.Total, 1e-12)
	require.Equal(t, 1, rep.Saved.Incidents)
	require.Equal(t, []string{
		"runbook scale-checkout: 1 remediated incidents not counted: no occurrence of the same alerts resolved without Salve in the window, and the runbook has no spec.toil.manualMinutes (set how many minutes the fix takes by hand)",
		"no occurrence of the same alerts resolved without Salve in the window: the runbooks' toil.manualMinutes stand in for the manual MTTR",
	}, rep.Saved.Skipped)
	require.Nil(t, rep.Saved.ManualMTTRSeconds)

	rel := rep.Reliability
	require.Equal(t, "checkout", rel.Service)
	require.Equal(t, []string{"checkout-availability"}, rel.SLOs)
	require.Equal(t, 4, rel.Incidents)
	require.Equal(t, 3, rel.Closed)
	require.InDelta(t, 1090, *rel.MTTRSeconds, 1e-9)
	require.InDelta(t, 22800, *rel.MTBFSeconds, 1e-9)
	require.Contains(t, rep.Units["budgetConsumed"], "share of the period's error budget")

	// Each incident was read once, over its own window ending at its end,
	// with the SLO file's query and nothing else.
	for _, in := range []runs.Summary{w.a, w.b, w.e} {
		win := slobudget.Window(in.CloseTime.Sub(in.StartTime))
		want := promCall{Query: w.checkout.ErrorRatioQuery(win), Time: in.CloseTime}
		require.Contains(t, w.prom.received(), want, "incident %s", in.RunID)
	}
	require.NotContains(t, w.prom.received(), promCall{Query: w.checkout.ErrorRatioQuery(time.Hour), Time: w.d.StartTime.Add(time.Hour)}, "a running incident is not read")
}

func TestSLODetailSinceNarrowsTheWindow(t *testing.T) {
	fx := newFixture(t)
	withSLOs(t, fx, true)
	rep := getJSON[api.SLODetail](t, fx, "/v1/slos/checkout-availability?since=6h")
	require.Len(t, rep.Incidents, 2, "B and D started in the last 6 hours")
	require.InDelta(t, 20.0/43200, rep.BudgetConsumed, 1e-12)
	require.Equal(t, 2, rep.Reliability.Incidents)
	require.InDelta(t, 4*3600, *rep.Reliability.MTBFSeconds, 1e-9)
	require.Zero(t, rep.Saved.Incidents)
}

func TestSLOWithoutPrometheus(t *testing.T) {
	fx := newFixture(t)
	withSLOs(t, fx, false)
	list := getJSON[struct{ SLOs []api.SLOItem }](t, fx, "/v1/slos")
	require.Len(t, list.SLOs, 2)
	for _, it := range list.SLOs {
		require.Nil(t, it.Burn)
		require.Equal(t, "no Prometheus configured (--prometheus-url)", it.BurnError)
	}
	rep := getJSON[api.SLODetail](t, fx, "/v1/slos/checkout-availability")
	require.Equal(t, api.NoPrometheus, rep.BudgetError)
	require.Len(t, rep.Incidents, 4, "incidents come from runs, not from Prometheus")
	require.Zero(t, rep.Queried)
	require.Contains(t, rep.Incidents[1].Note, "not read: no Prometheus configured")
	require.InDelta(t, 1090, *rep.Reliability.MTTRSeconds, 1e-9, "MTTR and MTBF need no Prometheus")
	require.Equal(t, []string{"2 remediated incidents not counted: their error ratio was not read (see each incident's note)"}, rep.Saved.Skipped)
}

// One SLO's failed read never fails the list.
func TestSLOListKeepsGoingWhenOneReadFails(t *testing.T) {
	fx := newFixture(t)
	withSLOs(t, fx, true)
	list := getJSON[struct {
		SLOs  []api.SLOItem
		Units map[string]string
	}](t, fx, "/v1/slos")
	require.Len(t, list.SLOs, 2)
	ok, bad := list.SLOs[0], list.SLOs[1]
	require.Equal(t, "checkout-availability", ok.Name)
	require.Empty(t, ok.BurnError)
	require.Equal(t, "none", ok.Burn.Speed)
	require.InDelta(t, 50, ok.Burn.BurnRate["30m"], 1e-9)
	require.Equal(t, "search-latency", bad.Name)
	require.Nil(t, bad.Burn)
	require.Contains(t, bad.BurnError, "read SLO search-latency from Prometheus: over 5m: bad_data")
	require.Contains(t, bad.BurnError, "parse error")
	require.Equal(t, []string{}, bad.Runbooks)
	require.Equal(t, "days", list.Units["periodDays"])
}

// At most 200 incidents are read from Prometheus, the newest; the answer
// says so.
func TestSLODetailCapsPrometheusQueries(t *testing.T) {
	fx := newFixture(t)
	w := withSLOs(t, fx, true)
	w.runs.list = nil
	for i := range 205 {
		start := w.now.Add(-time.Duration(i+2) * time.Hour)
		r := runs.Summary{WorkflowID: fmt.Sprintf("salve/rollback-checkout/i%d", i), RunID: fmt.Sprintf("cap-%d", i), Runbook: "rollback-checkout",
			IncidentKey: fmt.Sprintf("i%d", i), Status: runs.StatusFailed, StartTime: start, CloseTime: start.Add(30 * time.Minute)}
		w.runs.list = append(w.runs.list, r)
		addTriggerMatched(fx, r)
	}
	rep := getJSON[api.SLODetail](t, fx, "/v1/slos/checkout-availability")
	require.Len(t, rep.Incidents, 205)
	require.Equal(t, 200, rep.Queried)
	require.Equal(t, 200, rep.ConsumedIncidents)
	require.Contains(t, rep.Capped, "the newest 200 of 205 ended incidents")
	require.NotNil(t, rep.Incidents[199].BudgetConsumed)
	require.Nil(t, rep.Incidents[200].BudgetConsumed, "the oldest are not read")
	require.Contains(t, rep.Incidents[204].Note, "only the newest 200")
	incidentQueries := 0
	for _, c := range w.prom.received() {
		if c.Time.Before(w.now.Add(-time.Minute)) {
			incidentQueries++ // burn reads are at the request's time
		}
	}
	require.Equal(t, 200, incidentQueries)
}

func TestSLOUnknown(t *testing.T) {
	fx := newFixture(t)
	withSLOs(t, fx, true)
	rec := fx.do(request{method: http.MethodGet, path: "/v1/slos/checkout", token: fx.tok.viewer})
	require.Equal(t, http.StatusNotFound, rec.Code)
	require.Contains(t, rec.Body.String(), `unknown SLO \"checkout\" (loaded: checkout-availability, search-latency)`)
}

// A dry-run launch's plan says the runbook's SLO policy, the burn now and
// what a run an alert started now would do.
func TestLaunchPlanShowsTheSLO(t *testing.T) {
	fx := newFixture(t)
	withSLOs(t, fx, true)
	rec := fx.do(request{method: http.MethodPost, path: "/v1/runbooks/rollback-checkout/launch", token: fx.tok.operator,
		body: `{"dryRun":true,"reason":"what would it do?"}`})
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	var res runs.LaunchResult
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &res))
	require.NotNil(t, res.Plan.SLO)
	require.Equal(t, "checkout-availability", res.Plan.SLO.Name)
	require.True(t, strings.HasPrefix(res.Plan.SLO.Now, "SLO checkout-availability: none burn ("), res.Plan.SLO.Now)
	require.Contains(t, res.Plan.SLO.Now, "60.0% of the budget left") // 1 − 0.0004/0.001
	require.Equal(t, "notify", res.Plan.SLO.AlertRun)
	var policy string
	for _, c := range res.Plan.Safety {
		if c.Name == "slo" {
			policy = c.Setting
		}
	}
	require.Equal(t, "checkout-availability: fast burn → act, slow burn → approve, otherwise → notify, burn unknown → approve (alert-triggered runs; not manual launches)", policy)
}

// A run that acted on nothing (the SLO policy's notify, a dry run) is no
// remediation: it saves no budget and is not repair time in MTTR; the
// budget its incident consumed still counts.
func TestSLOPlanOnlyRunsAreNotRemediations(t *testing.T) {
	fx := newFixture(t)
	w := withSLOs(t, fx, true)
	g := runs.Summary{WorkflowID: domain.WorkflowID("rollback-checkout", "g"), RunID: "run-g", Runbook: "rollback-checkout", IncidentKey: "g",
		Status: runs.StatusSucceeded, StartTime: w.now.Add(-2 * time.Hour), CloseTime: w.now.Add(-2*time.Hour + 30*time.Minute)}
	w.runs.list = append([]runs.Summary{g}, w.runs.list...)
	addTriggerMatched(fx, g)
	fx.audit.mu.Lock()
	fx.audit.recs[len(fx.audit.recs)-1].Event.Detail["sloAction"] = "notify"
	fx.audit.mu.Unlock()

	rep := getJSON[api.SLODetail](t, fx, "/v1/slos/checkout-availability")
	var plan *api.SLOIncident
	for i := range rep.Incidents {
		if rep.Incidents[i].RunID == "run-g" {
			plan = &rep.Incidents[i]
		}
	}
	require.NotNil(t, plan)
	require.True(t, plan.PlanOnly)
	require.Nil(t, plan.BudgetSaved)
	require.NotNil(t, plan.BudgetConsumed, "the incident still consumed budget")
	require.InDelta(t, 0.0694444, rep.Saved.Total, 1e-7, "only run A saved budget, as without G")
	require.Equal(t, 1, rep.Saved.Incidents)
	require.InDelta(t, 1090, *rep.Reliability.MTTRSeconds, 1e-9, "MTTR of A, B and E, as without G")
	require.Equal(t, 5, rep.Reliability.Incidents, "G is an incident all the same")
}

// The budget saved is measured against the manual MTTR of the same
// alerts: the occurrences of the incidents' alertnames, of this SLO, that
// resolved without a Salve run acting on them.
func TestSLOSavedAgainstTheSameAlertsManualMTTR(t *testing.T) {
	fx := newFixture(t)
	w := withSLOs(t, fx, true)
	burn := map[string]string{"alertname": "SLOErrorBudgetBurn", "salve_slo": "checkout-availability"}
	occ := func(fp string, start time.Time, d time.Duration, labels map[string]string) audit.AlertState {
		a := audit.AlertState{Fingerprint: fp, Alertname: "SLOErrorBudgetBurn", Labels: labels, StartsAt: start, ReceivedAt: start}
		if d > 0 {
			a.ResolvedAt = start.Add(d)
		}
		return a
	}
	// A's and E's own alerts (Salve acted on both: not manual).
	aStart, eStart := w.a.StartTime.Add(-time.Minute), w.e.StartTime.Add(-time.Minute)
	fx.audit.mu.Lock()
	for i, r := range fx.audit.recs {
		switch r.Event.RunID {
		case w.a.RunID:
			fx.audit.recs[i].Event.Detail["alertname"] = "SLOErrorBudgetBurn"
			fx.audit.recs[i].Event.Detail["alertId"] = domain.AlertEventID("00000000000000aa", "firing", aStart)
		case w.e.RunID:
			fx.audit.recs[i].Event.Detail["alertname"] = "SLOErrorBudgetBurn"
			fx.audit.recs[i].Event.Detail["alertId"] = domain.AlertEventID("00000000000000ee", "firing", eStart)
		}
	}
	other := map[string]string{"alertname": "SLOErrorBudgetBurn", "salve_slo": "search-latency"}
	fx.audit.alerts = []audit.AlertState{
		occ("00000000000000aa", aStart, 32*time.Minute, burn),                   // A's: acted on
		occ("00000000000000ee", eStart, 17*time.Minute, burn),                   // E's: acted on
		occ("0000000000000001", w.now.Add(-30*time.Hour), 40*time.Minute, burn), // manual
		occ("0000000000000002", w.now.Add(-8*time.Hour), 80*time.Minute, burn),  // manual
		occ("0000000000000003", w.now.Add(-7*time.Hour), 10*time.Minute, other), // another SLO's
		occ("0000000000000004", w.now.Add(-time.Hour), 0, burn),                 // still firing
	}
	fx.audit.mu.Unlock()

	rep := getJSON[api.SLODetail](t, fx, "/v1/slos/checkout-availability")
	require.Equal(t, []string{"SLOErrorBudgetBurn"}, rep.Saved.Alertnames)
	require.Equal(t, 2, rep.Saved.ManualOccurrences)
	require.NotNil(t, rep.Saved.ManualMTTRSeconds)
	require.InDelta(t, 3600, *rep.Saved.ManualMTTRSeconds, 1e-9, "(40 + 80) / 2 minutes")
	// A: 50 × (60 − 30) / 43,200; E (no toil.manualMinutes, now counted):
	// 10 × (60 − 15) / 43,200.
	require.InDelta(t, 1950.0/43200, rep.Saved.Total, 1e-12)
	require.Equal(t, 2, rep.Saved.Incidents)
	require.Empty(t, rep.Saved.Skipped)
}
