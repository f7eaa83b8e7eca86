package bus

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/nats-io/nats.go"

	"github.com/salve-sre/salve/internal/domain"
)

// PatientRecorder records audit events like the Publisher, but publishes
// an event again when the stream did not acknowledge it, for up to For
// (and never past the caller's deadline), each attempt bounded by
// Attempt. The worker's steps use it: a step is not run until its start
// is stored, and when the NATS node holding the AUDIT stream's leader
// dies the election takes seconds; failing each attempt at once would
// spend the step's retry budget and fail the run. The event's ID is the
// message ID, so an event stored but not acknowledged is stored once.
// Alerts and trigger decisions do not wait like this: the webhook answers
// 503 and Alertmanager retries; the trigger naks and is redelivered.
type PatientRecorder struct {
	Pub     *Publisher
	For     time.Duration // default 15s
	Attempt time.Duration // default 5s
}

// Record stores one audit event.
func (r PatientRecorder) Record(ctx context.Context, ev domain.AuditEvent) error {
	return r.RecordAll(ctx, []domain.AuditEvent{ev})
}

// RecordAll stores audit events, all or error.
func (r PatientRecorder) RecordAll(ctx context.Context, evs []domain.AuditEvent) error {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval = 250*time.Millisecond, 2*time.Second
	var last error
	_, err := backoff.Retry(ctx, func() (struct{}, error) {
		actx, cancel := context.WithTimeout(ctx, cmp.Or(r.Attempt, 5*time.Second))
		defer cancel()
		last = r.Pub.RecordAll(actx, evs)
		switch {
		case last == nil:
			return struct{}{}, nil
		case ctx.Err() != nil || !errors.Is(last, ErrNotStored) || errors.Is(last, ErrStreamFull) ||
			errors.Is(last, nats.ErrConnectionClosed) || errors.Is(last, nats.ErrMaxPayload):
			return struct{}{}, backoff.Permanent(last)
		}
		return struct{}{}, last
	}, backoff.WithBackOff(b), backoff.WithMaxElapsedTime(cmp.Or(r.For, 15*time.Second)))
	if err != nil && last != nil && !errors.Is(err, last) {
		// Stopped by the caller's context while waiting: say what the
		// stream last answered, as ErrNotStored.
		return fmt.Errorf("%w (%v)", last, err)
	}
	return err
}
