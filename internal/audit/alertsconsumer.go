package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/salve-sre/salve/internal/bus"
	"github.com/salve-sre/salve/internal/domain"
)

// AlertsDurable is the consumer that feeds the incidents read model.
const AlertsDurable = bus.IncidentsDurable

// AlertProjector reads ALERTS into the incidents read model. It has its own
// durable consumer, so it never competes with the trigger for messages.
type AlertProjector struct {
	JS    jetstream.JetStream
	Store *Store
	Log   *slog.Logger
	// Metrics, when set, counts alerts left out.
	Metrics IsolationMetrics
}

// Run projects until ctx ends.
func (p *AlertProjector) Run(ctx context.Context) error {
	cons, err := bus.EnsureConsumer(ctx, p.JS, bus.StreamAlerts, jetstream.ConsumerConfig{
		Durable:     AlertsDurable,
		Description: "Salve incidents read model: alert firing and resolved times",
		AckPolicy:   jetstream.AckExplicitPolicy,
		AckWait:     30 * time.Second,
		MaxDeliver:  -1,
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("create incidents consumer: %w", err)
	}
	for ctx.Err() == nil {
		msgs, err := cons.Fetch(256, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			p.Log.Warn("incidents: fetch", "error", err)
			sleep(ctx, time.Second)
			continue
		}
		for m := range msgs.Messages() {
			var ev domain.AlertEvent
			if err := json.Unmarshal(m.Data(), &ev); err != nil || ev.Fingerprint == "" {
				_ = m.Term() // the trigger audits undecodable alerts
				continue
			}
			if err := p.Store.RecordAlert(ctx, ev); err != nil {
				if p.Store.Ping(ctx) == nil {
					// The store answers but refuses this alert: retrying it
					// would stop the read model for ever. The trigger
					// handles the alert itself; only its timeline entry is
					// missing, which the log and the metric say.
					p.Log.Error("incidents: an alert the store cannot keep is left out of the read model", "alert_id", strconv.Quote(ev.ID), "error", err)
					if p.Metrics != nil {
						p.Metrics.EventIsolated("incidents")
					}
					_ = m.Term()
					continue
				}
				p.Log.Warn("incidents: record alert; will retry", "error", err)
				_ = m.NakWithDelay(time.Second)
				continue
			}
			_ = m.Ack()
		}
	}
	return nil
}
