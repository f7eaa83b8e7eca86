package dashboard

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/internal/stats"
)

func TestHours(t *testing.T) {
	for secs, want := range map[float64]string{
		0: "0", 1800: "0.5", 900: "0.25", 5400: "1.5", 36000: "10", 37800: "10.5", 360000: "100", 60: "0.02", 1: "0",
	} {
		require.Equal(t, want, hours(secs), "%v seconds", secs)
	}
}

func TestHumanDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		850 * time.Millisecond: "850ms", 1500 * time.Millisecond: "1.5s", 42 * time.Second: "42s",
		4*time.Minute + 12*time.Second: "4m 12s", 3*time.Hour + 5*time.Minute: "3h 05m", 51 * time.Hour: "2d 3h",
	} {
		require.Equal(t, want, humanDuration(d))
	}
}

func TestSafeNext(t *testing.T) {
	for next, want := range map[string]string{
		"":                          "/ui/",
		"/ui/":                      "/ui/",
		"/ui/runs?status=failed":    "/ui/runs?status=failed",
		"/ui/runs/salve%2Fa%2Fb":    "/ui/runs/salve%2Fa%2Fb",
		"/ui/audit#frag":            "/ui/audit",
		"https://evil.example/ui/":  "/ui/",
		"//evil.example/ui/":        "/ui/",
		"/\\evil.example":           "/ui/",
		"/ui/../v1/runs":            "/ui/",
		"/ui/%2e%2e/v1":             "/ui/",
		"javascript:alert(1)":       "/ui/",
		"/ui/login?next=//evil.com": "/ui/",
		"/uievil":                   "/ui/",
		"ui/runs":                   "/ui/",
	} {
		require.Equal(t, want, safeNext(next), "next=%q", next)
	}
}

func TestNiceAxis(t *testing.T) {
	for _, tc := range []struct {
		max       float64
		integer   bool
		top, step float64
	}{
		{0, false, 1, 0.25}, {0, true, 1, 1}, {0.5, false, 0.6, 0.2}, {2, true, 2, 1}, {3, true, 3, 1},
		{7, true, 8, 2}, {10, true, 10, 2.5}, {99, false, 100, 25}, {1, false, 1, 0.25},
	} {
		top, step := niceAxis(tc.max, tc.integer)
		require.InDelta(t, tc.top, top, 1e-9, "%+v", tc)
		require.InDelta(t, tc.step, step, 1e-9, "%+v", tc)
	}
}

func TestCharts(t *testing.T) {
	day := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	var days []stats.DayPoint
	for i := range 5 {
		days = append(days, stats.DayPoint{Day: day.AddDate(0, 0, i), SavedSeconds: float64(i) * 1800, Runs: i, Failed: i / 2})
	}
	c := barChart("toil", days, dayOf, func(p stats.DayPoint) float64 { return p.SavedSeconds / 3600 })
	require.Len(t, c.Bars, 5)
	require.Equal(t, c.Bottom, c.Bars[0].Y+c.Bars[0].H, "bars stand on the axis")
	require.Equal(t, 0.0, c.Bars[0].H)
	require.InDelta(t, c.PlotY, c.Bars[4].Y, 0.1, "the largest value (2 h) reaches the top (2)")
	require.Equal(t, "2026-11-24: 2", c.Bars[4].Title)
	var labels []string
	for _, tk := range c.YTicks {
		labels = append(labels, tk.Label)
	}
	require.Equal(t, []string{"0", "0.5", "1", "1.5", "2"}, labels)
	require.Equal(t, "11-20", c.XTicks[0].Label)
	require.Equal(t, "total 5", c.Total)

	l := lineChart("runs", days, dayOf, []series[stats.DayPoint]{
		{Name: "runs", Class: "s-runs", Value: func(p stats.DayPoint) float64 { return float64(p.Runs) }},
		{Name: "failed", Class: "s-failed", Value: func(p stats.DayPoint) float64 { return float64(p.Failed) }},
	})
	require.Len(t, l.Lines, 2)
	require.Len(t, l.Lines[0].Dots, 5)
	require.Equal(t, "10 runs, 4 failed", l.Total)
	// An empty window still draws axes.
	e := barChart("empty", []stats.DayPoint(nil), dayOf, func(stats.DayPoint) float64 { return 0 })
	require.Empty(t, e.Bars)
	require.Len(t, e.YTicks, 5)
}
