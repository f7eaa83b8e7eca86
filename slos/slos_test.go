package slos_test

import (
	"bytes"
	"context"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/salve-sre/salve/slos"
)

func load(t *testing.T, path string) *slos.SLO {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	s, err := slos.Parse(path, data)
	require.NoError(t, err)
	return s
}

// The rules pass promtool's checks and the shipped promtool unit tests —
// and so do the rules Sloth v0.16.0 generated for the same SLO (recorded
// in testdata): a fast burn pages (and tickets), a slow one tickets only,
// a healthy service alerts nothing, under both.
func TestRulesPassPromtool(t *testing.T) {
	s := load(t, "checkout-availability.yaml")
	var buf bytes.Buffer
	require.NoError(t, slos.Rules(context.Background(), []*slos.SLO{s}, &buf))
	sloth, err := os.ReadFile("testdata/sloth-v0.16.0-checkout-availability.rules.yaml")
	require.NoError(t, err)
	test, err := os.ReadFile("tests/checkout-availability.test.yaml")
	require.NoError(t, err)
	for name, rules := range map[string][]byte{"salve": buf.Bytes(), "sloth": sloth} {
		dir := t.TempDir()
		path := filepath.Join(dir, "checkout-availability.rules.yaml")
		require.NoError(t, os.WriteFile(path, rules, 0o600))
		out, err := exec.Command("promtool", "check", "rules", path).CombinedOutput()
		require.NoError(t, err, "%s: %s", name, out)
		require.Contains(t, string(out), "SUCCESS: 17 rules found", name)
		require.NoError(t, os.WriteFile(filepath.Join(dir, "test.yaml"), test, 0o600))
		out, err = exec.Command("promtool", "test", "rules", filepath.Join(dir, "test.yaml")).CombinedOutput()
		require.NoError(t, err, "%s: %s", name, out)
	}
	// Rule for rule: the same records and alerts, in the same groups,
	// with the same labels (the expressions are compared by behaviour:
	// the promtool tests above).
	require.Equal(t, ruleNames(t, sloth), ruleNames(t, buf.Bytes()))

	// A 28-day SLO: the factors scale (14.4 → 13.44, 6 → 5.6, 3 → 2.8,
	// 1 → 0.933…), and the rules still load.
	s28 := *s
	s28.Spec.TimeWindows = []slos.TimeWindows{{Count: 28, Unit: "Day"}}
	var buf28 bytes.Buffer
	require.NoError(t, slos.Rules(context.Background(), []*slos.SLO{&s28}, &buf28))
	for _, f := range []string{"(13.44 * (1-0.999))", "(5.6 * (1-0.999))", "(2.8 * (1-0.999))", "(0.933333 * (1-0.999))", "ratio_rate28d", "vector(28)"} {
		require.Contains(t, buf28.String(), f)
	}
	p28 := filepath.Join(t.TempDir(), "28d.yaml")
	require.NoError(t, os.WriteFile(p28, buf28.Bytes(), 0o600))
	out, err := exec.Command("promtool", "check", "rules", p28).CombinedOutput()
	require.NoError(t, err, string(out))
}

func ruleNames(t *testing.T, file []byte) []string {
	var f struct {
		Groups []struct {
			Name  string
			Rules []struct {
				Record, Alert string
				Labels        map[string]string
			}
		}
	}
	require.NoError(t, yaml.Unmarshal(file, &f))
	var out []string
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			// Every label but the ones naming the generator.
			var ls []string
			for k, v := range r.Labels {
				if k != "sloth_mode" && k != "sloth_spec" && k != "sloth_version" {
					ls = append(ls, k+"="+v)
				}
			}
			slices.Sort(ls)
			out = append(out, g.Name+" "+r.Record+r.Alert+" "+strings.Join(ls, ","))
		}
	}
	return out
}

func TestParseReportsEveryProblemWithItsLine(t *testing.T) {
	bad := []byte(`apiVersion: openslo/v1alpha
kind: SLO
metadata:
  name: Checkout_Availability
spec:
  service: checkout
  budgetingMethod: Timeslices
  objectives:
    - ratioMetrics:
        good:
          source: prometheus
          queryType: promql
          query: sum(rate(http_requests_total{code!~"5.."}[5m]))
        total:
          source: datadog
          queryType: promql
          query: sum(rate(http_requests_total[{{.window}}])
      target: 99.9
  timeWindows:
    - count: 7
      unit: Day
  colour: blue
`)
	_, err := slos.Parse("checkout.yaml", bad)
	require.Error(t, err)
	for _, want := range []string{
		`checkout.yaml:22: field colour not found`,
		`checkout.yaml:4:9: metadata.name: "Checkout_Availability": lowercase letters`,
		`checkout.yaml:7:20: spec.budgetingMethod: "Timeslices": only Occurrences`,
		`checkout.yaml:13:18: spec.objectives[0].ratioMetrics.good.query: has no {{.window}}`,
		`checkout.yaml:15:19: spec.objectives[0].ratioMetrics.total.source: "datadog": want prometheus`,
		`checkout.yaml:17:18: spec.objectives[0].ratioMetrics.total.query: not valid PromQL`,
		`checkout.yaml:18:15: spec.objectives[0].target: 99.9: the share of good events, between 0 and 1`,
		`checkout.yaml:20:7: spec.timeWindows[0]: 7 Day: want 30 or 28 Day`,
	} {
		require.Contains(t, err.Error(), want)
	}

	s := load(t, "checkout-availability.yaml")
	require.Equal(t, "checkout-availability", s.Name())
	require.InDelta(t, 0.001, s.ErrorBudget(), 1e-12)
	require.Equal(t, 30*24*time.Hour, s.Period())
	require.Equal(t, "1 - ((\n"+`sum(rate(http_requests_total{job="checkout",code!~"5.."}[1h]))`+"\n) / (\n"+`sum(rate(http_requests_total{job="checkout"}[1h]))`+"\n))", s.ErrorRatioQuery(time.Hour))
	// A query may end in a comment: each stands on lines of its own.
	commented := strings.Replace(string(mustRead(t, "checkout-availability.yaml")), `query: sum(rate(http_requests_total{job="checkout",code!~"5.."}[{{.window}}]))`,
		`query: 'sum(rate(http_requests_total{job="checkout",code!~"5.."}[{{.window}}])) # good ones'`, 1)
	c, err := slos.Parse("commented.yaml", []byte(commented))
	require.NoError(t, err)
	require.Contains(t, c.ErrorRatioQuery(time.Hour), "# good ones\n)")
	require.Equal(t, []time.Duration{5 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour, 6 * time.Hour, 24 * time.Hour, 72 * time.Hour, 30 * 24 * time.Hour}, s.Windows())
	require.InDelta(t, 13.44, (&slos.SLO{Spec: slos.Spec{TimeWindows: []slos.TimeWindows{{Count: 28, Unit: "Day"}}}}).Factor(14.4), 1e-9)
	require.True(t, slos.IsSLO([]byte("apiVersion: openslo/v1alpha\nkind: SLO\n")))
	require.False(t, slos.IsSLO([]byte("apiVersion: salve/v1\nkind: Runbook\n")))
}

func FuzzParse(f *testing.F) {
	seed, err := os.ReadFile("checkout-availability.yaml")
	require.NoError(f, err)
	f.Add(seed)
	f.Add([]byte("apiVersion: openslo/v1alpha\nkind: SLO\nspec: {objectives: [{target: 2}]}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := slos.Parse("fuzz.yaml", data)
		if err != nil {
			require.Nil(t, s)
			require.NotEmpty(t, err.Error())
			return
		}
		// A valid SLO has what its users index without checks.
		require.Len(t, s.Spec.Objectives, 1)
		require.Len(t, s.Spec.TimeWindows, 1)
		require.True(t, s.Target() > 0 && s.Target() < 1)
		require.NotEmpty(t, s.ErrorRatioQuery(time.Hour))
	})
}

// The speed is decided fastest first, and a window without data never lets
// a slower policy apply while a faster burn is possible.
func TestEvaluateDecidesFastestFirst(t *testing.T) {
	s := load(t, "checkout-availability.yaml") // budget 0.001
	all := func(r float64) map[string]float64 {
		return map[string]float64{"5m": r, "30m": r, "1h": r, "2h": r, "6h": r, "1d": r, "3d": r, "30d": r}
	}
	without := func(m map[string]float64, ws ...string) map[string]float64 {
		for _, w := range ws {
			delete(m, w)
		}
		return m
	}
	at := time.Now()
	for _, tc := range []struct {
		name   string
		ratios map[string]float64
		want   string
	}{
		{"50x everywhere: fast", all(0.05), "fast"},
		{"10x: the 30m/6h page pair", all(0.01), "fast"},
		{"4x: a ticket", all(0.004), "slow"},
		{"2x: the 6h/3d ticket pair", all(0.002), "slow"},
		{"half the budget's rate: none", all(0.0005), "none"},
		{"no data at all: unknown", map[string]float64{}, "unknown"},
		{"a fast pair without data, a ticket: unknown, not slow", without(all(0.005), "5m", "1h"), "unknown"},
		{"fast windows short of data but their long windows low: slow", without(all(0.005), "5m", "30m"), "slow"},
		{"one fast window empty but the other rules its pair out: slow", without(all(0.004), "5m"), "slow"},
		{"only the period missing: decided, budget unknown", without(all(0.0005), "30d"), "none"},
		{"a fast pair holds though slow windows are empty: fast", without(all(0.05), "2h", "1d", "3d"), "fast"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := s.Evaluate(at, tc.ratios)
			require.Equal(t, tc.want, b.Speed())
		})
	}
	b := s.Evaluate(at, without(all(0.0005), "30d"))
	require.True(t, math.IsNaN(b.BudgetRemaining))
	require.InDelta(t, 0.5, s.Evaluate(at, all(0.0005)).BudgetRemaining, 1e-9)
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return b
}

func TestBrokenSLOFilesAreStillSLOFiles(t *testing.T) {
	require.True(t, slos.IsSLO([]byte("apiVersion: openslo/v1alpha\nkind: SLO\nmetadata: {name: [unclosed\n")))
	require.True(t, slos.IsSLO([]byte("kind: \"SLO\" # an objective\r\n")))
	require.False(t, slos.IsSLO([]byte("kind: Runbook\nspec: {description: 'kind: SLO'}\n")))

	// Two SLOs whose service and name join to one rule group id.
	a := load(t, "checkout-availability.yaml")
	b := *a
	b.Metadata.Name, b.Spec.Service, b.Source = "availability", "checkout-checkout", "other.yaml"
	err := slos.Rules(context.Background(), []*slos.SLO{a, &b}, io.Discard)
	require.ErrorContains(t, err, `make the same rule group id "checkout-checkout-availability": rename one`)
}
