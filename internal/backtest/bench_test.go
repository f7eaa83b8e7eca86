package backtest_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/internal/backtest"
	"github.com/salve-sre/salve/runbooks"
)

// BenchmarkBacktest replays 100,000 alert states — a week of a busy
// Alertmanager: 50,000 occurrences of 2,000 alerts in 200 namespaces,
// each firing and resolving — through three runbooks with every kind of
// limit, and reports alert states per second beside the floor measured
// in the same run (matching and incident keys alone) and the ratio.
//
// The limits matter to the speed as they do in production: each run
// started rewrites its runbook's state document, which holds the starts
// of the last 24 hours, so a runbook without rate limits that starts
// thousands of runs a day makes every start slower (an earlier version of
// this benchmark with one such runbook, 8,000 runs a day, replayed about
// 500 states/s).
func BenchmarkBacktest(b *testing.B) {
	set, err := runbooks.NewSet(
		book(b, "restart", "", `{cooldown: 30m, maxRunsPerHour: 20, maxConcurrent: 5}`),
		book(b, "cancel", "    onResolved: cancel", `{cooldown: 10m, maxRunsPerDay: 200}`),
		book(b, "targeted", "", `{target: "{{ .Params.ns }}", maxRunsPerHour: 30, blastRadius: {maxTargets: 50, window: 1h}, targetLock: {onBusy: suppress}}`),
	)
	require.NoError(b, err)
	start := t0
	week := 7 * 24 * time.Hour
	occs := make([]backtest.Occurrence, 0, 50000)
	for i := range 50000 {
		s := start.Add(week / 50000 * time.Duration(i))
		alertname := "Down"
		if i%4 == 3 {
			alertname = "Unmatched"
		}
		occs = append(occs, backtest.Occurrence{
			Labels: map[string]string{"alertname": alertname, "namespace": fmt.Sprint("ns", i%200), "pod": fmt.Sprint("pod", i%2000)},
			Start:  s, End: s.Add(time.Duration(1+i%20) * time.Minute),
		})
	}
	states := backtest.States(occs, 0, start, start.Add(week+time.Hour))
	require.Equal(b, 100000, len(states))

	// The floor, measured in the same run: what any replay must do per
	// state — match it against the runbooks and render each match's
	// incident key — with no safety decision and no run.
	floorStart := time.Now()
	for i := range states {
		for _, rb := range set.Match(states[i]) {
			_, _ = rb.IncidentKey(states[i])
		}
	}
	floor := float64(len(states)) / time.Since(floorStart).Seconds()

	b.ResetTimer()
	var res *backtest.Result
	for b.Loop() {
		res, err = backtest.Run(context.Background(), states, backtest.Options{Runbooks: set})
		require.NoError(b, err)
	}
	rate := float64(len(states)*b.N) / b.Elapsed().Seconds()
	b.ReportMetric(rate, "states/s")
	b.ReportMetric(floor, "floor-states/s")
	b.ReportMetric(rate/floor, "ratio-to-floor")
	started := 0
	for _, r := range res.Runbooks {
		started += r.Started
	}
	b.ReportMetric(float64(started), "runs")
}
