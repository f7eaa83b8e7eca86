package triggers_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/internal/bus"
	"github.com/salve-sre/salve/internal/testenv"
	"github.com/salve-sre/salve/triggers"
)

func openFailed(t *testing.T) (*triggers.FailedAlerts, jetstream.JetStream, *nats.Conn) {
	t.Helper()
	ns, js := testenv.NATS(t)
	nc, err := nats.Connect(ns.URL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	store, err := triggers.OpenFailedAlerts(context.Background(), js, 1)
	require.NoError(t, err)
	return store, js, nc
}

// A retried alert that fails again at once is parked again; the retry's
// clean-up must not remove that new entry (it did, when the consumer won
// the race against the delete).
func TestRetryKeepsAnAlertParkedAgainMeanwhile(t *testing.T) {
	store, js, nc := openFailed(t)
	ctx := context.Background()

	ack, err := js.Publish(ctx, bus.SubjectAlerts+".firing", []byte(`{"id":"a1"}`))
	require.NoError(t, err)
	first := triggers.FailedAlert{ID: "f1", AlertID: "a1", Runbook: "rb", Reason: "no label", FailedAt: time.Now().UTC(), StreamSeq: ack.Sequence}
	require.NoError(t, store.Park(ctx, first))

	// Stand-in for the consumer: parks the copy again the moment it is
	// published, before Retry's publish has even been acknowledged.
	reparked := make(chan error, 1)
	sub, err := nc.Subscribe(bus.SubjectAlerts+".>", func(m *nats.Msg) {
		if m.Header.Get(bus.HeaderRetryRunbook) == "" {
			return
		}
		seq, _ := strconv.ParseUint(m.Header.Get(bus.HeaderRetrySeq), 10, 64)
		again := first
		again.FailedAt = time.Now().UTC()
		again.StreamSeq = seq
		reparked <- store.Park(ctx, again)
	})
	require.NoError(t, err)
	defer sub.Unsubscribe()

	got, err := store.Retry(ctx, "f1")
	require.NoError(t, err)
	require.Equal(t, "rb", got.Runbook)
	select {
	case err := <-reparked:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("the retried copy was never published")
	}
	after, err := store.Get(ctx, "f1")
	require.NoError(t, err, "the alert parked again during the retry is still listed")
	require.True(t, after.FailedAt.After(first.FailedAt))
	require.Equal(t, ack.Sequence, after.StreamSeq, "the retry names the original message")
	n, err := store.Count(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, n)
}

// Retrying without a concurrent failure removes the entry; an unknown ID
// is ErrFailedNotFound.
func TestRetryRemovesTheEntry(t *testing.T) {
	store, js, _ := openFailed(t)
	ctx := context.Background()
	ack, err := js.Publish(ctx, bus.SubjectAlerts+".firing", []byte(`{"id":"a2"}`))
	require.NoError(t, err)
	require.NoError(t, store.Park(ctx, triggers.FailedAlert{ID: "f2", AlertID: "a2", Runbook: "rb", FailedAt: time.Now().UTC(), StreamSeq: ack.Sequence}))
	_, err = store.Retry(ctx, "f2")
	require.NoError(t, err)
	_, err = store.Get(ctx, "f2")
	require.ErrorIs(t, err, triggers.ErrFailedNotFound)
	_, err = store.Retry(ctx, "f2")
	require.ErrorIs(t, err, triggers.ErrFailedNotFound)
}
