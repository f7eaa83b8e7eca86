package slobudget

import (
	"context"
	"fmt"
	"time"

	"github.com/salve-sre/salve/slos"
)

// ErrorRatioAt reads the share of bad events of s over window, ending at
// at: one instant query of s.ErrorRatioQuery(window), not cached (each
// incident asks about its own end). ok is false when Prometheus had no
// data (no requests in the window, or the series did not exist).
//
// The query comes only from the SLO file (trusted config); at and window
// come from a run's start and close times, never from an alert.
func (r *Reader) ErrorRatioAt(ctx context.Context, s *slos.SLO, window time.Duration, at time.Time) (ratio float64, ok bool, err error) {
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second // one query, not a burn's eight
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	v, _, _, err := r.API.Query(ctx, s.ErrorRatioQuery(window), at)
	if err != nil {
		return 0, false, fmt.Errorf("read SLO %s over %s ending %s from Prometheus: %w", s.Name(), slos.PromDuration(window), at.UTC().Format(time.RFC3339), err)
	}
	return one(v)
}
