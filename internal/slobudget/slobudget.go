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

// Reader reads burns. A burn read less than TTL ago is reused: an alert
// storm does not become a query storm.
type Reader struct {
	API v1.API
	// SLOs is the current SLO set, by name.
	SLOs func() map[string]*slos.SLO
	// TTL is how long a read burn is reused; 0 = 15s.
	TTL time.Duration
	// Timeout bounds one read (all its windows); 0 = 5s.
	Timeout time.Duration
	Now     func() time.Time

	mu    sync.Mutex
	cache map[string]slos.Burn
}

// New returns a Reader on the Prometheus at url.
func New(url string, set func() map[string]*slos.SLO) (*Reader, error) {
	c, err := api.NewClient(api.Config{Address: url, RoundTripper: tracing.Transport(api.DefaultRoundTripper)})
	if err != nil {
		return nil, fmt.Errorf("prometheus client for %s: %w", url, err)
	}
	return &Reader{API: v1.NewAPI(c), SLOs: set}, nil
}

// Burn reads the named SLO's burn now. An error means the figures could
// not be read (unknown SLO, Prometheus unreachable); windows without data
// make a burn whose Known is false.
func (r *Reader) Burn(ctx context.Context, name string) (slos.Burn, error) {
	s := r.SLOs()[name]
	if s == nil {
		return slos.Burn{}, fmt.Errorf("%w %q: no kind: SLO file with that metadata.name is loaded", ErrUnknownSLO, name)
	}
	now := time.Now
	if r.Now != nil {
		now = r.Now
	}
	at := now()
	ttl := r.TTL
	if ttl <= 0 {
		ttl = 15 * time.Second
	}
	r.mu.Lock()
	if b, ok := r.cache[name+"\x00"+s.Hash]; ok && at.Sub(b.At) < ttl {
		r.mu.Unlock()
		return b, nil
	}
	r.mu.Unlock()

	timeout := r.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ratios := map[string]float64{}
	for _, w := range s.Windows() {
		v, _, _, err := r.API.Query(ctx, s.ErrorRatioQuery(w), at)
		if err != nil {
			return slos.Burn{}, fmt.Errorf("read SLO %s over %s from Prometheus: %w", name, slos.PromDuration(w), err)
		}
		if x, ok := scalar(v); ok {
			ratios[slos.PromDuration(w)] = x
		}
	}
	b := s.Evaluate(at, ratios)
	r.mu.Lock()
	if r.cache == nil || len(r.cache) > 10_000 {
		r.cache = map[string]slos.Burn{}
	}
	r.cache[name+"\x00"+s.Hash] = b
	r.mu.Unlock()
	return b, nil
}

// scalar is the one value a ratio query returns; false for no data (an
// empty vector, or a ratio of zero requests: NaN).
func scalar(v model.Value) (float64, bool) {
	var x float64
	switch t := v.(type) {
	case model.Vector:
		if len(t) != 1 {
			return 0, false
		}
		x = float64(t[0].Value)
	case *model.Scalar:
		x = float64(t.Value)
	default:
		return 0, false
	}
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return 0, false
	}
	return x, true
}
