package audit_test

import (
	"context"
	"database/sql"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/internal/audit"
	"github.com/salve-sre/salve/internal/bus"
	"github.com/salve-sre/salve/internal/domain"
)

type isolated struct{ n map[string]int }

func (i *isolated) EventIsolated(c string) { i.n[c]++ }

// An event the store refuses while it answers everything else does not
// stop the recorder: it is recorded as audit.unstorable (with its stream
// sequence and the store's reason), the events after it are recorded, the
// chain stays valid, and the backlog drains to zero. The refusal is the
// real database's: a trigger in the audit database refuses one action.
func TestRecorderSetsAsideAnEventTheStoreRefuses(t *testing.T) {
	e := newRecorderEnv(t)
	// A second connection to the same SQLite file adds the refusal.
	db, err := sql.Open("sqlite", "file:"+e.path+"?_pragma=busy_timeout(10000)")
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	_, err = db.Exec(`CREATE TRIGGER refuse_poison BEFORE INSERT ON audit_events WHEN NEW.action = 'test.poison'
		BEGIN SELECT RAISE(ABORT, 'refused by the test'); END`)
	require.NoError(t, err)

	ctx := context.Background()
	t0 := time.Now().UTC()
	var evs []domain.AuditEvent
	for i, action := range []string{domain.ActionRunStarted, "test.poison", domain.ActionRunFinished} {
		evs = append(evs, domain.AuditEvent{ID: "iso/" + action, Time: t0.Add(time.Duration(i) * time.Millisecond),
			Actor: domain.Actor{Kind: domain.ActorSystem, Name: "test"}, Action: action, WorkflowID: "salve/rb/k"})
	}
	require.NoError(t, e.pub.RecordAll(ctx, evs))
	m := &isolated{n: map[string]int{}}
	stop := e.startWith(10, m)
	defer stop()

	var recs []audit.Record
	require.Eventually(t, func() bool {
		recs, err = e.store.Query(ctx, audit.Filter{WorkflowID: "salve/rb/k"})
		return err == nil && len(recs) == 3
	}, waitFor, tick, "the events around the refused one are recorded")
	var actions []string
	for _, r := range recs {
		actions = append(actions, r.Event.Action)
	}
	require.Equal(t, []string{domain.ActionRunStarted, audit.ActionUnstorable, domain.ActionRunFinished}, actions)
	un := recs[1].Event
	require.Equal(t, "audit.unstorable/2", un.ID, "named by its AUDIT stream sequence")
	require.Contains(t, un.Error, "refused by the test")
	require.Equal(t, `"iso/test.poison"`, un.Detail["eventId"])
	require.Contains(t, un.Detail["eventJSON"], `"action":"test.poison"`)
	require.Equal(t, 1, m.n["recorder"])

	res, err := audit.Verify(ctx, e.store, nil)
	require.NoError(t, err)
	require.True(t, res.OK, res.Problem)
	require.Eventually(t, func() bool {
		n, err := audit.Unrecorded(ctx, e.js)
		return err == nil && n == 0
	}, waitFor, tick, "the recorder's backlog drains")
}

// A full AUDIT stream refuses new events with ErrStreamFull (the webhook
// then answers 503 and says why) and takes events again by itself once
// the recorder has stored and dropped what it holds: nothing is lost.
func TestFullAuditStreamRecoversWhenTheRecorderCatchesUp(t *testing.T) {
	e := newRecorderEnv(t)
	ctx := context.Background()
	require.NoError(t, bus.EnsureStreams(ctx, e.js, bus.StreamOptions{AuditMaxBytes: 16 << 10}))
	var sent []domain.AuditEvent
	var full error
	for i := 0; i < 1000 && full == nil; i++ {
		ev := events(1, fmt.Sprintf("full-%04d", i))[0]
		if full = e.pub.RecordAll(ctx, []domain.AuditEvent{ev}); full == nil {
			sent = append(sent, ev)
		}
	}
	require.ErrorIs(t, full, bus.ErrStreamFull, "a small AUDIT stream fills up")
	require.ErrorIs(t, full, bus.ErrNotStored)
	require.NotEmpty(t, sent)

	stop := e.startKeeping(time.Millisecond)
	defer stop()
	more := events(1, "after-full")[0]
	require.Eventually(t, func() bool { return e.pub.RecordAll(ctx, []domain.AuditEvent{more}) == nil },
		waitFor, 100*time.Millisecond, "AUDIT takes events again once recorded ones are dropped")
	e.waitRows(len(sent) + 1)
	res, err := audit.Verify(ctx, e.store, nil)
	require.NoError(t, err)
	require.True(t, res.OK, res.Problem)
}
