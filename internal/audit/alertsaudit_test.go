package audit_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/internal/audit"
	"github.com/salve-sre/salve/internal/domain"
)

func storedAlert(i int, receivedAt time.Time) domain.AlertEvent {
	startsAt := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	fp := fmt.Sprintf("%016x", i+1)
	return domain.AlertEvent{
		ID: domain.AlertEventID(fp, domain.StatusFiring, startsAt), Fingerprint: fp, Status: domain.StatusFiring,
		Labels: map[string]string{"alertname": "Crash", "n": fmt.Sprint(i)}, Annotations: map[string]string{"secret": "never audited"},
		StartsAt: startsAt, Receiver: "salve", ReceivedAt: receivedAt,
	}
}

// The webhook stores each alert once, in ALERTS; the recorder derives its
// alert.accepted record, once, before any later decision about it.
func TestRecorderRecordsEachStoredAlertBeforeDecisionsAboutIt(t *testing.T) {
	e := newRecorderEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	received := time.Date(2026, 12, 7, 9, 0, 1, 0, time.UTC)

	// Stored while no recorder runs: counted as unrecorded.
	var alerts []domain.AlertEvent
	for i := range 40 {
		alerts = append(alerts, storedAlert(i, received))
	}
	require.NoError(t, e.pub.PublishAlerts(ctx, alerts))
	e.publish([]domain.AuditEvent{{ID: "trigger.matched/early", Time: received, Action: domain.ActionTriggerMatched}})
	n, err := audit.Unrecorded(ctx, e.js)
	require.NoError(t, err)
	require.EqualValues(t, 41, n, "40 alerts and one event wait for the recorder")

	e.start(7) // small transactions: the catch-up takes several
	// While it runs: each alert is followed at once by a decision about it.
	for i := 40; i < 100; i++ {
		a := storedAlert(i, received)
		require.NoError(t, e.pub.PublishAlerts(ctx, []domain.AlertEvent{a}))
		e.publish([]domain.AuditEvent{{ID: "trigger.matched/" + a.ID, Time: received, Action: domain.ActionTriggerMatched}})
		alerts = append(alerts, a)
	}
	// A republished alert (a person's retry) is one record still.
	require.NoError(t, e.pub.PublishAlerts(ctx, alerts[:1]))

	e.waitRows(100 + 61)
	e.waitAnchored()
	recs, err := e.store.Query(ctx, audit.Filter{Limit: 1000})
	require.NoError(t, err)
	seqOf := map[string]int64{}
	for _, r := range recs {
		_, dup := seqOf[r.Event.ID]
		require.False(t, dup, "%s recorded twice", r.Event.ID)
		seqOf[r.Event.ID] = r.Seq
	}
	for _, a := range alerts {
		seq, ok := seqOf[domain.ActionAlertAccepted+"/"+a.ID]
		require.True(t, ok, "alert %s not recorded", a.ID)
		if d, ok := seqOf["trigger.matched/"+a.ID]; ok {
			require.Less(t, seq, d, "alert %s recorded after a decision about it", a.ID)
		}
		if a.Fingerprint <= alerts[39].Fingerprint {
			require.Less(t, seq, seqOf["trigger.matched/early"], "an alert stored before an event is recorded before it")
		}
	}
	got, err := e.store.Query(ctx, audit.Filter{Action: domain.ActionAlertAccepted, Limit: 1})
	require.NoError(t, err)
	ev := got[0].Event
	require.Equal(t, domain.Actor{Kind: domain.ActorAlert, Name: "salve"}, ev.Actor)
	require.Equal(t, received, ev.Time.UTC(), "the time the webhook accepted it")
	require.Equal(t, domain.StatusFiring, ev.Outcome)
	require.NotContains(t, fmt.Sprint(ev.Detail), "never audited", "annotations are never audited")

	res, err := audit.Verify(ctx, e.store, e.anchors)
	require.NoError(t, err)
	require.True(t, res.OK, res.Problem)
	n, err = audit.Unrecorded(ctx, e.js)
	require.NoError(t, err)
	require.Zero(t, n)
}
