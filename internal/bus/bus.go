// Package bus owns Salve's JetStream layout: the ALERTS and AUDIT streams,
// created idempotently at start-up, and publishing with deduplication IDs.
package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/internal/tracing"
)

// Stream and subject names: part of the on-disk contract.
const (
	StreamAlerts   = "ALERTS"
	SubjectAlerts  = "salve.alerts"
	StreamAudit    = "AUDIT"
	SubjectAudit   = "salve.audit"
	TriggerDurable = "salve-trigger"
	// Headers of a retried alert: the copy names the runbook to retry
	// and the original alert's place in ALERTS.
	HeaderRetryRunbook = "Salve-Retry-Runbook"
	HeaderRetrySeq     = "Salve-Retry-Seq"
)

// StreamOptions sizes the streams. Zero values take the defaults.
type StreamOptions struct {
	Replicas int // 1 in dev; 3 on a production cluster
	// DuplicateWindow is how long a message ID is remembered. Alertmanager
	// retries a failed notification for up to a group_interval (5m by
	// default), so the default is 10m.
	DuplicateWindow time.Duration
	AlertsMaxAge    time.Duration // default 7 days: room to replay
	AuditMaxAge     time.Duration // default 0 (forever): the audit store may lag
	// AlertsMaxBytes and AuditMaxBytes bound each stream's size (default
	// DefaultMaxBytes). A full stream refuses new messages (ErrStreamFull:
	// the webhook answers 503) rather than drop old ones, which may not be
	// processed yet; it takes messages again once alerts age out (ALERTS)
	// or the recorder drops what it has recorded (AUDIT).
	AlertsMaxBytes int64
	AuditMaxBytes  int64
}

// DefaultMaxBytes is each stream's default size limit.
const DefaultMaxBytes = 1 << 30

// ErrStreamFull: the stream is at its size limit and refuses new messages.
var ErrStreamFull = errors.New("stream full")

// EnsureStreams creates or updates the streams Salve needs.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, o StreamOptions) error {
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.DuplicateWindow == 0 {
		o.DuplicateWindow = 10 * time.Minute
	}
	if o.AlertsMaxAge == 0 {
		o.AlertsMaxAge = 7 * 24 * time.Hour
	}
	if o.AlertsMaxBytes == 0 {
		o.AlertsMaxBytes = DefaultMaxBytes
	}
	if o.AuditMaxBytes == 0 {
		o.AuditMaxBytes = DefaultMaxBytes
	}
	for _, cfg := range []jetstream.StreamConfig{
		{
			Name:        StreamAlerts,
			Description: "Alertmanager alerts accepted by Salve, one message per alert state",
			Subjects:    []string{SubjectAlerts + ".>"},
			Storage:     jetstream.FileStorage,
			Replicas:    o.Replicas,
			Duplicates:  o.DuplicateWindow,
			MaxAge:      o.AlertsMaxAge,
			MaxBytes:    o.AlertsMaxBytes,
			Discard:     jetstream.DiscardNew,
		},
		{
			Name:        StreamAudit,
			Description: "Salve audit events, before the recorder chains them into the audit store",
			Subjects:    []string{SubjectAudit + ".>"},
			Storage:     jetstream.FileStorage,
			Replicas:    o.Replicas,
			Duplicates:  o.DuplicateWindow,
			MaxAge:      o.AuditMaxAge,
			MaxBytes:    o.AuditMaxBytes,
			Discard:     jetstream.DiscardNew,
		},
	} {
		if err := EnsureStream(ctx, js, cfg); err != nil {
			return err
		}
	}
	return nil
}

// Publisher publishes alerts and audit events and waits for JetStream to
// store them.
type Publisher struct {
	js jetstream.JetStream
	// Duplicates, when set, is told how many alerts of each stored batch
	// JetStream already had. Set it before the first publish.
	Duplicates DuplicateObserver
}

// DuplicateObserver counts alerts that JetStream answered as duplicates
// (an Alertmanager retry or HA peer sent them again); internal/metrics
// implements it.
type DuplicateObserver interface {
	AlertsDeduplicated(n int)
}

// NewPublisher returns a publisher.
func NewPublisher(js jetstream.JetStream) *Publisher { return &Publisher{js: js} }

// ErrNotStored wraps every failure to get a JetStream acknowledgement: the
// message may not be stored and the sender should retry.
var ErrNotStored = errors.New("not stored by JetStream")

type outMsg struct {
	subject, id string
	data        []byte
	trace       nats.Header // the trace context to carry, when tracing is on
}

// PublishAlerts stores every event in ALERTS and returns nil only when all
// were acknowledged (a duplicate counts as stored).
func (p *Publisher) PublishAlerts(ctx context.Context, evs []domain.AlertEvent) (err error) {
	var hdr nats.Header
	if tracing.Enabled() {
		// Each alert carries the publish span in its headers, so the
		// trigger's handling of it joins the webhook's trace.
		var span trace.Span
		ctx, span = tracing.StartPublish(ctx, SubjectAlerts, len(evs))
		defer func() { tracing.Fail(span, err); span.End() }()
		hdr = nats.Header{}
		tracing.Inject(ctx, hdr)
	}
	msgs := make([]outMsg, 0, len(evs))
	for _, ev := range evs {
		data, err := json.Marshal(ev)
		if err != nil {
			return fmt.Errorf("encode alert %s: %w", ev.ID, err)
		}
		msgs = append(msgs, outMsg{subject: SubjectAlerts + "." + ev.Status, id: ev.ID, data: data, trace: hdr})
	}
	dups, err := p.publishAll(ctx, msgs)
	if err == nil && dups > 0 && p.Duplicates != nil {
		p.Duplicates.AlertsDeduplicated(dups)
	}
	return err
}

// Record stores one audit event in AUDIT.
func (p *Publisher) Record(ctx context.Context, ev domain.AuditEvent) error {
	return p.RecordAll(ctx, []domain.AuditEvent{ev})
}

// RecordAll stores audit events in AUDIT, all or error.
func (p *Publisher) RecordAll(ctx context.Context, evs []domain.AuditEvent) error {
	msgs := make([]outMsg, 0, len(evs))
	for _, ev := range evs {
		if ev.ID == "" || ev.Action == "" {
			return fmt.Errorf("audit event needs an ID and an action: %+v", ev)
		}
		data, err := json.Marshal(ev)
		if err != nil {
			return fmt.Errorf("encode audit event %s: %w", ev.ID, err)
		}
		msgs = append(msgs, outMsg{subject: SubjectAudit + "." + subjectToken(ev.Action), id: ev.ID, data: data})
	}
	_, err := p.publishAll(ctx, msgs)
	return err
}

// subjectToken keeps an action name a valid subject suffix.
func subjectToken(s string) string {
	return strings.Map(func(r rune) rune {
		if r == ' ' || r == '*' || r == '>' || r < 0x21 {
			return '_'
		}
		return r
	}, s)
}

// notStored wraps a publish failure: ErrNotStored always, and
// ErrStreamFull when the stream is at its size limit.
func notStored(subject string, err error) error {
	if s := err.Error(); strings.Contains(s, "maximum bytes exceeded") || strings.Contains(s, "maximum messages exceeded") {
		return fmt.Errorf("%w: %w: publish %s: %v", ErrNotStored, ErrStreamFull, subject, err)
	}
	return fmt.Errorf("%w: publish %s: %w", ErrNotStored, subject, err)
}

// header is a message's headers: its ID, for JetStream's deduplication,
// and its trace context.
func (m outMsg) header() nats.Header {
	h := nats.Header{jetstream.MsgIDHeader: []string{m.id}}
	for k, v := range m.trace {
		h[k] = v
	}
	return h
}

// publishAll returns how many messages JetStream answered as duplicates.
func (p *Publisher) publishAll(ctx context.Context, msgs []outMsg) (dups int, _ error) {
	if len(msgs) == 1 {
		// The common case: skip the async machinery.
		m := msgs[0]
		ack, err := p.js.PublishMsg(ctx, &nats.Msg{Subject: m.subject, Data: m.data, Header: m.header()})
		if err != nil {
			return 0, notStored(m.subject, err)
		}
		if ack != nil && ack.Duplicate {
			dups++
		}
		return dups, nil
	}
	futures := make([]jetstream.PubAckFuture, 0, len(msgs))
	for _, m := range msgs {
		f, err := p.js.PublishMsgAsync(&nats.Msg{Subject: m.subject, Data: m.data, Header: m.header()},
			jetstream.WithStallWait(5*time.Second))
		if err != nil {
			return 0, fmt.Errorf("%w: publish %s: %w", ErrNotStored, m.subject, err)
		}
		futures = append(futures, f)
	}
	for _, f := range futures {
		select {
		case ack := <-f.Ok():
			if ack != nil && ack.Duplicate {
				dups++
			}
		case err := <-f.Err():
			return 0, notStored(f.Msg().Subject, err)
		case <-ctx.Done():
			return 0, fmt.Errorf("%w: %v", ErrNotStored, ctx.Err())
		}
	}
	return dups, nil
}
