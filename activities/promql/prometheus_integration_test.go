package promql_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/activities/promql"
	"github.com/salve-sre/salve/activities/step"
	"github.com/salve-sre/salve/internal/testenv"
)

// demoApp is a service's /metrics endpoint in the text exposition format,
// written by hand: a gauge the test sets, and request/error counters that
// grow by 100 requests and errorsPerScrape errors at every scrape.
type demoApp struct {
	mu              sync.Mutex
	queueDepth      float64
	requests, errs  float64
	errorsPerScrape float64
}

func (a *demoApp) setQueueDepth(v float64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.queueDepth = v
}

func (a *demoApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/metrics" {
		http.NotFound(w, r)
		return
	}
	a.mu.Lock()
	a.requests += 100
	a.errs += a.errorsPerScrape
	body := fmt.Sprintf(`# HELP demo_queue_depth Jobs waiting.
# TYPE demo_queue_depth gauge
demo_queue_depth{queue="orders"} %g
# HELP demo_requests_total Requests served.
# TYPE demo_requests_total counter
demo_requests_total %g
# HELP demo_errors_total Requests that failed.
# TYPE demo_errors_total counter
demo_errors_total %g
`, a.queueDepth, a.requests, a.errs)
	a.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	_, _ = w.Write([]byte(body))
}

// TestAgainstRealPrometheus runs both step kinds against Debian's
// Prometheus scraping a /metrics endpoint this test serves.
func TestAgainstRealPrometheus(t *testing.T) {
	app := &demoApp{queueDepth: 42}
	target := httptest.NewServer(app)
	t.Cleanup(target.Close)
	prom := testenv.StartPrometheus(t, target.URL)
	prom.WaitTargetsUp(t)

	var beats atomic.Int64
	opts := promql.Options{URL: prom.URL, Heartbeat: func(context.Context, ...any) { beats.Add(1) }}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	t.Run("query returns the value the app exposes", func(t *testing.T) {
		res, err := run(t, ctx, opts, promql.QueryKind, map[string]any{"query": `demo_queue_depth{queue="orders"}`})
		require.NoError(t, err)
		require.Equal(t, "vector", res.Output["resultType"])
		require.Equal(t, 42.0, res.Output["value"])
		require.Equal(t, 1, res.Output["count"])
		series := res.Output["series"].([]map[string]any)
		require.Len(t, series, 1)
		labels := series[0]["labels"].(map[string]string)
		require.Equal(t, "orders", labels["queue"])
		require.Equal(t, "test", labels["job"])

		res, err = run(t, ctx, opts, promql.QueryKind, map[string]any{"query": "scalar(demo_queue_depth) * 2"})
		require.NoError(t, err)
		require.Equal(t, "scalar", res.Output["resultType"])
		require.Equal(t, 84.0, res.Output["value"])

		res, err = run(t, ctx, opts, promql.QueryKind, map[string]any{"query": "demo_queue_depth > 1000"})
		require.NoError(t, err)
		require.Equal(t, 0, res.Output["count"])
		require.NotContains(t, res.Output, "value")
	})

	t.Run("assert passes once the error ratio has held for 2s", func(t *testing.T) {
		start := time.Now()
		res, err := run(t, ctx, opts, promql.AssertKind, map[string]any{
			"query":    "rate(demo_errors_total[5s]) / rate(demo_requests_total[5s]) < 0.01",
			"for":      "2s",
			"within":   "15s",
			"interval": "250ms",
		})
		require.NoError(t, err)
		held, err := time.ParseDuration(res.Output["heldFor"].(string))
		require.NoError(t, err)
		require.GreaterOrEqual(t, held, 2*time.Second)
		require.GreaterOrEqual(t, time.Since(start), 2*time.Second)
		require.GreaterOrEqual(t, res.Output["polls"], 3)
		require.Equal(t, 0.0, res.Output["lastValue"], "no errors: the ratio is 0")
		require.Positive(t, beats.Load())
	})

	t.Run("assert waits for the condition to start holding", func(t *testing.T) {
		app.setQueueDepth(50)
		require.Eventually(t, func() bool {
			res, err := run(t, ctx, opts, promql.QueryKind, map[string]any{"query": "demo_queue_depth"})
			return err == nil && res.Output["value"] == 50.0
		}, 10*time.Second, 100*time.Millisecond)
		time.AfterFunc(1500*time.Millisecond, func() { app.setQueueDepth(5) })
		start := time.Now()
		res, err := run(t, ctx, opts, promql.AssertKind, map[string]any{
			"query": "demo_queue_depth < 10", "for": "2s", "within": "15s", "interval": "250ms",
		})
		require.NoError(t, err)
		require.GreaterOrEqual(t, time.Since(start), 3500*time.Millisecond, "1.5s before the change, then 2s held")
		require.Equal(t, 5.0, res.Output["lastValue"])
	})

	t.Run("assert fails at within when the condition never holds", func(t *testing.T) {
		start := time.Now()
		_, err := run(t, ctx, opts, promql.AssertKind, map[string]any{
			"query": "demo_queue_depth > 1000", "within": "3s", "interval": "500ms",
		})
		elapsed := time.Since(start)
		require.ErrorIs(t, err, step.ErrPermanent)
		require.Contains(t, err.Error(), "condition `demo_queue_depth > 1000` did not hold within 3s: last result empty at ")
		require.GreaterOrEqual(t, elapsed, 3*time.Second)
		require.Less(t, elapsed, 6*time.Second)
	})

	t.Run("bad PromQL is permanent with Prometheus's message", func(t *testing.T) {
		for _, kind := range []string{promql.QueryKind, promql.AssertKind} {
			start := time.Now()
			_, err := run(t, ctx, opts, kind, map[string]any{"query": "rate(demo_errors_total[5s]", "within": "10s"})
			require.ErrorIs(t, err, step.ErrPermanent, kind)
			require.False(t, errors.Is(err, step.ErrInvalidParams), kind)
			require.Contains(t, err.Error(), "bad_data", kind)
			require.Contains(t, err.Error(), "parse error", kind)
			require.Less(t, time.Since(start), 2*time.Second, "%s fails at once, without polling until within", kind)
		}
	})
}
