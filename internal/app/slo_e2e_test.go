package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/internal/api"
	"github.com/salve-sre/salve/internal/app"
	"github.com/salve-sre/salve/internal/audit"
	"github.com/salve-sre/salve/internal/testenv"
	"github.com/salve-sre/salve/slos"
)

// sloService is one service behind an SLO in this test: 1,000 requests a
// minute, of which errPerMin fail during the last burnFor (none before).
type sloService struct {
	svc       string
	errPerMin float64
	burnFor   time.Duration
}

const (
	reqPerMin  = 1000.0
	sloHistory = 7 * 24 * time.Hour // backfilled, 1 sample a minute
)

// counters are the service's good and bad request counts at t, given the
// history ends (and the live target starts) at end.
func (s sloService) counters(t, end time.Time) (good, bad float64) {
	start := end.Add(-sloHistory)
	mins := t.Sub(start).Minutes()
	burnStart := end.Add(-s.burnFor)
	burning := math.Max(0, t.Sub(burnStart).Minutes())
	bad = s.errPerMin * burning
	good = reqPerMin*mins - bad
	return good, bad
}

func sloFile(name, svc string) string {
	return fmt.Sprintf(`apiVersion: openslo/v1alpha
kind: SLO
metadata: {name: %s}
spec:
  service: shop
  objectives:
    - ratioMetrics:
        good: {source: prometheus, queryType: promql, query: 'sum(rate(http_requests_total{svc="%s",code="200"}[{{.window}}]))'}
        total: {source: prometheus, queryType: promql, query: 'sum(rate(http_requests_total{svc="%s"}[{{.window}}]))'}
      target: 0.999
  timeWindows: [{count: 30, unit: Day}]
`, name, svc, svc)
}

func sloRunbook(name, slo, severity, url string) string {
	return fmt.Sprintf(`apiVersion: salve/v1
kind: Runbook
metadata: {name: %s}
spec:
  trigger:
    matchers: ['alertname="SLOErrorBudgetBurn"', 'salve_slo="%s"', 'sloth_severity="%s"']
    incidentKey: '{{ .Labels.salve_slo }}'
  slo: {name: %s}
  steps:
    - {name: fix, action: http.request, with: {url: '%s/%s', method: POST}}
`, name, slo, severity, slo, url, name)
}

// From SLO to remediation against a real Prometheus and Alertmanager: the
// generated rules load and evaluate; a fast burn (5 % errors for 2 h of a
// 99.9 % SLO) fires the page alert, Alertmanager delivers it and the
// runbook acts; a slow burn (0.4 % for 20 h) fires only the ticket, and the
// runbook's run waits for a person. The burn rates and budget the
// decisions used match a hand computation from the same series.
func TestSLOBurnDrivesRemediation(t *testing.T) {
	began := time.Now()
	fast := sloService{svc: "fast", errPerMin: 50, burnFor: 2 * time.Hour}
	slow := sloService{svc: "slow", errPerMin: 4, burnFor: 20 * time.Hour}
	services := []sloService{fast, slow}

	// History, backfilled, ending a minute ago; the live target carries
	// the same counters on.
	end := time.Now().Add(-time.Minute).Truncate(time.Minute)
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		fmt.Fprintln(w, "# TYPE http_requests_total counter")
		for _, s := range services {
			good, bad := s.counters(now, end)
			fmt.Fprintf(w, "http_requests_total{svc=%q,code=\"200\"} %f\nhttp_requests_total{svc=%q,code=\"500\"} %f\n", s.svc, good, s.svc, bad)
		}
	}))
	t.Cleanup(target.Close)
	// The history is the target's own series, with the labels Prometheus
	// gives what it scrapes, so the scraped samples carry them on.
	instance := strings.TrimPrefix(target.URL, "http://")
	var om bytes.Buffer
	om.WriteString("# TYPE http_requests counter\n")
	for _, s := range services {
		for _, code := range []string{"200", "500"} {
			for ts := end.Add(-sloHistory); !ts.After(end); ts = ts.Add(time.Minute) {
				good, bad := s.counters(ts, end)
				v := good
				if code == "500" {
					v = bad
				}
				fmt.Fprintf(&om, "http_requests_total{svc=%q,code=%q,job=\"test\",instance=%q} %s %d\n", s.svc, code, instance, strconv.FormatFloat(v, 'f', 3, 64), ts.Unix())
			}
		}
	}
	om.WriteString("# EOF\n")
	data := testenv.BackfillPrometheus(t, om.Bytes())
	t.Logf("backfilled %d bytes of history in %s", om.Len(), time.Since(began).Round(time.Millisecond))

	var mu sync.Mutex
	acted := map[string]int{}
	fixer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		acted[r.URL.Path]++
		mu.Unlock()
	}))
	t.Cleanup(fixer.Close)
	actedOn := func(p string) int { mu.Lock(); defer mu.Unlock(); return acted[p] }

	rbDir := t.TempDir()
	var all []*slos.SLO
	for _, s := range []struct{ name, svc string }{{"shop-fast", "fast"}, {"shop-slow", "slow"}} {
		body := sloFile(s.name, s.svc)
		writeRunbook(t, rbDir, s.name+"-slo", body)
		parsed, err := slos.Parse(s.name, []byte(body))
		require.NoError(t, err)
		all = append(all, parsed)
	}
	writeRunbook(t, rbDir, "fix-fast", sloRunbook("fix-fast", "shop-fast", "page", fixer.URL))
	writeRunbook(t, rbDir, "fix-slow", sloRunbook("fix-slow", "shop-slow", "ticket", fixer.URL))
	var rules bytes.Buffer
	require.NoError(t, slos.Rules(context.Background(), all, &rules))
	rulesPath := filepath.Join(t.TempDir(), "slos.rules.yaml")
	require.NoError(t, os.WriteFile(rulesPath, rules.Bytes(), 0o600))

	// Salve's address first: Alertmanager sends to it, Prometheus to
	// Alertmanager, and Salve reads Prometheus.
	const token = "test-token-6f1c0d9e7a3b42c8a6e1f0d4b7c9e2a1"
	port := testenv.FreePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	am := testenv.StartAlertmanager(t, base+"/v1/alertmanager", token)
	prom := testenv.StartPrometheusWith(t, testenv.PrometheusOptions{Targets: []string{target.URL}, RuleFiles: []string{rulesPath}, Alertmanager: am.URL, DataDir: data})
	// A few scrapes first: an incident's own window (a minute here) is
	// read from them.
	require.Eventually(t, func() bool {
		resp, err := http.Get(prom.URL + "/api/v1/query?query=" + url.QueryEscape(`count_over_time(http_requests_total{svc="fast",code="200"}[1m]) >= 3`))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		return strings.Contains(b.String(), `"value"`)
	}, time.Minute, 200*time.Millisecond, "Prometheus never scraped the target")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d, err := app.Start(ctx, app.Config{
		DataDir: t.TempDir(), Listen: fmt.Sprintf("127.0.0.1:%d", port), WebhookToken: token, RunbooksDir: rbDir,
		TemporalPort: -1, NATSPort: -1, UIPort: -1, Version: "test", PrometheusURL: prom.URL,
		Log: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	require.NoError(t, err)
	t.Cleanup(d.Close)
	registerDev(d)
	t.Logf("Prometheus, Alertmanager and Salve up after %s", time.Since(began).Round(time.Millisecond))

	// Each runbook's run starts from its alert, and the trigger's record
	// says what the burn was and what the run does.
	matched := func(runbook string) (audit.Record, bool) {
		for _, r := range auditEvents(t, d.URL, "action=trigger.matched&runbook="+runbook) {
			return r, true
		}
		return audit.Record{}, false
	}
	var fastRec, slowRec audit.Record
	require.Eventually(t, func() bool {
		var ok1, ok2 bool
		fastRec, ok1 = matched("fix-fast")
		slowRec, ok2 = matched("fix-slow")
		return ok1 && ok2
	}, 2*time.Minute, time.Second, "the burn alerts never started both runs")

	t.Logf("both runs started after %s", time.Since(began).Round(time.Millisecond))
	// What Prometheus itself fired: a page for fast; for slow a ticket and
	// no page — the trigger's speeds are the alerts' own conditions.
	firing := map[string]bool{}
	var alerts struct {
		Data struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
			} `json:"result"`
		} `json:"data"`
	}
	resp, err := http.Get(prom.URL + `/api/v1/query?query=` + url.QueryEscape(`ALERTS{alertname="SLOErrorBudgetBurn",alertstate="firing"}`))
	require.NoError(t, err)
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&alerts))
	resp.Body.Close()
	for _, r := range alerts.Data.Result {
		firing[r.Metric["salve_slo"]+"/"+r.Metric["sloth_severity"]] = true
	}
	require.Equal(t, map[string]bool{"shop-fast/page": true, "shop-fast/ticket": true, "shop-slow/ticket": true}, firing)

	fd, sd := fastRec.Event.Detail, slowRec.Event.Detail
	require.Equal(t, "fast", fd["sloBurn"], fd["sloDecision"])
	require.Equal(t, "act", fd["sloAction"])
	require.Equal(t, "slow", sd["sloBurn"], sd["sloDecision"])
	require.Equal(t, "approve", sd["sloAction"])

	// The figures, by hand from the series: burn rate = error ratio / 0.001.
	near := func(d map[string]string, key string, want float64) {
		t.Helper()
		got, err := strconv.ParseFloat(d[key], 64)
		require.NoError(t, err, "%s: %q", key, d[key])
		require.InDelta(t, want, got, math.Abs(want)*0.03+0.01, "%s", key)
	}
	near(fd, "sloBurnRate5m", 50)        // 5 % errors
	near(fd, "sloBurnRate1h", 50)        // within the 2 h burn
	near(fd, "sloBurnRate1d", 50*2.0/24) // 2 h of 24 at 5 %
	// The period (30 d) holds the 7 days of history: 6,000 bad of 10.08 M.
	near(fd, "sloBudgetRemaining", 1-(50*120)/(reqPerMin*sloHistory.Minutes())/0.001)
	near(sd, "sloBurnRate1h", 4)
	near(sd, "sloBurnRate1d", 4*20.0/24)
	near(sd, "sloBudgetRemaining", 1-(4*1200)/(reqPerMin*sloHistory.Minutes())/0.001)

	// Fast: it acted. Slow: it waits for a person, and acted on nothing.
	waitRunStatus(t, d.URL, "salve/fix-fast/shop-fast", "succeeded", time.Minute)
	require.Equal(t, 1, actedOn("/fix-fast"))
	require.Eventually(t, func() bool {
		det, code := getRun(t, d.URL, "salve/fix-slow/shop-slow")
		return code == http.StatusOK && det.Run != nil && det.Run.Approval != nil
	}, time.Minute, 200*time.Millisecond, "the slow burn's run does not wait for approval")
	det, _ := getRun(t, d.URL, "salve/fix-slow/shop-slow")
	require.Contains(t, det.Run.ApprovalReason, "SLO shop-slow: slow burn", "the run says why it waits")
	require.Zero(t, actedOn("/fix-slow"))
	require.True(t, strings.HasPrefix(sd["sloDecision"], "SLO shop-slow: slow burn"))

	// The API's budget figures: the same hand computation.
	var list struct {
		SLOs []api.SLOItem `json:"slos"`
	}
	getJSON(t, d.URL+"/v1/slos", &list)
	byName := map[string]api.SLOItem{}
	for _, it := range list.SLOs {
		byName[it.Name] = it
	}
	require.Len(t, byName, 2)
	for name, want := range map[string]float64{
		"shop-fast": 1 - (50*120)/(reqPerMin*sloHistory.Minutes())/0.001,
		"shop-slow": 1 - (4*1200)/(reqPerMin*sloHistory.Minutes())/0.001,
	} {
		it := byName[name]
		require.NotNil(t, it.Burn, "%s: %s", name, it.BurnError)
		require.NotNil(t, it.Burn.BudgetRemaining, name)
		require.InDelta(t, want, *it.Burn.BudgetRemaining, 0.02, name)
	}
	require.Equal(t, "fast", byName["shop-fast"].Burn.Speed)
	require.Equal(t, "slow", byName["shop-slow"].Burn.Speed)
	require.Equal(t, []string{"fix-fast"}, byName["shop-fast"].Runbooks)

	// The fast incident: the run took under a minute (d = 1 min, rounded
	// up) at a 5 % error ratio: 50 x the budget's rate for 1 of the
	// period's 43,200 minutes.
	var det2 api.SLODetail
	getJSON(t, d.URL+"/v1/slos/shop-fast", &det2)
	require.Len(t, det2.Incidents, 1)
	inc := det2.Incidents[0]
	require.Equal(t, "salve/fix-fast/shop-fast", inc.WorkflowID)
	require.NotNil(t, inc.BudgetConsumed, inc.Note)
	require.Equal(t, 1, inc.WindowMinutes)
	require.InDelta(t, 50.0/43200, *inc.BudgetConsumed, 50.0/43200*0.05)
	// MTTR and MTBF are the service's: both SLOs are shop's, and the slow
	// one's run still waits, so one of two incidents is closed.
	require.Equal(t, "shop", det2.Reliability.Service)
	require.Equal(t, 2, det2.Reliability.Incidents)
	require.Equal(t, 1, det2.Reliability.Closed)
	// MTTR: the one closed incident's duration; MTBF: the time between
	// the two incidents' starts.
	var slowDet api.SLODetail
	getJSON(t, d.URL+"/v1/slos/shop-slow", &slowDet)
	require.Len(t, slowDet.Incidents, 1)
	require.NotNil(t, det2.Reliability.MTTRSeconds)
	require.InDelta(t, *inc.DurationSeconds, *det2.Reliability.MTTRSeconds, 1e-9)
	require.NotNil(t, det2.Reliability.MTBFSeconds)
	require.InDelta(t, math.Abs(slowDet.Incidents[0].Start.Sub(inc.Start).Seconds()), *det2.Reliability.MTBFSeconds, 1e-9)
}
