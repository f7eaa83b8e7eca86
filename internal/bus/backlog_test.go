package bus_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/internal/bus"
	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/internal/testenv"
)

// A consumer's backlog counts what it has not acknowledged, and dates the
// oldest of it, from JetStream's state alone.
func TestReadBacklog(t *testing.T) {
	_, js := testenv.NATS(t)
	ctx := context.Background()
	c := bus.Consumers[0] // the trigger's, on ALERTS
	_, err := bus.ReadBacklog(ctx, js, c, time.Now())
	require.ErrorIs(t, err, bus.ErrNoConsumer)

	cons, err := js.CreateOrUpdateConsumer(ctx, c.Stream, jetstream.ConsumerConfig{Durable: c.Durable, AckPolicy: jetstream.AckExplicitPolicy})
	require.NoError(t, err)
	pub := bus.NewPublisher(js)
	t0 := time.Now().UTC()
	for _, fp := range []string{"a", "b", "c"} {
		require.NoError(t, pub.PublishAlerts(ctx, []domain.AlertEvent{{ID: fp, Fingerprint: fp, Status: "firing", StartsAt: t0}}))
	}
	b, err := bus.ReadBacklog(ctx, js, c, time.Now().Add(time.Minute))
	require.NoError(t, err)
	require.EqualValues(t, 3, b.Pending)
	require.InDelta(t, time.Minute.Seconds(), b.Oldest.Seconds(), 5)

	// Delivered but not acknowledged still counts; acknowledged does not.
	msgs, err := cons.Fetch(2, jetstream.FetchMaxWait(time.Second))
	require.NoError(t, err)
	var got []jetstream.Msg
	for m := range msgs.Messages() {
		got = append(got, m)
	}
	require.Len(t, got, 2)
	b, err = bus.ReadBacklog(ctx, js, c, time.Now())
	require.NoError(t, err)
	require.EqualValues(t, 3, b.Pending)
	for _, m := range got {
		require.NoError(t, m.DoubleAck(ctx))
	}
	b, err = bus.ReadBacklog(ctx, js, c, time.Now())
	require.NoError(t, err)
	require.EqualValues(t, 1, b.Pending)
	require.Positive(t, b.Oldest)
}
