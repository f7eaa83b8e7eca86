package bus_test

import (
	"context"
	"sync"
	"testing"
	"time"

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
