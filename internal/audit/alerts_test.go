package audit_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/internal/audit"
	"github.com/salve-sre/salve/internal/bus"
	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/internal/testenv"
)

func alertEvent(fp, status string, startsAt, endsAt time.Time) domain.AlertEvent {
	return domain.AlertEvent{
		ID: domain.AlertEventID(fp, status, startsAt), Fingerprint: fp, Status: status,
		Labels: map[string]string{"alertname": "Crash", "ns": "shop"}, StartsAt: startsAt, EndsAt: endsAt,
		ReceivedAt: startsAt.Add(5 * time.Second),
	}
}

func TestAlertReadModel(t *testing.T) {
	stores(t, func(t *testing.T, open func() *audit.Store) {
		ctx := context.Background()
		s := open()
		t0 := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
		require.NoError(t, s.RecordAlert(ctx, alertEvent("fp1", "firing", t0, time.Time{})))
		require.NoError(t, s.RecordAlert(ctx, alertEvent("fp1", "firing", t0, time.Time{})), "repeats are harmless")
		require.NoError(t, s.RecordAlert(ctx, alertEvent("fp1", "resolved", t0, t0.Add(4*time.Minute))))
		require.NoError(t, s.RecordAlert(ctx, alertEvent("fp1", "firing", t0, time.Time{})), "a late firing never clears the resolution")
		require.NoError(t, s.RecordAlert(ctx, alertEvent("fp2", "firing", t0.Add(time.Hour), time.Time{})))

		all, err := s.Alerts(ctx, audit.AlertFilter{})
		require.NoError(t, err)
		require.Len(t, all, 2)
		require.Equal(t, "fp1", all[0].Fingerprint)
		require.Equal(t, "Crash", all[0].Alertname)
		require.Equal(t, "shop", all[0].Labels["ns"])
		require.Equal(t, 4*time.Minute, all[0].Duration())
		require.True(t, all[1].ResolvedAt.IsZero(), "fp2 still fires")
		require.Zero(t, all[1].Duration())

		later, err := s.Alerts(ctx, audit.AlertFilter{Since: t0.Add(time.Minute)})
		require.NoError(t, err)
		require.Len(t, later, 1)
		require.Equal(t, "fp2", later[0].Fingerprint)
	})
}

// The projector reads the real ALERTS stream into the read model.
func TestAlertProjectorOnJetStream(t *testing.T) {
	_, js := testenv.NATS(t)
	store, err := audit.Open(context.Background(), filepath.Join(t.TempDir(), "audit.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- (&audit.AlertProjector{JS: js, Store: store, Log: slog.New(slog.DiscardHandler)}).Run(ctx)
	}()
	t.Cleanup(func() { cancel(); require.NoError(t, <-done) })

	t0 := time.Now().UTC().Add(-10 * time.Minute).Truncate(time.Second)
	pub := bus.NewPublisher(js)
	require.NoError(t, pub.PublishAlerts(context.Background(), []domain.AlertEvent{
		alertEvent("a1", "firing", t0, time.Time{}),
		alertEvent("a2", "firing", t0, time.Time{}),
		alertEvent("a1", "resolved", t0, t0.Add(3*time.Minute)),
	}))
	require.Eventually(t, func() bool {
		all, err := store.Alerts(context.Background(), audit.AlertFilter{})
		require.NoError(t, err)
		return len(all) == 2 && all[0].Duration() == 3*time.Minute || len(all) == 2 && all[1].Duration() == 3*time.Minute
	}, 30*time.Second, 50*time.Millisecond)
}
