package audit_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/internal/audit"
	"github.com/salve-sre/salve/internal/bus"
	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/internal/testenv"
)

const (
	waitFor = 30 * time.Second
	tick    = 20 * time.Millisecond
)

// recorderEnv is a real embedded NATS with Salve's streams and the anchor
// stream, and a SQLite audit store in a temporary directory.
type recorderEnv struct {
	t       *testing.T
	js      jetstream.JetStream
	store   *audit.Store
	anchors *audit.JetStreamAnchors
	pub     *bus.Publisher
	path    string // of the SQLite store
}

func newRecorderEnv(t *testing.T) *recorderEnv {
	t.Helper()
	_, js := testenv.NATS(t)
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "audit.db")
	store, err := audit.Open(ctx, path)
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	anchors := &audit.JetStreamAnchors{JS: js}
	require.NoError(t, anchors.Ensure(ctx, 1))
	return &recorderEnv{t: t, js: js, store: store, anchors: anchors, pub: bus.NewPublisher(js), path: path}
}

// logWriter sends the recorder's log to t.Log: visible only on failure.
type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// start runs a recorder in a goroutine and returns a function that cancels
// it and waits for Run to return. The test's cleanup stops it too.
func (e *recorderEnv) start(batch int) (stop func()) {
	return e.startWith(batch, nil)
}

// startWith is start with metrics for the events the recorder sets aside.
func (e *recorderEnv) startWith(batch int, m audit.IsolationMetrics) (stop func()) {
	return e.run(batch, m, 0)
}

// startKeeping starts a recorder that drops recorded events from AUDIT
// after keep.
func (e *recorderEnv) startKeeping(keep time.Duration) (stop func()) {
	return e.run(16, nil, keep)
}

func (e *recorderEnv) run(batch int, m audit.IsolationMetrics, keep time.Duration) (stop func()) {
	t := e.t
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &audit.Recorder{
		JS:           e.js,
		Store:        e.store,
		Anchors:      e.anchors,
		Log:          slog.New(slog.NewTextHandler(logWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Batch:        batch,
		AckWait:      2 * time.Second, // so a "crashed" fetch comes back quickly
		Metrics:      m,
		KeepRecorded: keep,
	}
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(waitFor):
			t.Fatal("recorder did not stop after its context was cancelled")
		}
	}
	t.Cleanup(stop)
	return stop
}

func (e *recorderEnv) publish(evs []domain.AuditEvent) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	require.NoError(e.t, e.pub.RecordAll(ctx, evs))
}

func (e *recorderEnv) rows() int {
	e.t.Helper()
	var n int
	require.NoError(e.t, e.store.DB().QueryRow(`SELECT COUNT(*) FROM audit_events`).Scan(&n))
	return n
}

func (e *recorderEnv) waitRows(n int) {
	e.t.Helper()
	require.Eventually(e.t, func() bool { return e.rows() >= n }, waitFor, tick, "store never reached %d rows", n)
	require.Equal(e.t, n, e.rows(), "more rows than events")
}

// waitAnchored waits until the newest anchor in JetStream is the store's head.
func (e *recorderEnv) waitAnchored() {
	e.t.Helper()
	ctx := context.Background()
	require.Eventually(e.t, func() bool {
		seq, hash, err := e.store.Head(ctx)
		require.NoError(e.t, err)
		an, ok, err := e.anchors.Latest(ctx)
		require.NoError(e.t, err)
		return ok && an.Seq == seq && an.Hash == hash
	}, waitFor, tick, "the chain head was never anchored")
}

// waitConsumed waits until the recorder has acknowledged every message in
// the AUDIT stream.
func (e *recorderEnv) waitConsumed() {
	e.t.Helper()
	ctx := context.Background()
	require.Eventually(e.t, func() bool {
		st, err := e.js.Stream(ctx, bus.StreamAudit)
		require.NoError(e.t, err)
		si, err := st.Info(ctx)
		require.NoError(e.t, err)
		cons, err := e.js.Consumer(ctx, bus.StreamAudit, audit.RecorderName)
		if err != nil {
			return false
		}
		ci, err := cons.Info(ctx)
		require.NoError(e.t, err)
		return ci.AckFloor.Stream == si.State.LastSeq && ci.NumAckPending == 0 && ci.NumPending == 0
	}, waitFor, tick, "the recorder never acknowledged the whole AUDIT stream")
}

// requireChain checks that the store holds exactly the wanted event IDs,
// each once, in a gap-free chain that verifies against the JetStream anchors.
func (e *recorderEnv) requireChain(want []domain.AuditEvent) {
	t := e.t
	t.Helper()
	ctx := context.Background()
	recs, err := e.store.Query(ctx, audit.Filter{Limit: 10000})
	require.NoError(t, err)
	count := map[string]int{}
	for i, r := range recs {
		require.EqualValues(t, i+1, r.Seq, "sequence numbers have no gaps")
		count[r.Event.ID]++
	}
	for id, n := range count {
		require.Equal(t, 1, n, "event %s stored %d times", id, n)
	}
	for _, ev := range want {
		require.Equal(t, 1, count[ev.ID], "event %s stored %d times", ev.ID, count[ev.ID])
	}
	require.Len(t, recs, len(want))

	res, err := audit.Verify(ctx, e.store, e.anchors)
	require.NoError(t, err)
	require.True(t, res.OK, res.Problem)
	require.EqualValues(t, len(want), res.Checked)
	require.EqualValues(t, len(want), res.HeadSeq)
	require.NotNil(t, res.Anchor, "verified against at least one JetStream anchor")
}

func TestRecorderStoresPublishedEvents(t *testing.T) {
	for _, tc := range []struct {
		name  string
		n     int
		batch int
	}{
		{name: "one event", n: 1, batch: 0},
		{name: "many events, default batch", n: 300, batch: 0},
		{name: "many small batches", n: 100, batch: 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newRecorderEnv(t)
			evs := events(tc.n, "pub")
			e.publish(evs)
			e.start(tc.batch)
			e.waitRows(tc.n)
			e.waitAnchored()
			e.requireChain(evs)

			// Stored in stream order, with the event as published.
			recs, err := e.store.Query(context.Background(), audit.Filter{Limit: 10000})
			require.NoError(t, err)
			for i, r := range recs {
				require.Equal(t, evs[i].ID, r.Event.ID)
				require.True(t, evs[i].Time.Equal(r.Event.Time))
				require.Equal(t, evs[i].Detail, r.Event.Detail)
			}
		})
	}
}

func TestJetStreamAnchors(t *testing.T) {
	e := newRecorderEnv(t)
	ctx := context.Background()
	_, ok, err := e.anchors.Latest(ctx)
	require.NoError(t, err)
	require.False(t, ok, "no anchor yet")
	list, err := e.anchors.All(ctx)
	require.NoError(t, err)
	require.Empty(t, list)

	want := []audit.Anchor{{Seq: 1, Hash: strings.Repeat("a", 64)}, {Seq: 5, Hash: strings.Repeat("b", 64)}}
	for _, an := range want {
		require.NoError(t, e.anchors.Write(ctx, an))
	}
	latest, ok, err := e.anchors.Latest(ctx)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, want[1], latest)
	list, err = e.anchors.All(ctx)
	require.NoError(t, err)
	require.Equal(t, want, list)
	require.NoError(t, e.anchors.Ensure(ctx, 1), "Ensure is idempotent")
}

func TestRecorderExactlyOnceAfterCommitWithoutAck(t *testing.T) {
	for _, tc := range []struct {
		name      string
		committed func(evs []domain.AuditEvent) []domain.AuditEvent // appended before the recorder starts
	}{
		{name: "first part committed", committed: func(evs []domain.AuditEvent) []domain.AuditEvent { return evs[:20] }},
		{name: "everything committed", committed: func(evs []domain.AuditEvent) []domain.AuditEvent { return evs }},
		{name: "one in the middle committed", committed: func(evs []domain.AuditEvent) []domain.AuditEvent { return evs[25:26] }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newRecorderEnv(t)
			evs := events(50, "crash")
			e.publish(evs)
			// A previous recorder committed these and crashed before its
			// ack: JetStream still has them as unacknowledged.
			n, err := e.store.Append(context.Background(), tc.committed(evs))
			require.NoError(t, err)
			require.Equal(t, len(tc.committed(evs)), n)

			e.start(8)
			e.waitConsumed()
			e.waitRows(len(evs))
			e.waitAnchored()
			e.requireChain(evs)
		})
	}
}

func TestRecorderRestartHasNoDuplicatesOrGaps(t *testing.T) {
	e := newRecorderEnv(t)
	first, second, third := events(120, "one"), events(80, "two"), events(40, "three")

	e.publish(first)
	stop := e.start(9)
	e.waitRows(len(first))
	stop()

	// Published while no recorder runs: the durable consumer keeps them.
	e.publish(second)
	require.Equal(t, len(first), e.rows())

	stop = e.start(9)
	e.waitRows(len(first) + len(second))
	stop()

	e.publish(third)
	e.start(0)
	all := append(append(append([]domain.AuditEvent{}, first...), second...), third...)
	e.waitRows(len(all))
	e.waitConsumed()
	e.waitAnchored()
	e.requireChain(all)
}

func TestRecorderStoresARepublishedEventOnce(t *testing.T) {
	e := newRecorderEnv(t)
	ctx := context.Background()
	evs := events(10, "rep")
	e.publish(evs)
	e.start(4)
	e.waitRows(len(evs))

	st, err := e.js.Stream(ctx, bus.StreamAudit)
	require.NoError(t, err)
	msgs := func() uint64 {
		si, err := st.Info(ctx)
		require.NoError(t, err)
		return si.State.Msgs
	}
	require.EqualValues(t, len(evs), msgs())

	// Inside the duplicate window the bus drops the republish itself.
	e.publish(evs[3:5])
	require.EqualValues(t, len(evs), msgs(), "JetStream deduplicates on the event ID")

	// With another Nats-Msg-Id the stream stores the copies; the store
	// must still keep each event once.
	for _, ev := range evs[3:6] {
		b, err := json.Marshal(ev)
		require.NoError(t, err)
		_, err = e.js.Publish(ctx, bus.SubjectAudit+"."+ev.Action, b, jetstream.WithMsgID("republish-"+ev.ID))
		require.NoError(t, err)
	}
	require.EqualValues(t, len(evs)+3, msgs(), "the copies reached the stream")
	e.waitConsumed()
	require.Equal(t, len(evs), e.rows())

	// The recorder is still going: a new event lands after the copies.
	extra := events(1, "after")
	e.publish(extra)
	e.waitRows(len(evs) + 1)
	e.waitConsumed()
	e.waitAnchored()
	e.requireChain(append(append([]domain.AuditEvent{}, evs...), extra...))
}

func TestVerifyWithJetStreamAnchorsDetectsTruncation(t *testing.T) {
	for _, tc := range []struct {
		name      string
		keep      int  // rows left after the DELETE
		rewrite   bool // append other events to refill the tail
		wantWords string
	}{
		{name: "last row deleted", keep: 29, wantWords: "truncated"},
		{name: "last rows deleted", keep: 25, wantWords: "truncated"},
		{name: "all rows deleted", keep: 0, wantWords: "truncated"},
		{name: "tail deleted and written over", keep: 25, rewrite: true, wantWords: "truncated and rewritten"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newRecorderEnv(t)
			ctx := context.Background()
			const n = 30
			e.publish(events(n, "trunc"))
			stop := e.start(10)
			e.waitRows(n)
			e.waitAnchored()
			stop()

			res, err := audit.Verify(ctx, e.store, e.anchors)
			require.NoError(t, err)
			require.True(t, res.OK, res.Problem)

			_, err = e.store.DB().ExecContext(ctx, `DELETE FROM audit_events WHERE seq > ?`, tc.keep)
			require.NoError(t, err)
			if tc.rewrite {
				_, err := e.store.Append(ctx, events(n-tc.keep, "forged"))
				require.NoError(t, err)
			}

			// The shortened (or refilled) chain is valid on its own...
			plain, err := audit.Verify(ctx, e.store, nil)
			require.NoError(t, err)
			require.True(t, plain.OK, plain.Problem)

			// ...only the anchors kept outside the store reveal the cut.
			res, err = audit.Verify(ctx, e.store, e.anchors)
			require.NoError(t, err)
			require.False(t, res.OK, "truncation went unnoticed")
			require.Contains(t, res.Problem, tc.wantWords)
			require.NotNil(t, res.Anchor)
			if !tc.rewrite {
				require.EqualValues(t, tc.keep+1, res.BrokenAt)
				require.EqualValues(t, tc.keep, res.HeadSeq)
			}
		})
	}
}

func TestRecorderKeepsUndecodableMessages(t *testing.T) {
	for _, tc := range []struct {
		name    string
		subject string
		data    []byte
	}{
		{name: "not JSON", subject: bus.SubjectAudit + ".x", data: []byte("this is not json")},
		{name: "JSON without an ID", subject: bus.SubjectAudit + ".x", data: []byte(`{"action":"step.started"}`)},
		{name: "JSON without an action", subject: bus.SubjectAudit + ".x", data: []byte(`{"id":"no-action"}`)},
		{name: "wrong JSON type", subject: bus.SubjectAudit + ".x", data: []byte(`["id","action"]`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newRecorderEnv(t)
			ctx := context.Background()
			before := events(3, "ok")
			e.publish(before)
			ack, err := e.js.Publish(ctx, tc.subject, tc.data)
			require.NoError(t, err)
			after := events(2, "later")
			e.publish(after)

			e.start(0)
			e.waitRows(len(before) + 1 + len(after))
			e.waitAnchored()

			recs, err := e.store.Query(ctx, audit.Filter{Action: "audit.undecodable"})
			require.NoError(t, err)
			require.Len(t, recs, 1, "the bad message is kept in the chain, not dropped")
			got := recs[0]
			require.EqualValues(t, len(before)+1, got.Seq, "in stream order")
			require.Equal(t, fmt.Sprintf("audit.undecodable/%d", ack.Sequence), got.Event.ID)
			require.Equal(t, domain.ActorSystem, got.Event.Actor.Kind)
			require.Contains(t, got.Event.Error, tc.subject)
			require.Contains(t, got.Event.Error, fmt.Sprint(ack.Sequence))

			res, err := audit.Verify(ctx, e.store, e.anchors)
			require.NoError(t, err)
			require.True(t, res.OK, res.Problem)
		})
	}
}

// A recorder that fetched a batch and died before committing it must not
// lose the batch: acking later events may never ack the uncommitted ones.
func TestRecorderLosesNothingFetchedButNotCommitted(t *testing.T) {
	e := newRecorderEnv(t)
	ctx := context.Background()
	// Create the recorder's durable consumer, with nothing to record yet.
	stop := e.start(8)
	require.Eventually(t, func() bool {
		_, err := e.js.Consumer(ctx, bus.StreamAudit, audit.RecorderName)
		return err == nil
	}, waitFor, tick)
	stop()
	evs := events(50, "lost")
	e.publish(evs)
	// The "crashed" recorder: it fetched a batch and never acked it.
	cons, err := e.js.Consumer(ctx, bus.StreamAudit, audit.RecorderName)
	require.NoError(t, err)
	batch, err := cons.Fetch(8, jetstream.FetchMaxWait(2*time.Second))
	require.NoError(t, err)
	fetched := 0
	for range batch.Messages() {
		fetched++
	}
	require.Equal(t, 8, fetched)

	e.start(8)
	e.waitRows(len(evs))
	e.waitConsumed()
	e.requireChain(evs)
}
