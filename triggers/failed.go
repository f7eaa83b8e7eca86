package triggers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/salve-sre/salve/internal/bus"
)

// FailedBucket holds alerts the trigger parked: the (alert, runbook) pairs
// no retry could fix, until a person sends them back.
const FailedBucket = "SALVE_TRIGGER_FAILED"

// ErrFailedNotFound: no parked alert has that ID.
var ErrFailedNotFound = errors.New("no parked alert with that ID")

// ErrAlertGone: the parked alert's message left ALERTS (max age), so it
// cannot be sent back.
var ErrAlertGone = errors.New("the alert is no longer stored in ALERTS")

// FailedAlerts is the store of parked alerts (FailedStore) and
// how people list and retry them.
type FailedAlerts struct {
	js jetstream.JetStream
	kv jetstream.KeyValue
}

// OpenFailedAlerts creates or opens the bucket.
func OpenFailedAlerts(ctx context.Context, js jetstream.JetStream, replicas int) (*FailedAlerts, error) {
	if replicas == 0 {
		replicas = 1
	}
	kv, err := bus.EnsureKeyValue(ctx, js, jetstream.KeyValueConfig{
		Bucket:      FailedBucket,
		Description: "Salve: alerts the trigger could not handle and no retry would fix, waiting for a person",
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		History:     1,
	})
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", FailedBucket, err)
	}
	return &FailedAlerts{js: js, kv: kv}, nil
}

// Park stores f, replacing an earlier failure of the same pair.
func (s *FailedAlerts) Park(ctx context.Context, f FailedAlert) error {
	b, err := json.Marshal(f)
	if err != nil {
		return err
	}
	_, err = s.kv.Put(ctx, f.ID, b)
	return err
}

// List returns the parked alerts, newest first.
func (s *FailedAlerts) List(ctx context.Context) ([]FailedAlert, error) {
	lister, err := s.kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("list parked alerts: %w", err)
	}
	out := []FailedAlert{}
	for k := range lister.Keys() {
		f, err := s.Get(ctx, k)
		if errors.Is(err, ErrFailedNotFound) {
			continue // retried meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b FailedAlert) int { return b.FailedAt.Compare(a.FailedAt) })
	return out, nil
}

// Count is how many alerts are parked, for metrics and readiness.
func (s *FailedAlerts) Count(ctx context.Context) (int, error) {
	st, err := s.kv.Status(ctx)
	if err != nil {
		return 0, err
	}
	return int(st.Values()), nil
}

// Get returns one parked alert.
func (s *FailedAlerts) Get(ctx context.Context, id string) (FailedAlert, error) {
	f, _, err := s.get(ctx, id)
	return f, err
}

// get returns one parked alert and the revision it was read at.
func (s *FailedAlerts) get(ctx context.Context, id string) (FailedAlert, uint64, error) {
	e, err := s.kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrInvalidKey) {
		return FailedAlert{}, 0, fmt.Errorf("%w: %s", ErrFailedNotFound, id)
	}
	if err != nil {
		return FailedAlert{}, 0, fmt.Errorf("read parked alert %s: %w", id, err)
	}
	var f FailedAlert
	if err := json.Unmarshal(e.Value(), &f); err != nil {
		return FailedAlert{}, 0, fmt.Errorf("parked alert %s: %w", id, err)
	}
	return f, e.Revision(), nil
}

// Retry sends a parked alert back to the trigger, for its runbook only,
// and removes it from the store: if it fails again it is parked again.
// The copy is a new message in ALERTS, so it survives a crash like any
// accepted alert.
func (s *FailedAlerts) Retry(ctx context.Context, id string) (FailedAlert, error) {
	f, rev, err := s.get(ctx, id)
	if err != nil {
		return f, err
	}
	if f.StreamSeq == 0 {
		return f, fmt.Errorf("%w: parked without its place in the stream", ErrAlertGone)
	}
	stream, err := s.js.Stream(ctx, bus.StreamAlerts)
	if err != nil {
		return f, fmt.Errorf("open stream %s: %w", bus.StreamAlerts, err)
	}
	raw, err := stream.GetMsg(ctx, f.StreamSeq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return f, fmt.Errorf("%w (sequence %d)", ErrAlertGone, f.StreamSeq)
	}
	if err != nil {
		return f, fmt.Errorf("read alert %d: %w", f.StreamSeq, err)
	}
	msg := &nats.Msg{Subject: raw.Subject, Data: raw.Data, Header: nats.Header{}}
	msg.Header.Set(bus.HeaderRetryRunbook, f.Runbook)
	msg.Header.Set(bus.HeaderRetrySeq, strconv.FormatUint(f.StreamSeq, 10))
	msg.Header.Set(jetstream.MsgIDHeader, "retry/"+f.ID+"/"+strconv.FormatInt(time.Now().UnixNano(), 10))
	if _, err := s.js.PublishMsg(ctx, msg); err != nil {
		return f, fmt.Errorf("%w: retry %s: %v", bus.ErrNotStored, f.ID, err)
	}
	// Remove only the entry that was retried: the copy may already have
	// failed again and been parked anew, and that must stay visible.
	err = s.kv.Delete(ctx, f.ID, jetstream.LastRevision(rev))
	if err != nil && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return f, fmt.Errorf("sent back, but could not remove parked alert %s: %w", f.ID, err)
	}
	return f, nil
}
