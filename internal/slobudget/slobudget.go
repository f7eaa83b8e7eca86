// Package slobudget reads SLOs' error budgets from Prometheus: the share of
// bad events over each burn-rate window and the period, with the SLO's own
// queries (slos.SLO.ErrorRatioQuery), at the moment a decision needs them.
package slobudget

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/salve-sre/salve/internal/tracing"
	"github.com/salve-sre/salve/slos"
)

// ErrUnknownSLO is Burn's answer for a name no loaded SLO has.
var ErrUnknownSLO = errors.New("unknown SLO")

// Reader reads burns. A burn read less than TTL ago is reused — and so is
// a failed read, so a Prometheus that does not answer costs one read per
// SLO per TTL, not one per alert — and concurrent reads of one SLO share
// one read: an alert storm does not become a query storm, nor a stalled
// trigger.
type Reader struct {
	API v1.API
	// SLOs is the current SLO set, by name.
	SLOs func() map[string]*slos.SLO
	// TTL is how long a read burn (or a failed read) is reused; 0 = 15s.
	TTL time.Duration
	// Timeout bounds one read (all its windows, read in parallel); 0 = 2s.
	Timeout time.Duration
	Now     func() time.Time

	mu       sync.Mutex
	cache    map[string]cached
	inflight map[string]*call
}

type cached struct {
	burn slos.Burn
	err  error
	at   time.Time
}

type call struct {
	done chan struct{}
	res  cached
}

// New returns a Reader on the Prometheus at url.
func New(url string, set func() map[string]*slos.SLO) (*Reader, error) {
	c, err := api.NewClient(api.Config{Address: url, RoundTripper: tracing.Transport(api.DefaultRoundTripper)})
	if err != nil {
		return nil, fmt.Errorf("prometheus client for %s: %w", url, err)
	}
	return &Reader{API: v1.NewAPI(c), SLOs: set}, nil
}

// Burn reads the named SLO's burn now. An error means no figure could be
// read (unknown SLO, Prometheus unreachable); a window without data, or
// whose query failed, leaves the conditions that need it undecided
// (slos.SLO.Evaluate).
func (r *Reader) Burn(ctx context.Context, name string) (slos.Burn, error) {
	s := r.SLOs()[name]
	if s == nil {
		return slos.Burn{}, fmt.Errorf("%w %q: no kind: SLO file with that metadata.name is loaded", ErrUnknownSLO, name)
	}
	now := time.Now
	if r.Now != nil {
		now = r.Now
	}
	ttl := r.TTL
	if ttl <= 0 {
		ttl = 15 * time.Second
	}
	key := name + "\x00" + s.Hash
	r.mu.Lock()
	if c, ok := r.cache[key]; ok && now().Sub(c.at) < ttl {
		r.mu.Unlock()
		return c.burn, c.err
	}
	if c := r.inflight[key]; c != nil {
		r.mu.Unlock()
		select {
		case <-c.done:
			return c.res.burn, c.res.err
		case <-ctx.Done():
			return slos.Burn{}, ctx.Err()
		}
	}
	c := &call{done: make(chan struct{})}
	if r.inflight == nil {
		r.inflight = map[string]*call{}
	}
	r.inflight[key] = c
	r.mu.Unlock()

	// The read is the SLO's, not this caller's: a caller that gives up
	// does not fail the others waiting on it.
	at := now()
	c.res = cached{at: at}
	c.res.burn, c.res.err = r.read(context.WithoutCancel(ctx), s, at)

	r.mu.Lock()
	if r.cache == nil || len(r.cache) > 10_000 {
		r.cache = map[string]cached{}
	}
	r.cache[key] = c.res
	delete(r.inflight, key)
	r.mu.Unlock()
	close(c.done)
	return c.res.burn, c.res.err
}

// read queries every window in parallel within the timeout.
func (r *Reader) read(ctx context.Context, s *slos.SLO, at time.Time) (slos.Burn, error) {
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	windows := s.Windows()
	type result struct {
		ratio float64
		ok    bool
		err   error
	}
	results := make([]result, len(windows))
	var wg sync.WaitGroup
	for i, w := range windows {
		wg.Go(func() {
			v, _, _, err := r.API.Query(ctx, s.ErrorRatioQuery(w), at)
			if err != nil {
				results[i].err = err
				return
			}
			results[i].ratio, results[i].ok, results[i].err = one(v)
		})
	}
	wg.Wait()
	ratios := map[string]float64{}
	var errs []error
	for i, res := range results {
		switch {
		case res.err != nil:
			errs = append(errs, fmt.Errorf("over %s: %w", slos.PromDuration(windows[i]), res.err))
		case res.ok:
			ratios[slos.PromDuration(windows[i])] = res.ratio
		}
	}
	if len(errs) == len(windows) {
		return slos.Burn{}, fmt.Errorf("read SLO %s from Prometheus: %w", s.Name(), errors.Join(errs...))
	}
	b := s.Evaluate(at, ratios)
	if len(errs) > 0 {
		b.ReadErrors = errors.Join(errs...).Error()
	}
	return b, nil
}

// errSeries says an SLI query answers with more than one series.
var errSeries = errors.New("the SLI query returns several series: aggregate good and total to one series each (e.g. sum(rate(...)))")

// one is the one value a ratio query returns; false for no data (an empty
// vector, or a ratio of zero requests: NaN).
func one(v model.Value) (float64, bool, error) {
	var x float64
	switch t := v.(type) {
	case model.Vector:
		switch len(t) {
		case 0:
			return 0, false, nil
		case 1:
			x = float64(t[0].Value)
		default:
			return 0, false, errSeries
		}
	case *model.Scalar:
		x = float64(t.Value)
	default:
		return 0, false, nil
	}
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return 0, false, nil
	}
	return x, true, nil
}
