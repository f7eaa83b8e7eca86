package triggers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/salve-sre/salve/internal/bus"
	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/internal/tracing"
)

// Consumer feeds stored alerts to a Trigger through a durable JetStream pull
// consumer. A message is acked only after the Trigger handled it; on
// errors a retry can fix it is nak'ed with a growing delay, so nothing is
// dropped while Temporal is down. Errors no retry can fix are parked by
// the Trigger, so one bad alert never holds up another.
//
// Alerts are spread over lanes by incident (laneOf): one incident's
// alerts are handled in arrival order by one lane, different incidents in
// parallel, and what queued up in a lane while it was busy is handled as
// one batch (repeats of a running incident join it in one signal).
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
	// Lanes is how many incidents are handled at once. 0 = 32.
	Lanes int
}

// Consumer sizing: MaxAckPending bounds the alerts in flight, laneBatch
// the parts one lane handles together.
const (
	maxAckPending = 4096
	laneBatch     = 256
	pullBatch     = 256
)

// inflight is one message whose parts are spread over lanes; the last
// part to finish acks or naks it.
type inflight struct {
	msg     jetstream.Msg
	pending atomic.Int32
	mu      sync.Mutex
	err     error
}

type laneItem struct {
	p  part
	in *inflight
}

// Run consumes until ctx ends.
func (c *Consumer) Run(ctx context.Context) error {
	ackWait := c.AckWait
	if ackWait <= 0 {
		ackWait = 30 * time.Second
	}
	cons, err := bus.EnsureConsumer(ctx, c.JS, bus.StreamAlerts, jetstream.ConsumerConfig{
		Durable:       bus.TriggerDurable,
		Description:   "Salve trigger: matches alerts to runbooks",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       ackWait,
		MaxDeliver:    -1, // never give up on an accepted alert
		DeliverPolicy: jetstream.DeliverAllPolicy,
		FilterSubject: bus.SubjectAlerts + ".>",
		MaxAckPending: maxAckPending,
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting
		}
		return fmt.Errorf("create trigger consumer: %w", err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(pullBatch))
	if err != nil {
		return fmt.Errorf("consume alerts: %w", err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()

	n := c.Lanes
	if n <= 0 {
		n = 32
	}
	lanes := make([]chan laneItem, n)
	var wg sync.WaitGroup
	for i := range lanes {
		lanes[i] = make(chan laneItem, laneBatch)
		wg.Go(func() { c.lane(ctx, lanes[i]) })
	}
	defer func() {
		for _, l := range lanes {
			close(l)
		}
		wg.Wait()
	}()
	for {
		msg, err := it.Next()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return nil
			}
			c.Log.Warn("trigger consumer: next message", "error", err)
			continue
		}
		in, ok := c.decode(ctx, msg)
		if !ok {
			continue
		}
		parts := c.Trigger.parts(in)
		f := &inflight{msg: msg}
		f.pending.Store(int32(len(parts)))
		lane := lanes[laneOf(parts, n)]
		for _, p := range parts {
			select {
			case lane <- laneItem{p: p, in: f}:
			case <-ctx.Done():
				return nil
			}
		}
	}
}

// laneOf picks an alert's lane by its first part's incident: an alert's
// parts stay together in one lane, so the runbooks it matches are taken
// in name order (a shared target goes to the first); every notification
// of one alert (firing, repeats, resolved) keeps its order; and repeats
// of one incident meet in one lane, where they join its run in one
// signal. Alerts without an incident go by fingerprint.
func laneOf(parts []part, n int) int {
	key := parts[0].wfID
	if key == "" {
		key = parts[0].in.Event.Fingerprint
	}
	if key == "" {
		key = parts[0].in.Event.ID
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return int(h.Sum32() % uint32(n))
}

// lane handles its items until its channel closes; whatever queued up
// while it worked is the next batch.
func (c *Consumer) lane(ctx context.Context, ch <-chan laneItem) {
	for first := range ch {
		items := []laneItem{first}
	drain:
		for len(items) < laneBatch {
			select {
			case it, ok := <-ch:
				if !ok {
					break drain
				}
				items = append(items, it)
			default:
				break drain
			}
		}
		if ctx.Err() != nil {
			return // unacked: redelivered to whoever consumes next
		}
		parts := make([]part, len(items))
		for i, it := range items {
			parts[i] = it.p
		}
		for i, err := range c.Trigger.handleBatch(ctx, parts) {
			c.done(items[i].in, err)
		}
	}
}

// done records one part's outcome; the message's last part acks it, or
// naks it when any part needs a retry (handled parts are idempotent).
func (c *Consumer) done(f *inflight, err error) {
	if err != nil {
		f.mu.Lock()
		f.err = errors.Join(f.err, err)
		f.mu.Unlock()
	}
	if f.pending.Add(-1) > 0 {
		return
	}
	f.mu.Lock()
	err = f.err
	f.mu.Unlock()
	if err != nil {
		c.nak(f.msg, err)
		return
	}
	// A lost ack only means a redelivery, which is handled idempotently:
	// no need to wait for the server's confirmation.
	if err := f.msg.Ack(); err != nil {
		c.Log.Warn("ack alert", "subject", f.msg.Subject(), "error", err)
	}
}

// decode reads a stored alert. Nothing will ever decode a bad message:
// it is terminated, with an audit record of what was dropped and why.
func (c *Consumer) decode(ctx context.Context, msg jetstream.Msg) (*Inbound, bool) {
	var seq uint64
	if meta, err := msg.Metadata(); err == nil {
		seq = meta.Sequence.Stream
	}
	var ev domain.AlertEvent
	err := json.Unmarshal(msg.Data(), &ev)
	if err == nil && ev.ID == "" {
		err = errors.New("alert event without ID")
	}
	if err == nil {
		in := &Inbound{Event: ev, StreamSeq: seq, OnlyRunbook: msg.Headers().Get(bus.HeaderRetryRunbook)}
		if tracing.Enabled() {
			in.Parent = trace.SpanContextFromContext(tracing.Extract(ctx, msg.Headers()))
		}
		if in.OnlyRunbook != "" {
			// A retry is a copy: the alert's own place is in the header.
			fmt.Sscan(msg.Headers().Get(bus.HeaderRetrySeq), &in.StreamSeq)
		}
		return in, true
	}
	c.Log.Error("undecodable alert message; terminating it", "subject", msg.Subject(), "error", err)
	aerr := c.Audit.RecordAll(ctx, []domain.AuditEvent{{
		ID: fmt.Sprintf("alert.undecodable/%d", seq), Time: time.Now().UTC(),
		Actor: domain.Actor{Kind: domain.ActorSystem, Name: "trigger"}, Action: domain.ActionAlertUndecodable,
		Error: err.Error(), Detail: map[string]string{"subject": msg.Subject(), "streamSeq": fmt.Sprint(seq)},
	}})
	if aerr != nil {
		c.nak(msg, aerr)
		return nil, false
	}
	_ = msg.Term()
	return nil, false
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
