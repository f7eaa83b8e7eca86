package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Durable consumers of the audit side (the trigger's is TriggerDurable).
const (
	RecorderDurable = "salve-audit-recorder"
	// AlertsRecorderDurable is the audit recorder's consumer of ALERTS:
	// it records each stored alert's alert.accepted event.
	AlertsRecorderDurable = "salve-audit-alerts"
	IncidentsDurable      = "salve-incidents"
)

// Consumer names one of Salve's durable consumers.
type Consumer struct {
	Name    string // as in metrics and /readyz: trigger, recorder, incidents
	Stream  string
	Durable string
}

// Consumers are every durable consumer Salve runs.
var Consumers = []Consumer{
	{Name: "trigger", Stream: StreamAlerts, Durable: TriggerDurable},
	{Name: "recorder", Stream: StreamAudit, Durable: RecorderDurable},
	{Name: "recorder-alerts", Stream: StreamAlerts, Durable: AlertsRecorderDurable},
	{Name: "incidents", Stream: StreamAlerts, Durable: IncidentsDurable},
}

// Backlog is what one consumer has not processed yet.
type Backlog struct {
	Consumer
	// Pending counts messages not yet delivered plus those delivered and
	// not yet acknowledged.
	Pending uint64
	// Oldest is the age of the oldest message not yet acknowledged; 0
	// when there is none.
	Oldest time.Duration
}

// ErrNoConsumer: the consumer does not exist yet (its role has not run).
var ErrNoConsumer = errors.New("consumer not created yet")

// ReadBacklog measures c's backlog from the consumer's state in
// JetStream, so any process can read it, whichever process consumes.
func ReadBacklog(ctx context.Context, js jetstream.JetStream, c Consumer, now time.Time) (Backlog, error) {
	b := Backlog{Consumer: c}
	st, err := js.Stream(ctx, c.Stream)
	if err != nil {
		return b, fmt.Errorf("stream %s: %w", c.Stream, err)
	}
	cons, err := st.Consumer(ctx, c.Durable)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return b, ErrNoConsumer
	}
	if err != nil {
		return b, fmt.Errorf("consumer %s: %w", c.Durable, err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return b, fmt.Errorf("consumer %s: %w", c.Durable, err)
	}
	b.Pending = info.NumPending + uint64(info.NumAckPending)
	if b.Pending == 0 {
		return b, nil
	}
	// The oldest unacknowledged message is the first one after the ack
	// floor (the next one still in the stream, if some were removed).
	msg, err := st.GetMsg(ctx, info.AckFloor.Stream+1, jetstream.WithGetMsgSubject(">"))
	if err != nil {
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return b, nil
		}
		return b, fmt.Errorf("oldest message of %s: %w", c.Durable, err)
	}
	b.Oldest = max(now.Sub(msg.Time), 0)
	return b, nil
}
