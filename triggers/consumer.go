package triggers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/salve-sre/salve/internal/bus"
	"github.com/salve-sre/salve/internal/domain"
)

// Consumer feeds stored alerts to a Trigger through a durable JetStream pull
// consumer. A message is acked only after the Trigger handled it; on
// errors it is nak'ed with a growing delay, so nothing is dropped while
// Temporal is down.
type Consumer struct {
	JS      jetstream.JetStream
	Trigger *Trigger
	Audit   AuditRecorder
	Log     *slog.Logger
	// AckWait is how long a message may be in flight before JetStream
	// redelivers it (e.g. after a crash). 0 = 30s.
	AckWait time.Duration
	// MaxBackoff caps the nak delay. 0 = 30s.
	MaxBackoff time.Duration
}

// Run consumes until ctx ends.
func (c *Consumer) Run(ctx context.Context) error {
	ackWait := c.AckWait
	if ackWait <= 0 {
		ackWait = 30 * time.Second
	}
	cons, err := c.JS.CreateOrUpdateConsumer(ctx, bus.StreamAlerts, jetstream.ConsumerConfig{
		Durable:       bus.TriggerDurable,
		Description:   "Salve trigger: matches alerts to runbooks",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       ackWait,
		MaxDeliver:    -1, // never give up on an accepted alert
		DeliverPolicy: jetstream.DeliverAllPolicy,
		FilterSubject: bus.SubjectAlerts + ".>",
		MaxAckPending: 1000,
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting
		}
		return fmt.Errorf("create trigger consumer: %w", err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(64))
	if err != nil {
		return fmt.Errorf("consume alerts: %w", err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	for {
		msg, err := it.Next()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return nil
			}
			c.Log.Warn("trigger consumer: next message", "error", err)
			continue
		}
		c.handle(ctx, msg)
	}
}

func (c *Consumer) handle(ctx context.Context, msg jetstream.Msg) {
	var ev domain.AlertEvent
	if err := json.Unmarshal(msg.Data(), &ev); err != nil || ev.ID == "" {
		// Nothing will ever decode this: stop redelivering it, but keep a
		// record of what was dropped and why.
		if err == nil {
			err = errors.New("alert event without ID")
		}
		c.Log.Error("undecodable alert message; terminating it", "subject", msg.Subject(), "error", err)
		meta, _ := msg.Metadata()
		seq := uint64(0)
		if meta != nil {
			seq = meta.Sequence.Stream
		}
		aerr := c.Audit.RecordAll(ctx, []domain.AuditEvent{{
			ID: fmt.Sprintf("alert.undecodable/%d", seq), Time: time.Now().UTC(),
			Actor: domain.Actor{Kind: domain.ActorSystem, Name: "trigger"}, Action: domain.ActionAlertUndecodable,
			Error: err.Error(), Detail: map[string]string{"subject": msg.Subject(), "streamSeq": fmt.Sprint(seq)},
		}})
		if aerr != nil {
			c.nak(msg, aerr)
			return
		}
		_ = msg.Term()
		return
	}
	if err := c.Trigger.Handle(ctx, ev); err != nil {
		c.nak(msg, err)
		return
	}
	if err := msg.DoubleAck(ctx); err != nil {
		// Not fatal: the message is redelivered and handled idempotently.
		c.Log.Warn("ack alert", "alert_id", ev.ID, "error", err)
	}
}

func (c *Consumer) nak(msg jetstream.Msg, cause error) {
	delay := time.Second
	if meta, err := msg.Metadata(); err == nil && meta.NumDelivered > 1 {
		for i := uint64(1); i < meta.NumDelivered && delay < c.maxBackoff(); i++ {
			delay *= 2
		}
	}
	delay = min(delay, c.maxBackoff())
	c.Log.Warn("alert not handled; will retry", "subject", msg.Subject(), "retry_in", delay, "error", cause)
	if err := msg.NakWithDelay(delay); err != nil {
		c.Log.Warn("nak alert", "error", err)
	}
}

func (c *Consumer) maxBackoff() time.Duration {
	if c.MaxBackoff > 0 {
		return c.MaxBackoff
	}
	return 30 * time.Second
}
