package bus_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/internal/bus"
	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/internal/testenv"
)

type dupCounter struct {
	mu sync.Mutex
	n  []int
}

func (d *dupCounter) AlertsDeduplicated(n int) { d.mu.Lock(); d.n = append(d.n, n); d.mu.Unlock() }

func (d *dupCounter) calls() []int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]int(nil), d.n...)
}

// JetStream's duplicate answers (PubAck.Duplicate) reach the observer, on
// the single-message path and on the batch path, for alerts only.
func TestPublisherReportsDuplicateAlerts(t *testing.T) {
	_, js := testenv.NATS(t)
	pub := bus.NewPublisher(js)
	dups := &dupCounter{}
	pub.Duplicates = dups
	ctx := context.Background()
	t0 := time.Now().UTC().Truncate(time.Second)
	ev := func(fp string) domain.AlertEvent {
		return domain.AlertEvent{ID: domain.AlertEventID(fp, "firing", t0), Fingerprint: fp, Status: "firing", StartsAt: t0,
			Labels: map[string]string{"alertname": "X"}}
	}

	require.NoError(t, pub.PublishAlerts(ctx, []domain.AlertEvent{ev("a")}))
	require.Empty(t, dups.calls(), "a new alert is no duplicate")
	require.NoError(t, pub.PublishAlerts(ctx, []domain.AlertEvent{ev("a")}))
	require.Equal(t, []int{1}, dups.calls())

	require.NoError(t, pub.PublishAlerts(ctx, []domain.AlertEvent{ev("a"), ev("b"), ev("c")}))
	require.Equal(t, []int{1, 1}, dups.calls())
	require.NoError(t, pub.PublishAlerts(ctx, []domain.AlertEvent{ev("a"), ev("b"), ev("c"), ev("d")}))
	require.Equal(t, []int{1, 1, 3}, dups.calls())

	rec := domain.AuditEvent{ID: "x/1", Action: domain.ActionRunStarted, Time: t0}
	require.NoError(t, pub.RecordAll(ctx, []domain.AuditEvent{rec}))
	require.NoError(t, pub.RecordAll(ctx, []domain.AuditEvent{rec}))
	require.Equal(t, []int{1, 1, 3}, dups.calls(), "audit duplicates are not alert duplicates")

	info, err := js.Stream(ctx, bus.StreamAlerts)
	require.NoError(t, err)
	require.EqualValues(t, 4, info.CachedInfo().State.Msgs, "each alert stored once")
}

// An audit event the stream cannot take for a moment (its leader is being
// elected after a node died; here: the stream is gone and comes back) is
// published again by the PatientRecorder until it is stored, instead of
// failing the step that waits on it. Alerts and the plain Publisher's
// records are not retried: their callers answer or nak at once.
func TestRecordOutlastsAStreamThatIsBrieflyUnavailable(t *testing.T) {
	_, js := testenv.NATS(t)
	ctx := context.Background()
	require.NoError(t, bus.EnsureStreams(ctx, js, bus.StreamOptions{}))
	require.NoError(t, js.DeleteStream(ctx, bus.StreamAudit))
	require.NoError(t, js.DeleteStream(ctx, bus.StreamAlerts))
	pub := bus.NewPublisher(js)

	start := time.Now()
	err := pub.PublishAlerts(ctx, []domain.AlertEvent{{ID: "a", Fingerprint: "a", Status: "firing", StartsAt: start, Labels: map[string]string{"alertname": "X"}}})
	require.ErrorIs(t, err, bus.ErrNotStored)

	start = time.Now()
	err = pub.Record(ctx, domain.AuditEvent{ID: "x/0", Action: domain.ActionStepStarted, Time: start})
	require.ErrorIs(t, err, bus.ErrNotStored)
	// The caller's deadline bounds the patience, and the error still says
	// what the stream answered.
	short, cancel := context.WithTimeout(ctx, 700*time.Millisecond)
	defer cancel()
	err = bus.PatientRecorder{Pub: pub}.Record(short, domain.AuditEvent{ID: "x/0", Action: domain.ActionStepStarted, Time: start})
	require.ErrorIs(t, err, bus.ErrNotStored)

	back := make(chan error, 1)
	go func() {
		time.Sleep(1500 * time.Millisecond)
		back <- bus.EnsureStreams(ctx, js, bus.StreamOptions{})
	}()
	start = time.Now()
	require.NoError(t, bus.PatientRecorder{Pub: pub}.Record(ctx, domain.AuditEvent{ID: "x/1", Action: domain.ActionStepStarted, Time: start}))
	require.NoError(t, <-back)
	require.GreaterOrEqual(t, time.Since(start), 1400*time.Millisecond, "stored only once the stream was back")
	st, err := js.Stream(ctx, bus.StreamAudit)
	require.NoError(t, err)
	require.EqualValues(t, 1, st.CachedInfo().State.Msgs)
}

// What no retry fixes is not retried: a closed connection.
func TestPatientRecorderStopsAtAClosedConnection(t *testing.T) {
	srv, _ := testenv.NATS(t)
	nc, err := nats.Connect(srv.URL())
	require.NoError(t, err)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, bus.EnsureStreams(ctx, js, bus.StreamOptions{}))
	nc.Close()
	start := time.Now()
	err = bus.PatientRecorder{Pub: bus.NewPublisher(js), For: time.Minute}.Record(ctx, domain.AuditEvent{ID: "x/1", Action: domain.ActionStepStarted, Time: start})
	require.ErrorIs(t, err, bus.ErrNotStored)
	require.ErrorIs(t, err, nats.ErrConnectionClosed)
}
