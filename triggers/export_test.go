package triggers

import (
	"context"

	"github.com/salve-sre/salve/internal/domain"
)

// HandleBatch hands evs to the trigger as one lane's batch, as the
// consumer does, and returns the errors of all their parts.
func (t *Trigger) HandleBatch(ctx context.Context, evs []domain.AlertEvent) []error {
	var ps []part
	for _, ev := range evs {
		ps = append(ps, t.parts(&Inbound{Event: ev})...)
	}
	return t.handleBatch(ctx, ps)
}
