// Package deploy_test checks the files under deploy/ that refer to Salve's
// metrics: the Grafana dashboard and the Prometheus rules parse, every
// PromQL expression in them is valid to the real promtool, and every
// salve_* metric they name is one Salve registers.
package deploy_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/salve-sre/salve/internal/metrics"
	"github.com/salve-sre/salve/internal/testenv"
)

const (
	dashboardFile = "grafana/salve-dashboard.json"
	rulesFile     = "prometheus/salve-rules.yaml"
	rulesTestFile = "prometheus/salve-rules_test.yaml"
	promtoolHint  = "apt-get install -y prometheus"
)

// registered lists the metric names Salve exports, with their types, from
// the registry of a Metrics set up as a process sets it up.
func registered(t *testing.T) map[string]dto.MetricType {
	t.Helper()
	m := metrics.New()
	m.Runbooks([]string{"restart"})
	m.StepKinds([]string{"http.request"})
	m.ApprovalsPending(func() float64 { return 0 })
	m.AlertsParked(func() float64 { return 0 })
	m.Backlogs(func() []metrics.Backlog { return []metrics.Backlog{{Consumer: "trigger"}} })
	mfs, err := m.Gatherer().Gather()
	require.NoError(t, err)
	names := map[string]dto.MetricType{}
	for _, mf := range mfs {
		names[mf.GetName()] = mf.GetType()
	}
	return names
}

var metricRef = regexp.MustCompile(`salve_[a-z_]+`)

// unknownMetrics returns the salve_* names in exprs that Salve does not
// register (a histogram's _bucket, _sum and _count series count as it).
func unknownMetrics(exprs []string, names map[string]dto.MetricType) []string {
	var bad []string
	seen := map[string]bool{}
	for _, e := range exprs {
		for _, ref := range metricRef.FindAllString(e, -1) {
			_, known := names[ref]
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if base, ok := strings.CutSuffix(ref, suffix); ok && !known {
					typ, isMetric := names[base]
					known = isMetric && typ == dto.MetricType_HISTOGRAM
				}
			}
			if !known && !seen[ref] {
				seen[ref] = true
				bad = append(bad, ref)
			}
		}
	}
	sort.Strings(bad)
	return bad
}

// grafanaVars stand in for Grafana's variables so promtool can parse an
// expression as Prometheus will receive it.
var grafanaVars = strings.NewReplacer(
	"$__rate_interval", "5m",
	"$__interval", "1m",
	"$__range", "1h",
	"${runbook}", ".*",
	"$runbook", ".*",
)

type dashboard struct {
	Title      string  `json:"title"`
	UID        string  `json:"uid"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Datasource *datasource     `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type panel struct {
	ID         int         `json:"id"`
	Type       string      `json:"type"`
	Title      string      `json:"title"`
	Datasource *datasource `json:"datasource"`
	Targets    []struct {
		RefID      string      `json:"refId"`
		Expr       string      `json:"expr"`
		Datasource *datasource `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a collapsed row's
}

func allPanels(ps []panel) []panel {
	var out []panel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

func readDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	require.NoError(t, err)
	var d dashboard
	require.NoError(t, json.Unmarshal(b, &d), "%s is not valid JSON", dashboardFile)
	return d
}

// promtoolCheck writes the expressions into a rules file as recording
// rules and has promtool check them.
func promtoolCheck(t *testing.T, promtool string, exprs map[string]string) {
	t.Helper()
	type rule struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	keys := make([]string, 0, len(exprs))
	for k := range exprs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var rules []rule
	for i, k := range keys {
		rules = append(rules, rule{Record: fmt.Sprintf("dashboard:expr_%d", i), Expr: exprs[k]})
	}
	out, err := yaml.Marshal(map[string]any{"groups": []map[string]any{{"name": "dashboard", "rules": rules}}})
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "dashboard-rules.yaml")
	require.NoError(t, os.WriteFile(path, out, 0o600))
	res, err := exec.Command(promtool, "check", "rules", path).CombinedOutput()
	require.NoError(t, err, "promtool rejects dashboard expressions:\n%s\nexpressions (record name -> panel):\n%s", res, indexList(keys))
}

func indexList(keys []string) string {
	var b strings.Builder
	for i, k := range keys {
		fmt.Fprintf(&b, "  dashboard:expr_%d  %s\n", i, k)
	}
	return b.String()
}

func TestDashboard(t *testing.T) {
	promtool := testenv.Binary(t, "promtool", promtoolHint)
	d := readDashboard(t)
	require.NotEmpty(t, d.Title)
	require.NotEmpty(t, d.UID)

	// The data source is a template variable, so the dashboard imports
	// into any Grafana whatever its Prometheus is called.
	var hasDS bool
	var varQueries []string
	for _, v := range d.Templating.List {
		if v.Name == "datasource" && v.Type == "datasource" {
			hasDS = true
			require.JSONEq(t, `"prometheus"`, string(v.Query))
		}
		if v.Type == "query" {
			require.NotNil(t, v.Datasource, "variable %s", v.Name)
			require.Equal(t, "${datasource}", v.Datasource.UID, "variable %s", v.Name)
			varQueries = append(varQueries, string(v.Query))
		}
	}
	require.True(t, hasDS, "no datasource template variable")

	exprs := map[string]string{}
	var raw []string
	ids := map[int]bool{}
	for _, p := range allPanels(d.Panels) {
		require.False(t, ids[p.ID], "panel id %d used twice", p.ID)
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		require.NotEmpty(t, p.Targets, "panel %q has no query", p.Title)
		require.NotNil(t, p.Datasource, "panel %q", p.Title)
		require.Equal(t, "${datasource}", p.Datasource.UID, "panel %q must use the datasource variable", p.Title)
		for _, tg := range p.Targets {
			require.NotEmpty(t, tg.Expr, "panel %q target %s", p.Title, tg.RefID)
			if tg.Datasource != nil {
				require.Equal(t, "${datasource}", tg.Datasource.UID, "panel %q target %s", p.Title, tg.RefID)
			}
			e := grafanaVars.Replace(tg.Expr)
			require.NotContains(t, e, "$", "panel %q target %s: a Grafana variable this test does not know: %s", p.Title, tg.RefID, tg.Expr)
			exprs[fmt.Sprintf("%s / %s", p.Title, tg.RefID)] = e
			raw = append(raw, tg.Expr)
		}
	}
	require.NotEmpty(t, exprs)
	promtoolCheck(t, promtool, exprs)

	names := registered(t)
	require.Empty(t, unknownMetrics(append(raw, varQueries...), names), "the dashboard names metrics Salve does not export")

	// Every Salve metric is on the dashboard somewhere.
	var unused []string
	for n := range names {
		if strings.HasPrefix(n, "salve_") && !strings.Contains(strings.Join(raw, "\n"), n) {
			unused = append(unused, n)
		}
	}
	sort.Strings(unused)
	require.Empty(t, unused, "metrics no dashboard panel shows")
}

func TestAlertingRules(t *testing.T) {
	promtool := testenv.Binary(t, "promtool", promtoolHint)
	out, err := exec.Command(promtool, "check", "rules", rulesFile).CombinedOutput()
	require.NoError(t, err, "promtool check rules %s:\n%s", rulesFile, out)

	// The rules' own unit tests (they run from the rules' directory).
	cmd := exec.Command(promtool, "test", "rules", filepath.Base(rulesTestFile))
	cmd.Dir = filepath.Dir(rulesTestFile)
	out, err = cmd.CombinedOutput()
	require.NoError(t, err, "promtool test rules %s:\n%s", rulesTestFile, out)

	b, err := os.ReadFile(rulesFile)
	require.NoError(t, err)
	var rf struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Record      string            `yaml:"record"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	require.NoError(t, dec.Decode(&rf))
	var exprs []string
	alerts := map[string]bool{}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			exprs = append(exprs, r.Expr)
			if r.Alert == "" {
				continue
			}
			alerts[r.Alert] = true
			require.Contains(t, []string{"critical", "warning", "info"}, r.Labels["severity"], "alert %s", r.Alert)
			require.NotEmpty(t, r.Annotations["summary"], "alert %s", r.Alert)
			require.NotEmpty(t, r.Annotations["description"], "alert %s", r.Alert)
		}
	}
	require.Empty(t, unknownMetrics(exprs, registered(t)), "the rules name metrics Salve does not export")
	for _, want := range []string{"SalveWebhookIngestFailing", "SalveRunFailureRatioHigh", "SalveApprovalsWaiting", "SalveTriggerStalled", "SalveWorkerStalled"} {
		require.True(t, alerts[want], "alert %s is missing", want)
	}
}

// The checker itself: a name Salve does not export is caught, histogram
// series are not.
func TestUnknownMetrics(t *testing.T) {
	names := map[string]dto.MetricType{"salve_runs_total": dto.MetricType_COUNTER, "salve_run_duration_seconds": dto.MetricType_HISTOGRAM}
	require.Empty(t, unknownMetrics([]string{`rate(salve_runs_total[5m])`, `salve_run_duration_seconds_bucket`, `salve_run_duration_seconds_count`}, names))
	require.Equal(t, []string{"salve_run_total", "salve_runs_total_bucket"},
		unknownMetrics([]string{`rate(salve_run_total[5m]) + salve_runs_total_bucket`}, names))
}
