package audit

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/cenkalti/backoff/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/salve-sre/salve/internal/bus"
	"github.com/salve-sre/salve/internal/domain"
)

// Anchor stream: the chain head after each committed batch, kept in
// JetStream rather than in the audit database, so that someone who can
// rewrite the database cannot also hide a truncated tail.
const (
	StreamAnchors  = "AUDIT_ANCHORS"
	SubjectAnchors = "salve.anchors.audit"
	RecorderName   = bus.RecorderDurable
	// AlertsRecorderName is the recorder's consumer of ALERTS.
	AlertsRecorderName = bus.AlertsRecorderDurable
)

// JetStreamAnchors reads and writes anchors in JetStream.
type JetStreamAnchors struct {
	JS jetstream.JetStream
}

// Ensure creates the anchor stream.
func (a JetStreamAnchors) Ensure(ctx context.Context, replicas int) error {
	return bus.EnsureStream(ctx, a.JS, jetstream.StreamConfig{
		Name:              StreamAnchors,
		Description:       "Audit chain heads written by the recorder; salve audit verify checks the store against them",
		Subjects:          []string{SubjectAnchors},
		Storage:           jetstream.FileStorage,
		Replicas:          max(replicas, 1),
		MaxMsgsPerSubject: 10000,
	})
}

// Write publishes an anchor.
func (a JetStreamAnchors) Write(ctx context.Context, an Anchor) error {
	b, _ := json.Marshal(an)
	_, err := a.JS.Publish(ctx, SubjectAnchors, b)
	return err
}

// All returns every kept anchor, oldest first.
func (a JetStreamAnchors) All(ctx context.Context) ([]Anchor, error) {
	st, err := a.JS.Stream(ctx, StreamAnchors)
	if err != nil {
		return nil, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, err
	}
	if info.State.Msgs == 0 {
		return nil, nil
	}
	cons, err := a.JS.OrderedConsumer(ctx, StreamAnchors, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, err
	}
	// Read up to the last message that existed when we looked, and stop
	// there instead of waiting for more.
	last := info.State.LastSeq
	var out []Anchor
	for {
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return nil, err
		}
		n, done := 0, false
		for m := range batch.Messages() {
			n++
			var an Anchor
			if err := json.Unmarshal(m.Data(), &an); err != nil {
				return nil, fmt.Errorf("anchor is not valid JSON: %w", err)
			}
			out = append(out, an)
			if meta, err := m.Metadata(); err == nil && meta.Sequence.Stream >= last {
				done = true
				break
			}
		}
		if done || n == 0 {
			return out, nil
		}
	}
}

// Latest returns the newest anchor.
func (a JetStreamAnchors) Latest(ctx context.Context) (Anchor, bool, error) {
	st, err := a.JS.Stream(ctx, StreamAnchors)
	if err != nil {
		return Anchor{}, false, err
	}
	msg, err := st.GetLastMsgForSubject(ctx, SubjectAnchors)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return Anchor{}, false, nil
	}
	if err != nil {
		return Anchor{}, false, err
	}
	var an Anchor
	if err := json.Unmarshal(msg.Data, &an); err != nil {
		return Anchor{}, false, fmt.Errorf("anchor is not valid JSON: %w", err)
	}
	return an, true, nil
}

// Recorder is the single writer of the audit store: it reads the AUDIT
// stream in order, appends each batch in one transaction, and acks only
// after the commit. A crash between commit and ack redelivers the batch,
// and the store skips event IDs it already has, so every event is stored
// exactly once.
//
// It also reads ALERTS, and records each stored alert's alert.accepted
// event (domain.AlertAccepted): the webhook stores an alert once instead
// of also publishing its audit event. Before it appends a batch of AUDIT
// events it records every alert stored before that batch was fetched, so
// in the chain an alert's acceptance precedes every decision about it
// (the trigger decides only on stored alerts). Only after a recorder
// crash can an alert it had fetched come back later than that, when its
// ack wait ends.
type Recorder struct {
	JS      jetstream.JetStream
	Store   *Store
	Anchors *JetStreamAnchors // nil: no anchoring
	Log     *slog.Logger
	Batch   int // messages per transaction; default 256
	// AckWait is how long a fetched, unacknowledged event (its recorder
	// died before committing) waits before redelivery. Default 1m.
	AckWait time.Duration
	// Metrics, when set, counts events set aside.
	Metrics IsolationMetrics
	// KeepRecorded > 0 drops recorded messages from AUDIT this long after
	// they were committed: the store is the record of truth, and a full
	// AUDIT stream would refuse new events. 0 keeps them (tests).
	// Truncation detection does not need them: it uses the anchors.
	KeepRecorded time.Duration

	committed []seqAt // batches committed, oldest first, not yet dropped
	lastPurge time.Time
}

// seqAt is the last stream sequence of a committed batch and when.
type seqAt struct {
	seq uint64
	at  time.Time
}

// Run records until ctx ends.
func (r *Recorder) Run(ctx context.Context) error {
	batch := r.Batch
	if batch <= 0 {
		batch = 256
	}
	consumer := func(stream, durable, description string) (jetstream.Consumer, error) {
		return bus.EnsureConsumer(ctx, r.JS, stream, jetstream.ConsumerConfig{
			Durable:     durable,
			Description: description,
			// Explicit acks: acking a later message must never ack an
			// earlier one that was not committed (as AckAll would).
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       cmp.Or(r.AckWait, time.Minute),
			MaxDeliver:    -1,
			MaxAckPending: batch * 4,
		})
	}
	cons, err := consumer(bus.StreamAudit, RecorderName, "Salve audit recorder: appends events to the audit store's hash chain")
	var alerts jetstream.Consumer
	if err == nil {
		alerts, err = consumer(bus.StreamAlerts, AlertsRecorderName, "Salve audit recorder: the alert.accepted record of each stored alert")
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting
		}
		return fmt.Errorf("create audit recorder consumer: %w", err)
	}
	retry := backoff.NewExponentialBackOff()
	retry.InitialInterval, retry.MaxInterval = time.Second, 30*time.Second
	for ctx.Err() == nil {
		msgs, err := cons.Fetch(batch, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			r.Log.Warn("audit recorder: fetch", "error", err)
			sleep(ctx, time.Second)
			continue
		}
		var (
			evs []domain.AuditEvent
			got []jetstream.Msg
		)
		for m := range msgs.Messages() {
			got = append(got, m)
			var ev domain.AuditEvent
			if err := json.Unmarshal(m.Data(), &ev); err != nil || ev.ID == "" || ev.Action == "" {
				// Keep a trace of the unreadable message in the chain itself
				// rather than dropping it silently.
				meta, _ := m.Metadata()
				seq := uint64(0)
				if meta != nil {
					seq = meta.Sequence.Stream
				}
				ev = domain.AuditEvent{
					ID: fmt.Sprintf("audit.undecodable/%d", seq), Time: time.Now().UTC(),
					Actor: domain.Actor{Kind: domain.ActorSystem, Name: "audit-recorder"}, Action: "audit.undecodable",
					Error: fmt.Sprintf("message %d on %s is not an audit event", seq, m.Subject()),
				}
			}
			evs = append(evs, ev)
		}
		if err := msgs.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && ctx.Err() == nil {
			r.Log.Warn("audit recorder: batch", "error", err)
		}
		// The alerts first: this batch's events may be decisions about
		// them.
		recorded, err := r.recordAlerts(ctx, alerts, batch)
		if err == nil {
			err = r.append(ctx, bus.StreamAudit, evs, got)
		}
		if err != nil {
			if ctx.Err() != nil {
				// Stopping: give the batch back now, so whoever records
				// next keeps the stream's order.
				for _, m := range got {
					_ = m.Nak()
				}
				return nil
			}
			// Nothing of this batch acked: every message comes back.
			r.Log.Error("audit recorder: append failed; will retry", "error", err, "events", len(evs))
			wait := retry.NextBackOff()
			for _, m := range got {
				_ = m.NakWithDelay(wait)
			}
			sleep(ctx, wait)
			continue
		}
		retry.Reset()
		if len(got) == 0 && recorded == 0 {
			continue
		}
		if r.Anchors != nil {
			if seq, hash, err := r.Store.Head(ctx); err == nil {
				if err := r.Anchors.Write(ctx, Anchor{Seq: seq, Hash: hash}); err != nil {
					r.Log.Warn("audit recorder: anchor not written", "error", err)
				}
			}
		}
		if len(got) == 0 {
			continue
		}
		var last uint64
		for _, m := range got {
			if err := m.Ack(); err != nil {
				r.Log.Warn("audit recorder: ack (the event will be redelivered and deduplicated)", "error", err)
			}
			if meta, _ := m.Metadata(); meta != nil {
				last = max(last, meta.Sequence.Stream)
			}
		}
		if r.KeepRecorded > 0 {
			r.committed = append(r.committed, seqAt{seq: last, at: time.Now()})
			r.dropRecorded(ctx, cons)
		}
	}
	return nil
}

// dropRecorded purges AUDIT up to the newest batch committed more than
// KeepRecorded ago — never past the consumer's ack floor, below which
// every message is recorded. At most once a minute (or per KeepRecorded).
func (r *Recorder) dropRecorded(ctx context.Context, cons jetstream.Consumer) {
	now := time.Now()
	if now.Sub(r.lastPurge) < min(r.KeepRecorded, time.Minute) {
		return
	}
	r.lastPurge = now
	var upTo uint64
	n := 0
	for _, c := range r.committed {
		if now.Sub(c.at) < r.KeepRecorded {
			break
		}
		upTo, n = c.seq, n+1
	}
	if upTo == 0 {
		return
	}
	info, err := cons.Info(ctx)
	if err != nil {
		r.Log.Warn("audit recorder: consumer info for the purge", "error", err)
		return
	}
	upTo = min(upTo, info.AckFloor.Stream)
	st, err := r.JS.Stream(ctx, bus.StreamAudit)
	if err == nil {
		err = st.Purge(ctx, jetstream.WithPurgeSequence(upTo+1))
	}
	if err != nil {
		r.Log.Warn("audit recorder: drop recorded events from AUDIT", "error", err)
		return
	}
	r.committed = r.committed[n:]
}

// append appends evs, the events of msgs from stream, in one transaction.
// If the store answers yet refuses the batch, one of its events is one it
// cannot keep: the others are stored, and that one as an audit.unstorable
// record, rather than retried for ever.
func (r *Recorder) append(ctx context.Context, stream string, evs []domain.AuditEvent, msgs []jetstream.Msg) error {
	if len(evs) == 0 {
		return nil
	}
	_, err := r.Store.Append(ctx, evs)
	if err != nil && r.Store.Ping(ctx) == nil {
		err = r.appendIsolating(ctx, stream, evs, msgs)
	}
	return err
}

// recordAlerts records the alert.accepted event of every alert stored in
// ALERTS up to its last message now, in transactions of up to batch
// events, acking each after its commit, and says how many it handled. It stops early only when nothing
// is left to fetch (messages a crashed recorder had fetched come back
// when their ack wait ends).
func (r *Recorder) recordAlerts(ctx context.Context, cons jetstream.Consumer, batch int) (recorded int, _ error) {
	st, err := r.JS.Stream(ctx, bus.StreamAlerts)
	if err != nil {
		return 0, fmt.Errorf("stream %s: %w", bus.StreamAlerts, err)
	}
	target := st.CachedInfo().State.LastSeq
	for ctx.Err() == nil {
		msgs, err := cons.FetchNoWait(batch)
		if err != nil {
			return recorded, fmt.Errorf("fetch from %s: %w", bus.StreamAlerts, err)
		}
		var (
			evs  []domain.AuditEvent
			got  []jetstream.Msg
			last uint64
		)
		for m := range msgs.Messages() {
			if meta, _ := m.Metadata(); meta != nil {
				last = max(last, meta.Sequence.Stream)
			}
			var ev domain.AlertEvent
			if err := json.Unmarshal(m.Data(), &ev); err != nil || ev.ID == "" {
				// Not an alert the webhook stored; the trigger audits it
				// as alert.undecodable.
				_ = m.Ack()
				continue
			}
			got = append(got, m)
			evs = append(evs, domain.AlertAccepted(ev))
		}
		if err := msgs.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, jetstream.ErrNoMessages) {
			for _, m := range got {
				_ = m.Nak()
			}
			return recorded, fmt.Errorf("fetch from %s: %w", bus.StreamAlerts, err)
		}
		if err := r.append(ctx, bus.StreamAlerts, evs, got); err != nil {
			for _, m := range got {
				_ = m.Nak()
			}
			return recorded, err
		}
		recorded += len(got)
		for _, m := range got {
			if err := m.Ack(); err != nil {
				r.Log.Warn("audit recorder: ack of an alert (it will be redelivered and deduplicated)", "error", err)
			}
		}
		if last >= target {
			return recorded, nil
		}
		if last == 0 {
			// Nothing came: done only if every alert up to target is
			// acknowledged. Others may be held by another recorder (about
			// to commit them) or by a crashed one (back after its ack
			// wait): the AUDIT batch waits for them rather than go first.
			return recorded, r.waitAlertsAcked(ctx, cons, target)
		}
	}
	return recorded, ctx.Err()
}

// errAlertsHeld: alerts stored before an AUDIT batch are not recorded yet.
var errAlertsHeld = errors.New("alerts stored before this batch are not recorded yet (held by another recorder, or awaiting redelivery)")

// waitAlertsAcked waits briefly until the consumer's ack floor reaches
// target; errAlertsHeld if it does not.
func (r *Recorder) waitAlertsAcked(ctx context.Context, cons jetstream.Consumer, target uint64) error {
	for range 5 {
		info, err := cons.Info(ctx)
		if err != nil {
			return fmt.Errorf("consumer of %s: %w", bus.StreamAlerts, err)
		}
		if info.AckFloor.Stream >= target || info.NumAckPending == 0 && info.NumPending == 0 {
			return nil
		}
		sleep(ctx, 200*time.Millisecond)
	}
	return errAlertsHeld
}

// appendIsolating appends evs one at a time; an event the store refuses
// while it answers other queries is replaced by an audit.unstorable record
// naming its stream sequence, its ID and the store's reason, so the chain
// keeps a trace of it and goes on.
func (r *Recorder) appendIsolating(ctx context.Context, stream string, evs []domain.AuditEvent, msgs []jetstream.Msg) error {
	for i, ev := range evs {
		_, err := r.Store.Append(ctx, []domain.AuditEvent{ev})
		if err == nil {
			continue
		}
		if perr := r.Store.Ping(ctx); perr != nil {
			return err // the store went away: retry the batch later
		}
		seq := uint64(0)
		if meta, _ := msgs[i].Metadata(); meta != nil {
			seq = meta.Sequence.Stream
		}
		r.Log.Error("audit recorder: an event the store cannot keep is recorded as audit.unstorable", "seq", seq, "event_id", strconv.Quote(ev.ID), "error", err)
		if r.Metrics != nil {
			r.Metrics.EventIsolated("recorder")
		}
		orig, _ := json.Marshal(ev)
		id := fmt.Sprintf("audit.unstorable/%d", seq)
		if stream != bus.StreamAudit {
			id = fmt.Sprintf("audit.unstorable/%s/%d", stream, seq)
		}
		rec := domain.AuditEvent{
			ID: id, Time: time.Now().UTC(),
			Actor:  domain.Actor{Kind: domain.ActorSystem, Name: "audit-recorder"},
			Action: ActionUnstorable, Runbook: ev.Runbook, WorkflowID: ev.WorkflowID, IncidentKey: ev.IncidentKey,
			Error:  fmt.Sprintf("message %d on the %s stream could not be stored: %v", seq, stream, err),
			Detail: map[string]string{"eventId": strconv.Quote(ev.ID), "action": strconv.Quote(ev.Action), "eventJSON": truncateUTF8(string(orig), 16<<10)},
		}
		if _, err := r.Store.Append(ctx, []domain.AuditEvent{rec}); err != nil {
			return fmt.Errorf("record audit.unstorable for message %d: %w", seq, err)
		}
	}
	return nil
}

// ActionUnstorable marks an event the audit store refused: its ID, action
// and JSON (cut to 16 KiB) are kept, quoted, in the record's detail.
const ActionUnstorable = "audit.unstorable"

// IsolationMetrics counts events a consumer set aside; internal/metrics
// implements it.
type IsolationMetrics interface {
	EventIsolated(consumer string)
}

func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "..."
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
