package slobudget_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/internal/slobudget"
	"github.com/salve-sre/salve/slos"
)

func loadSLO(t testing.TB) *slos.SLO {
	data, err := os.ReadFile("../../slos/checkout-availability.yaml")
	require.NoError(t, err)
	s, err := slos.Parse("checkout-availability.yaml", data)
	require.NoError(t, err)
	return s
}

// fakeProm answers every ratio query with the error ratio of its window.
func fakeProm(t testing.TB, ratios map[string]string, queries *atomic.Int64) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		queries.Add(1)
		_ = r.ParseForm()
		q := r.Form.Get("query")
		for win, v := range ratios {
			if strings.Contains(q, "["+win+"]") {
				fmt.Fprintf(w, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,%q]}]}}`, v)
				return
			}
		}
		fmt.Fprint(w, `{"status":"success","data":{"resultType":"vector","result":[]}}`)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestBurnReadsEveryWindowOnceThenReuses(t *testing.T) {
	s := loadSLO(t)
	var queries atomic.Int64
	// 2 % errors over the last hour and 5 minutes, 0.05 % over the rest.
	srv := fakeProm(t, map[string]string{"5m": "0.02", "30m": "0.02", "1h": "0.02", "2h": "0.011", "6h": "0.004", "1d": "0.0012", "3d": "0.0006", "30d": "0.0002"}, &queries)
	r, err := slobudget.New(srv.URL, func() map[string]*slos.SLO { return map[string]*slos.SLO{s.Name(): s} })
	require.NoError(t, err)
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	r.Now = func() time.Time { return now }
	b, err := r.Burn(context.Background(), "checkout-availability")
	require.NoError(t, err)
	require.EqualValues(t, 8, queries.Load(), "one query per window")
	require.Equal(t, "fast", b.Speed())
	require.InDelta(t, 20, b.BurnRate["1h"], 1e-9)
	require.InDelta(t, 0.8, b.BudgetRemaining, 1e-9)

	// Within the TTL the burn is reused; after it, read again.
	now = now.Add(10 * time.Second)
	_, err = r.Burn(context.Background(), "checkout-availability")
	require.NoError(t, err)
	require.EqualValues(t, 8, queries.Load())
	now = now.Add(10 * time.Second)
	_, err = r.Burn(context.Background(), "checkout-availability")
	require.NoError(t, err)
	require.EqualValues(t, 16, queries.Load())

	_, err = r.Burn(context.Background(), "nope")
	require.True(t, errors.Is(err, slobudget.ErrUnknownSLO))

	// No data for the windows: a burn, unknown.
	empty := fakeProm(t, nil, &queries)
	r2, err := slobudget.New(empty.URL, func() map[string]*slos.SLO { return map[string]*slos.SLO{s.Name(): s} })
	require.NoError(t, err)
	b, err = r2.Burn(context.Background(), "checkout-availability")
	require.NoError(t, err)
	require.Equal(t, "unknown", b.Speed())

	// Prometheus down: an error, not a burn.
	srv.Close()
	now = now.Add(time.Minute)
	_, err = r.Burn(context.Background(), "checkout-availability")
	require.Error(t, err)
}

// BenchmarkBurn: a read of every window from an HTTP Prometheus on
// loopback (the floor: one answered query, measured alone), and a read the
// cache answers.
func BenchmarkBurn(b *testing.B) {
	s := loadSLO(b)
	var queries atomic.Int64
	srv := fakeProm(b, map[string]string{"5m": "0.001", "30m": "0.001", "1h": "0.001", "2h": "0.001", "6h": "0.001", "1d": "0.001", "3d": "0.001", "30d": "0.001"}, &queries)
	set := func() map[string]*slos.SLO { return map[string]*slos.SLO{s.Name(): s} }
	b.Run("floor-one-query", func(b *testing.B) {
		for b.Loop() {
			resp, err := http.Get(srv.URL + "/api/v1/query?query=x%5B1h%5D")
			require.NoError(b, err)
			resp.Body.Close()
		}
	})
	b.Run("uncached", func(b *testing.B) {
		r, err := slobudget.New(srv.URL, set)
		require.NoError(b, err)
		r.TTL = time.Nanosecond
		for b.Loop() {
			_, err := r.Burn(context.Background(), s.Name())
			require.NoError(b, err)
		}
	})
	b.Run("cached", func(b *testing.B) {
		r, err := slobudget.New(srv.URL, set)
		require.NoError(b, err)
		for b.Loop() {
			_, err := r.Burn(context.Background(), s.Name())
			require.NoError(b, err)
		}
	})
}

// A failed read is reused for the TTL too, and concurrent reads of one SLO
// share one read: a hung or down Prometheus costs one read per SLO per TTL.
func TestFailedAndConcurrentReadsAreShared(t *testing.T) {
	s := loadSLO(t)
	var queries atomic.Int64
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		queries.Add(1)
		<-release
		http.Error(w, "overloaded", http.StatusServiceUnavailable)
	}))
	t.Cleanup(srv.Close)
	r, err := slobudget.New(srv.URL, func() map[string]*slos.SLO { return map[string]*slos.SLO{s.Name(): s} })
	require.NoError(t, err)
	errs := make(chan error, 10)
	for range 10 {
		go func() {
			_, err := r.Burn(context.Background(), s.Name())
			errs <- err
		}()
	}
	require.Eventually(t, func() bool { return queries.Load() == 8 }, 5*time.Second, 10*time.Millisecond)
	close(release)
	for range 10 {
		require.Error(t, <-errs)
	}
	require.EqualValues(t, 8, queries.Load(), "ten callers, one read of 8 windows")
	_, err = r.Burn(context.Background(), s.Name())
	require.Error(t, err)
	require.EqualValues(t, 8, queries.Load(), "the failure is reused within the TTL")
}

// An SLI that answers with several series is an error for its window, said
// plainly; the other windows still decide.
func TestSeveralSeriesIsAnError(t *testing.T) {
	s := loadSLO(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		if strings.Contains(r.Form.Get("query"), "[5m]") {
			fmt.Fprint(w, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{"route":"a"},"value":[1,"0.1"]},{"metric":{"route":"b"},"value":[1,"0.2"]}]}}`)
			return
		}
		fmt.Fprint(w, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"0.0001"]}]}}`)
	}))
	t.Cleanup(srv.Close)
	r, err := slobudget.New(srv.URL, func() map[string]*slos.SLO { return map[string]*slos.SLO{s.Name(): s} })
	require.NoError(t, err)
	b, err := r.Burn(context.Background(), s.Name())
	require.NoError(t, err)
	require.Contains(t, b.ReadErrors, "over 5m: the SLI query returns several series")
	require.Equal(t, "none", b.Speed(), "1h rules the first fast pair out without 5m")
	require.Contains(t, b.Summary(), "some windows could not be read")
}
