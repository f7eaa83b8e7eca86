package metrics

import (
	"context"
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestCachedCountCallsAtMostOncePerTTL(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1000, 0)}
	var calls atomic.Int32
	n, fail := 3, error(nil)
	c := &cachedCount{ttl: 15 * time.Second, now: clock.now, val: math.NaN(), f: func(ctx context.Context) (int, error) {
		calls.Add(1)
		_, hasDeadline := ctx.Deadline()
		require.True(t, hasDeadline, "each call is bounded")
		return n, fail
	}}

	require.Equal(t, 3.0, c.value())
	n = 5
	clock.add(14 * time.Second)
	require.Equal(t, 3.0, c.value(), "within the TTL the cached count serves")
	require.EqualValues(t, 1, calls.Load())
	clock.add(2 * time.Second)
	require.Equal(t, 5.0, c.value())
	require.EqualValues(t, 2, calls.Load())

	// A failure is unknown, not the stale count; it is retried after the
	// TTL, not at every scrape.
	fail = errors.New("temporal down")
	clock.add(16 * time.Second)
	require.True(t, math.IsNaN(c.value()))
	require.True(t, math.IsNaN(c.value()))
	require.EqualValues(t, 3, calls.Load())
	fail, n = nil, 0
	clock.add(16 * time.Second)
	require.Equal(t, 0.0, c.value())
}

func TestCachedCountServesThePreviousValueWhileACallIsInFlight(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1000, 0)}
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	var calls atomic.Int32
	c := &cachedCount{ttl: time.Second, now: clock.now, val: math.NaN(), f: func(context.Context) (int, error) {
		if calls.Add(1) == 1 {
			return 2, nil
		}
		entered <- struct{}{}
		<-release
		return 9, nil
	}}
	require.Equal(t, 2.0, c.value())
	clock.add(2 * time.Second)

	done := make(chan float64)
	go func() { done <- c.value() }()
	<-entered
	// A concurrent scrape does not wait on, or duplicate, the slow call.
	require.Equal(t, 2.0, c.value())
	close(release)
	require.Equal(t, 9.0, <-done)
	require.EqualValues(t, 2, calls.Load())
}

func TestCachedCountSurvivesAPanickingCount(t *testing.T) {
	c := &cachedCount{ttl: 0, now: time.Now, val: math.NaN(), f: func(context.Context) (int, error) { panic("boom") }}
	require.Panics(t, func() { c.value() })
	c.f = func(context.Context) (int, error) { return 1, nil }
	require.Equal(t, 1.0, c.value(), "not stuck refreshing after a panic")
}

func TestCachedCountConstructor(t *testing.T) {
	f := CachedCount(time.Minute, func(context.Context) (int, error) { return 7, nil })
	require.Equal(t, 7.0, f())
}
