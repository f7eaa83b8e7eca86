package backtest_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/activities"
	"github.com/salve-sre/salve/internal/backtest"
	"github.com/salve-sre/salve/internal/safety"
	"github.com/salve-sre/salve/internal/testenv"
	"github.com/salve-sre/salve/runbooks"
)

// recorded is one alert's firing in the recorded week: day (0-6) and
// minute of the day it starts, minutes it fires.
type recorded struct {
	labels          string // without alertname's braces
	day, start, dur int
}

// The recorded week, and what backtesting runbook "restart" over it must
// report. restart matches alertname="PodCrashLooping", one incident per
// namespace, cooldown 30m, maxRunsPerHour 2; a run lasts 2m (the default
// model) and onResolved is ignore, so resolutions change nothing.
//
//	day 1 10:00 shop/a  fires   -> started #1 (runs to 10:02; shop cools down until 10:32)
//	day 1 10:01 shop/b  fires   -> joined (shop's run is going)
//	day 1 10:10 shop/c  fires   -> suppressed: cooldown
//	day 1 10:40 web/a   fires   -> started #2 (starts in the last hour: 10:00, 10:40)
//	day 1 10:50 db/a    fires   -> suppressed: max_runs_per_hour (2 in the last hour)
//	day 1 11:05 db/b    fires   -> started #3 (10:00 has left the hour)
//	day 3 14:00 shop/a  fires   -> started #4 (the same series again, cooldown long over)
//	day 3 14:20 shop/d  fires   -> suppressed: cooldown (shop's run ended 14:02: until 14:32)
//	day 5 03:00 HighLatency (severity warning) -> no runbook matches
//	day 6 22:50 web/b   fires   -> started #5
//
// started 5, joined 1, suppressed 3 (cooldown 2, max_runs_per_hour 1),
// incidents shop, web, db; one run at a time. Ten occurrences, each
// resolving within the week (backfilled samples have no staleness
// markers, so a query sees a series up to 5m, the lookback, after its
// last sample: resolutions come late here, which onResolved: ignore does
// not see, and none may come within 5m of the week's end): 20 alert states, 2 of them (HighLatency's)
// matching no runbook; with --match severity="critical", 18 and none.
var week = []recorded{
	{`namespace="shop",pod="a",severity="critical"`, 1, 10 * 60, 20},
	{`namespace="shop",pod="b",severity="critical"`, 1, 10*60 + 1, 19},
	{`namespace="shop",pod="c",severity="critical"`, 1, 10*60 + 10, 5},
	{`namespace="web",pod="a",severity="critical"`, 1, 10*60 + 40, 5},
	{`namespace="db",pod="a",severity="critical"`, 1, 10*60 + 50, 5},
	{`namespace="db",pod="b",severity="critical"`, 1, 11*60 + 5, 5},
	{`namespace="shop",pod="a",severity="critical"`, 3, 14 * 60, 30},
	{`namespace="shop",pod="d",severity="critical"`, 3, 14*60 + 20, 5},
	{`severity="warning",service="api"`, 5, 3 * 60, 30},
	{`namespace="web",pod="b",severity="critical"`, 6, 22*60 + 50, 9},
}

// openMetrics renders the week as Prometheus's rule manager records it:
// ALERTS{alertstate="firing"} = 1 at every evaluation (1m) while an
// alert fires, one series per label set, plus a pending sample that the
// backtest must ignore.
func openMetrics(weekStart time.Time) []byte {
	series := map[string][]int64{}
	for _, r := range week {
		name := "PodCrashLooping"
		if strings.Contains(r.labels, "warning") {
			name = "HighLatency"
		}
		key := fmt.Sprintf(`ALERTS{alertname=%q,alertstate="firing",%s}`, name, r.labels)
		begin := weekStart.Add(time.Duration(r.day)*24*time.Hour + time.Duration(r.start)*time.Minute)
		for m := range r.dur {
			series[key] = append(series[key], begin.Add(time.Duration(m)*time.Minute).Unix())
		}
	}
	var b strings.Builder
	b.WriteString("# TYPE ALERTS gauge\n")
	for _, key := range slices.Sorted(maps.Keys(series)) {
		for _, ts := range series[key] {
			fmt.Fprintf(&b, "%s 1 %d\n", key, ts)
		}
	}
	fmt.Fprintf(&b, "ALERTS{alertname=\"PodCrashLooping\",alertstate=\"pending\",namespace=\"pending\"} 1 %d\n", weekStart.Add(2*time.Hour).Unix())
	b.WriteString("# EOF\n")
	return []byte(b.String())
}

func TestBacktestOverARecordedWeekInPrometheus(t *testing.T) {
	weekStart := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -8)
	prom := testenv.StartPrometheusOn(t, testenv.BackfillPrometheus(t, openMetrics(weekStart)))

	reg, err := activities.NewRegistry()
	require.NoError(t, err)
	rb, err := runbooks.Parse("restart.yaml", []byte(`apiVersion: salve/v1
kind: Runbook
metadata: {name: restart}
spec:
  trigger:
    matchers: ['alertname="PodCrashLooping"']
    incidentKey: '{{ .Labels.namespace }}'
  safety: {cooldown: 30m, maxRunsPerHour: 2}
  steps:
    - {name: act, action: http.request, with: {url: "http://x"}}
`), reg)
	require.NoError(t, err)
	set, err := runbooks.NewSet(rb)
	require.NoError(t, err)

	for _, tc := range []struct {
		match           string
		states, noMatch int
	}{{"", 20, 2}, {`severity="critical"`, 18, 0}} {
		t.Run("match="+tc.match, func(t *testing.T) {
			sel, err := backtest.ParseSelector(tc.match)
			require.NoError(t, err)
			src, err := backtest.NewPrometheus(prom.URL, sel, 0)
			require.NoError(t, err)
			var queries int
			src.Progress = func(done, total, _ int) { queries = total }
			start, end := weekStart, weekStart.Add(7*24*time.Hour)
			occs, err := src.Occurrences(context.Background(), start, end)
			require.NoError(t, err)
			require.Equal(t, 3, queries, "a week at 30s is 20,160 points: three queries of at most 10,000")

			res, err := backtest.Run(context.Background(), backtest.States(occs, 0, start, end), backtest.Options{Runbooks: set})
			require.NoError(t, err)
			require.Equal(t, tc.states, res.AlertStates)
			require.Equal(t, tc.noMatch, res.NoMatch)
			require.Equal(t, []backtest.RunbookResult{{
				Runbook: "restart", Started: 5, Joined: 1, Suppressed: 3,
				SuppressedBy: map[string]int{safety.CheckCooldown: 2, safety.CheckRate: 1},
				Incidents:    3, PeakConcurrent: 1,
			}}, res.Runbooks)
			var starts []string
			for _, d := range res.Decisions {
				if d.Outcome == backtest.OutcomeStarted {
					starts = append(starts, d.Time.Sub(weekStart).String())
				}
			}
			require.Equal(t, []string{"34h0m0s", "34h40m0s", "35h5m0s", "86h0m0s", "166h50m0s"}, starts)
		})
	}
}
