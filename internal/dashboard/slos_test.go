package dashboard_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/activities"
	"github.com/salve-sre/salve/internal/api"
	"github.com/salve-sre/salve/internal/audit"
	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/internal/runs"
	"github.com/salve-sre/salve/runbooks"
	"github.com/salve-sre/salve/slos"
	"github.com/salve-sre/salve/triggers"
)

const sloRunbook = `apiVersion: salve/v1
kind: Runbook
metadata: {name: rollback-checkout}
spec:
  trigger: {matchers: ['alertname="SLOErrorBudgetBurn"']}
  slo: {name: checkout-availability}
  toil: {manualMinutes: 90}
  steps:
    - {name: ping, action: http.request, with: {url: 'http://checkout.internal/rollback'}}
`

// hostileSLO carries markup in its free text; its burn cannot be read.
const hostileSLO = `apiVersion: openslo/v1alpha
kind: SLO
metadata: {name: hostile-slo, displayName: '<script>alert("slo")</script>'}
spec:
  service: search
  objectives:
    - ratioMetrics:
        good: {source: prometheus, queryType: promql, query: 'sum(rate(ok_total[{{.window}}]))'}
        total: {source: prometheus, queryType: promql, query: 'sum(rate(all_total[{{.window}}]))'}
      target: 0.99
  timeWindows: [{count: 28, unit: Day}]
`

// fakeBudgets is the dashboard's stand-in for Prometheus: a 5 % error
// ratio over any incident's window, and a burn with 60 % of the budget
// left. The real reads are tested in internal/api and internal/slobudget.
type fakeBudgets struct{ set map[string]*slos.SLO }

func (f fakeBudgets) Burn(_ context.Context, name string) (slos.Burn, error) {
	if name == "hostile-slo" {
		return slos.Burn{}, errors.New(`read SLO hostile-slo over 5m from Prometheus: <b>connection refused</b>`)
	}
	ratios := map[string]float64{"30d": 0.0004}
	for _, w := range []string{"5m", "30m", "1h", "2h", "6h", "1d", "3d"} {
		ratios[w] = 0.0001
	}
	return f.set[name].Evaluate(time.Now(), ratios), nil
}

func (fakeBudgets) ErrorRatioAt(context.Context, *slos.SLO, time.Duration, time.Time) (float64, bool, error) {
	return 0.05, true, nil
}

// sloRuns lists fixed runs, filtered by runbook like Temporal.
type sloRuns struct {
	api.RunService
	list []runs.Summary
}

func (f sloRuns) ListFiltered(_ context.Context, lf runs.ListFilter, _ int, _ []byte) ([]runs.Summary, []byte, error) {
	var out []runs.Summary
	for _, r := range f.list {
		if r.Runbook == lf.Runbook && !r.StartTime.Before(lf.Since) {
			out = append(out, r)
		}
	}
	return out, nil, nil
}

// withSLOs loads checkout-availability (99.9 %, 30 days) and hostile-slo,
// and two runs alerts started of rollback-checkout: A succeeded after 30
// min (10 h ago), B failed after 10 min (5 h ago).
func withSLOs(t *testing.T, fx *fixture, budgets bool) {
	t.Helper()
	data, err := os.ReadFile("../../slos/checkout-availability.yaml")
	require.NoError(t, err)
	checkout, err := slos.Parse("slos/checkout-availability.yaml", data)
	require.NoError(t, err)
	hostile, err := slos.Parse("slos/hostile.yaml", []byte(hostileSLO))
	require.NoError(t, err)
	set := map[string]*slos.SLO{checkout.Name(): checkout, hostile.Name(): hostile}
	fx.srv.SLOs = func() map[string]*slos.SLO { return set }
	if budgets {
		fx.srv.Budgets = fakeBudgets{set: set}
	}

	reg, err := activities.NewRegistry()
	require.NoError(t, err)
	rb, err := runbooks.Parse("runbooks/rollback-checkout.yaml", []byte(sloRunbook), reg)
	require.NoError(t, err)
	rbs := append(fx.srv.Runbooks.Current().All(), rb)
	rset, err := runbooks.NewSet(rbs...)
	require.NoError(t, err)
	fx.srv.Runbooks = triggers.StaticRunbooks{Set: rset}

	now := time.Now().UTC().Truncate(time.Minute)
	a := runs.Summary{WorkflowID: "salve/rollback-checkout/checkout", RunID: "run-a", Runbook: "rollback-checkout", IncidentKey: "checkout",
		Status: runs.StatusSucceeded, StartTime: now.Add(-10 * time.Hour), CloseTime: now.Add(-10*time.Hour + 30*time.Minute)}
	b := runs.Summary{WorkflowID: "salve/rollback-checkout/checkout", RunID: "run-b", Runbook: "rollback-checkout", IncidentKey: "checkout",
		Status: runs.StatusFailed, StartTime: now.Add(-5 * time.Hour), CloseTime: now.Add(-5*time.Hour + 10*time.Minute)}
	fx.srv.Runs = sloRuns{RunService: fx.srv.Runs, list: []runs.Summary{b, a}}
	fx.audit.mu.Lock()
	defer fx.audit.mu.Unlock()
	for _, r := range []runs.Summary{a, b} {
		fx.audit.recs = append(fx.audit.recs, audit.Record{Seq: int64(len(fx.audit.recs) + 1), Event: domain.AuditEvent{
			ID: "trigger/" + r.RunID, Time: r.StartTime, Action: domain.ActionTriggerMatched, Outcome: "started", Runbook: r.Runbook,
			WorkflowID: r.WorkflowID, RunID: r.RunID, IncidentKey: r.IncidentKey, Actor: domain.Actor{Kind: domain.ActorSystem, Name: "trigger"}}})
	}
}

func TestSLOListPage(t *testing.T) {
	fx := newFixture(t)
	withSLOs(t, fx, true)
	rec := fx.get(t, "/ui/slos", fx.tok.viewer)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	body := rec.Body.String()
	require.Contains(t, body, `<a href="/ui/slos" class="active" aria-current="page">SLOs</a>`)
	require.Contains(t, body, `<a href="/ui/slos/checkout-availability"><strong>checkout-availability</strong></a>`)
	require.Contains(t, body, `<td class="num">99.9 %</td>`)
	require.Contains(t, body, `<td class="num">60 % (0.6)</td>`, "budget left: 1 − 0.0004/0.001")
	require.Contains(t, body, `<td class="num">0.1</td>`, "burn rate 0.0001/0.001")
	require.Contains(t, body, `<a href="/ui/runbooks/rollback-checkout">rollback-checkout</a>`)
	require.Contains(t, body, "burn not read: read SLO hostile-slo over 5m from Prometheus: &lt;b&gt;connection refused&lt;/b&gt;")
	require.NotContains(t, body, `<script>alert("slo")`)
	require.Contains(t, body, `&lt;script&gt;alert(&#34;slo&#34;)&lt;/script&gt;`)
}

func TestSLOListPageWithoutPrometheus(t *testing.T) {
	fx := newFixture(t)
	withSLOs(t, fx, false)
	rec := fx.get(t, "/ui/slos", fx.tok.viewer)
	require.Equal(t, http.StatusOK, rec.Code)
	require.Equal(t, 2, strings.Count(rec.Body.String(), "burn not read: no Prometheus configured (--prometheus-url)"))
}

// The page's figures, by hand: burn rate 0.05/0.001 = 50; A consumed
// 50 × 30/43200 = 0.034722, B 50 × 10/43200 = 0.011574, together
// 0.046296; A saved 50 × (90 − 30)/43200 = 0.069444; MTTR (30 + 10)/2 =
// 20 min; MTBF 5 h.
func TestSLODetailPage(t *testing.T) {
	fx := newFixture(t)
	withSLOs(t, fx, true)
	rec := fx.get(t, "/ui/slos/checkout-availability", fx.tok.viewer)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	body := rec.Body.String()
	for _, want := range []string{
		`<strong id="slo-budget-left">60 % (0.6)</strong>`,
		`<div class="kpi-value" id="slo-consumed">4.63 % (0.046296)</div>`,
		`summed over 2 incidents read from Prometheus`,
		`<div class="kpi-value" id="slo-saved">6.944 % (0.069444)</div>`,
		`over 1 remediated incidents`,
		`<div class="kpi-value" id="slo-mttr">20m 00s</div>`,
		`(1200 s)`,
		`<div class="kpi-value" id="slo-mtbf">5h 00m</div>`,
		`(18000 s)`,
		`<td class="num">3.472 % (0.034722)</td>`,
		`<td class="num">1.157 % (0.011574)</td>`,
		`<td class="num">50</td>`,
		`budget consumed = burn rate × d / period (30 d = 43200 min)`,
		`burn rate = error ratio / error budget (0.001)`,
		`<a href="/ui/runs/salve%2Frollback-checkout%2Fcheckout?runId=run-a"`,
	} {
		require.Contains(t, body, want)
	}
	// The method is written on the page, escaped like everything else.
	require.Contains(t, body, `<strong>Budget saved, method:</strong> Estimate. For each run that an alert started and that succeeded and acted: saved = burnRate × max(0, manual − d) / period`)
	require.Contains(t, body, `<p id="slo-manual-mttr"><strong>Manual MTTR of the same alerts:</strong> not measured`)
}

func TestSLODetailPageErrors(t *testing.T) {
	fx := newFixture(t)
	withSLOs(t, fx, false)

	rec := fx.get(t, "/ui/slos/checkout-availability", fx.tok.viewer)
	require.Equal(t, http.StatusOK, rec.Code)
	require.Contains(t, rec.Body.String(), `Budget figures not read: no Prometheus configured (--prometheus-url)`)
	require.Contains(t, rec.Body.String(), `<div class="kpi-value" id="slo-mttr">20m 00s</div>`, "MTTR needs no Prometheus")

	rec = fx.get(t, "/ui/slos/nope", fx.tok.viewer)
	require.Equal(t, http.StatusNotFound, rec.Code)
	require.Contains(t, rec.Body.String(), "unknown SLO &#34;nope&#34; (loaded: checkout-availability, hostile-slo)")

	rec = fx.get(t, "/ui/slos/checkout-availability?since=lately", fx.tok.viewer)
	require.Equal(t, http.StatusBadRequest, rec.Code)

	rec = fx.get(t, "/ui/slos/checkout-availability", "")
	require.Equal(t, http.StatusSeeOther, rec.Code, "signed out: to the login")

	fx.audit.err = errors.New("database is locked")
	rec = fx.get(t, "/ui/slos/checkout-availability", fx.tok.viewer)
	require.Equal(t, http.StatusServiceUnavailable, rec.Code)
	require.Contains(t, rec.Body.String(), "cannot read the audit store")
}
