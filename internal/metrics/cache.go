package metrics

import (
	"context"
	"math"
	"sync"
	"time"
)

// CountTimeout bounds one call of a CachedCount's function, so a slow
// backend delays one scrape at most this long.
const CountTimeout = 10 * time.Second

// CachedCount makes an expensive count (e.g. runs.PendingApprovals, which
// asks Temporal about every running run) cheap enough for a GaugeFunc: f
// is called at most once per ttl, by one scrape at a time; scrapes that
// arrive while a call is in flight get the previous value. When f fails
// the value is NaN (unknown) until a later call succeeds: a stale count
// would look like a real one.
func CachedCount(ttl time.Duration, f func(context.Context) (int, error)) func() float64 {
	c := &cachedCount{ttl: ttl, f: f, now: time.Now, val: math.NaN()}
	return c.value
}

type cachedCount struct {
	ttl time.Duration
	f   func(context.Context) (int, error)
	now func() time.Time

	mu         sync.Mutex
	val        float64
	at         time.Time // of the last call's end; zero = never called
	refreshing bool
}

func (c *cachedCount) value() float64 {
	c.mu.Lock()
	if c.refreshing || (!c.at.IsZero() && c.now().Sub(c.at) < c.ttl) {
		v := c.val
		c.mu.Unlock()
		return v
	}
	c.refreshing = true
	c.mu.Unlock()

	v := math.NaN()
	defer func() {
		// Deferred so a panicking f cannot leave the gauge stuck refreshing.
		c.mu.Lock()
		c.refreshing, c.at, c.val = false, c.now(), v
		c.mu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), CountTimeout)
	defer cancel()
	if n, err := c.f(ctx); err == nil {
		v = float64(n)
	}
	return v
}
