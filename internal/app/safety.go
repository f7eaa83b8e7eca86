package app

import (
	"context"

	"github.com/salve-sre/salve/internal/safety"
	"github.com/salve-sre/salve/internal/stats"
	"github.com/salve-sre/salve/triggers"
)

// breakers lists the circuit breakers of the runbooks that declare one.
func breakers(rbs triggers.Runbooks, g *safety.Guard) func(ctx context.Context) ([]stats.Breaker, error) {
	return func(ctx context.Context) ([]stats.Breaker, error) {
		var out []stats.Breaker
		set := rbs.Current()
		if set == nil {
			return out, nil
		}
		for _, rb := range set.All() {
			if rb.Spec.Safety.CircuitBreaker == nil {
				continue
			}
			st, err := g.State(ctx, rb.Name())
			if err != nil {
				return nil, err
			}
			out = append(out, stats.Breaker{Runbook: rb.Name(), Open: st.Open, OpenSince: st.OpenSince, RecentFailures: st.Failures})
		}
		return out, nil
	}
}
