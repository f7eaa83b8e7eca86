package slobudget_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/internal/slobudget"
	"github.com/salve-sre/salve/slos"
)

// The worked example of docs/dashboard.md: a 30-minute incident at a 5 %
// error ratio against a 99.9 %, 30-day objective.
func TestFormulasByHand(t *testing.T) {
	period := 30 * 24 * time.Hour
	rate := slobudget.BurnRate(0.05, 0.001)
	require.InDelta(t, 50, rate, 1e-9)
	// 50 × 30 min / 43200 min
	require.InDelta(t, 0.034722, slobudget.Consumed(rate, 30*time.Minute, period), 1e-6)
	// manual 90 min: 50 × (90 − 30) / 43200
	require.InDelta(t, 0.069444, slobudget.Saved(rate, 30*time.Minute, 90*time.Minute, period), 1e-6)
	require.Zero(t, slobudget.Saved(rate, 30*time.Minute, 20*time.Minute, period), "slower than by hand saves nothing, never less")

	for d, want := range map[time.Duration]time.Duration{
		0: time.Minute, time.Second: time.Minute, 30 * time.Minute: 30 * time.Minute,
		30*time.Minute + time.Second: 31 * time.Minute, 59*time.Minute + 59*time.Second: time.Hour,
	} {
		require.Equal(t, want, slobudget.Window(d), "window of %s", d)
	}

	_, ok := slobudget.MTTR(nil)
	require.False(t, ok)
	m, ok := slobudget.MTTR([]time.Duration{10 * time.Minute, 30 * time.Minute, 20 * time.Minute})
	require.True(t, ok)
	require.Equal(t, 20*time.Minute, m)

	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	_, ok = slobudget.MTBF([]time.Time{t0})
	require.False(t, ok, "one incident has no time between failures")
	b, ok := slobudget.MTBF([]time.Time{t0.Add(30 * time.Hour), t0, t0.Add(6 * time.Hour)})
	require.True(t, ok)
	require.Equal(t, 15*time.Hour, b, "gaps 6 h and 24 h, in any input order")
}

// promCall is one query the fake Prometheus received.
type promCall struct{ query, time string }

// recordingProm answers /api/v1/query with value for every query, and records
// what it was asked.
func recordingProm(t *testing.T, answer func(query string) string) (*httptest.Server, func() []promCall) {
	var mu sync.Mutex
	var calls []promCall
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/query" {
			http.NotFound(w, r)
			return
		}
		require.NoError(t, r.ParseForm())
		q := r.Form.Get("query")
		mu.Lock()
		calls = append(calls, promCall{q, r.Form.Get("time")})
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, answer(q))
	}))
	t.Cleanup(ts.Close)
	return ts, func() []promCall { mu.Lock(); defer mu.Unlock(); return append([]promCall(nil), calls...) }
}

func vector(v string) string {
	return `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1795510800,"` + v + `"]}]}}`
}

const empty = `{"status":"success","data":{"resultType":"vector","result":[]}}`

func TestErrorRatioAt(t *testing.T) {
	s := loadSLO(t)
	ts, calls := recordingProm(t, func(q string) string {
		if q == s.ErrorRatioQuery(31*time.Minute) {
			return vector("0.05")
		}
		return empty
	})
	r, err := slobudget.New(ts.URL, func() map[string]*slos.SLO { return map[string]*slos.SLO{s.Name(): s} })
	require.NoError(t, err)
	end := time.Date(2026, 11, 24, 9, 31, 0, 0, time.UTC)

	ratio, ok, err := r.ErrorRatioAt(context.Background(), s, 31*time.Minute, end)
	require.NoError(t, err)
	require.True(t, ok)
	require.InDelta(t, 0.05, ratio, 1e-12)
	got := calls()
	require.Len(t, got, 1)
	require.Contains(t, got[0].query, `[31m]`, "the incident's own window")
	require.Equal(t, fmt.Sprint(end.Unix()), got[0].time, "at the incident's end")

	_, ok, err = r.ErrorRatioAt(context.Background(), s, time.Hour, end)
	require.NoError(t, err)
	require.False(t, ok, "no data is not an error, and not a zero")

	ts.Close()
	_, _, err = r.ErrorRatioAt(context.Background(), s, time.Hour, end)
	require.ErrorContains(t, err, "read SLO checkout-availability over 1h ending 2026-11-24T09:31:00Z from Prometheus")
}
