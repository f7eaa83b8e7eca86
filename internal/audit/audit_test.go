package audit_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/internal/audit"
	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/internal/testenv"
)

// stores runs a test against a real SQLite file and a real PostgreSQL.
func stores(t *testing.T, fn func(t *testing.T, open func() *audit.Store)) {
	t.Run("sqlite", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "audit.db")
		fn(t, func() *audit.Store {
			s, err := audit.Open(context.Background(), path)
			require.NoError(t, err)
			t.Cleanup(func() { _ = s.Close() })
			return s
		})
	})
	t.Run("postgres", func(t *testing.T) {
		dsn := testenv.Postgres(t)
		fn(t, func() *audit.Store {
			s, err := audit.Open(context.Background(), dsn)
			require.NoError(t, err)
			t.Cleanup(func() { _ = s.Close() })
			return s
		})
	})
}

func events(n int, prefix string) []domain.AuditEvent {
	t0 := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
	out := make([]domain.AuditEvent, n)
	for i := range out {
		out[i] = domain.AuditEvent{
			ID: fmt.Sprintf("%s-%d", prefix, i), Time: t0.Add(time.Duration(i) * time.Second),
			Actor: domain.Actor{Kind: domain.ActorSystem, Name: "test"}, Action: domain.ActionStepStarted,
			Runbook: "rb", WorkflowID: "salve/rb/k", IncidentKey: "k", Step: "s",
			Detail: map[string]string{"i": fmt.Sprint(i), "z": "last", "a": "first"},
		}
	}
	return out
}

// memAnchors is a fixed anchor list for store-level tests; the JetStream
// anchors are tested against a real server in recorder_test.go.
type memAnchors []audit.Anchor

func (m memAnchors) All(context.Context) ([]audit.Anchor, error) { return m, nil }

func TestAppendDedupesAndVerifies(t *testing.T) {
	stores(t, func(t *testing.T, open func() *audit.Store) {
		ctx := context.Background()
		s := open()
		n, err := s.Append(ctx, events(5, "a"))
		require.NoError(t, err)
		require.Equal(t, 5, n)
		// A redelivered batch with one new event: only the new one lands.
		n, err = s.Append(ctx, append(events(5, "a"), events(1, "b")...))
		require.NoError(t, err)
		require.Equal(t, 1, n)

		res, err := audit.Verify(ctx, s, nil)
		require.NoError(t, err)
		require.True(t, res.OK, res.Problem)
		require.EqualValues(t, 6, res.Checked)
		require.EqualValues(t, 6, res.HeadSeq)

		recs, err := s.Query(ctx, audit.Filter{WorkflowID: "salve/rb/k", AfterSeq: 2, Limit: 2})
		require.NoError(t, err)
		require.Len(t, recs, 2)
		require.EqualValues(t, 3, recs[0].Seq)
		require.Equal(t, "a-2", recs[0].Event.ID)
		require.Equal(t, recs[0].Hash, recs[1].PrevHash)

		// The chain continues across reopening the store.
		require.NoError(t, s.Close())
		s2 := open()
		_, err = s2.Append(ctx, events(1, "c"))
		require.NoError(t, err)
		res, err = audit.Verify(ctx, s2, nil)
		require.NoError(t, err)
		require.True(t, res.OK, res.Problem)
		require.EqualValues(t, 7, res.HeadSeq)
	})
}

func TestVerifyDetectsTampering(t *testing.T) {
	cases := []struct {
		name      string
		tamper    []string // SQL run against the store
		anchors   func(head []audit.Record) memAnchors
		wantAt    int64
		wantWords string
	}{
		{name: "edited event", tamper: []string{`UPDATE audit_events SET event_json = REPLACE(event_json, '"step.started"', '"step.succeeded"') WHERE seq = 4`},
			wantAt: 4, wantWords: "edited"},
		{name: "edited indexed column", tamper: []string{`UPDATE audit_events SET runbook = 'other' WHERE seq = 3`},
			wantAt: 3, wantWords: "edited"},
		{name: "deleted row", tamper: []string{`DELETE FROM audit_events WHERE seq = 5`},
			wantAt: 5, wantWords: "deleted"},
		{name: "reordered rows", tamper: []string{
			`UPDATE audit_events SET seq = 100 WHERE seq = 6`,
			`UPDATE audit_events SET seq = 6 WHERE seq = 7`,
			`UPDATE audit_events SET seq = 7 WHERE seq = 100`},
			wantAt: 6, wantWords: "reordered"},
		{name: "truncated tail", tamper: []string{`DELETE FROM audit_events WHERE seq > 8`},
			anchors: func(recs []audit.Record) memAnchors { return memAnchors{{Seq: 10, Hash: recs[9].Hash}} },
			wantAt:  9, wantWords: "truncated"},
		{name: "truncated tail written over", tamper: []string{
			`DELETE FROM audit_events WHERE seq > 8`},
			anchors: func(recs []audit.Record) memAnchors {
				return memAnchors{{Seq: 8, Hash: recs[7].Hash}, {Seq: 10, Hash: recs[9].Hash}}
			},
			wantAt: 0, wantWords: ""}, // filled below: rows 9 and 10 are re-appended with other content
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			stores(t, func(t *testing.T, open func() *audit.Store) {
				ctx := context.Background()
				s := open()
				_, err := s.Append(ctx, events(10, "e"))
				require.NoError(t, err)
				recs, err := s.Query(ctx, audit.Filter{})
				require.NoError(t, err)
				var anchors audit.Anchors
				if tc.anchors != nil {
					anchors = tc.anchors(recs)
				}
				res, err := audit.Verify(ctx, s, anchors)
				require.NoError(t, err)
				require.True(t, res.OK, "untampered chain verifies: %s", res.Problem)

				for _, q := range tc.tamper {
					_, err := s.DB().ExecContext(ctx, q)
					require.NoError(t, err, q)
				}
				wantAt, words := tc.wantAt, tc.wantWords
				if tc.name == "truncated tail written over" {
					// The chain is valid again after new events fill 9 and
					// 10; only the anchor at 10 reveals the rewrite.
					_, err := s.Append(ctx, events(2, "forged"))
					require.NoError(t, err)
					plain, err := audit.Verify(ctx, s, nil)
					require.NoError(t, err)
					require.True(t, plain.OK, "without anchors the rewritten chain looks valid")
					wantAt, words = 10, "rewritten"
				}
				res, err = audit.Verify(ctx, s, anchors)
				require.NoError(t, err)
				require.False(t, res.OK, "tampering went unnoticed")
				require.Equal(t, wantAt, res.BrokenAt, res.Problem)
				require.Contains(t, res.Problem, words)
			})
		})
	}
}

func TestCanonicalIsStable(t *testing.T) {
	ev := events(1, "x")[0]
	local := ev
	local.Time = ev.Time.In(time.FixedZone("X", 3600))
	a, err := audit.Canonical(ev)
	require.NoError(t, err)
	b, err := audit.Canonical(local)
	require.NoError(t, err)
	require.Equal(t, string(a), string(b), "time zones do not change the hash")
	require.Contains(t, string(a), `"detail":{"a":"first","i":"0","z":"last"}`, "map keys are sorted")
	h1, err := audit.ChainHash(audit.GenesisHash, a)
	require.NoError(t, err)
	h2, err := audit.ChainHash(audit.GenesisHash, append([]byte{}, a...))
	require.NoError(t, err)
	require.Equal(t, h1, h2)
	_, err = audit.ChainHash("nothex", a)
	require.Error(t, err)
}

// Replicas starting at once on a fresh PostgreSQL all open the store:
// CREATE ... IF NOT EXISTS alone is not safe against itself (one of two
// servers of the production topology test died on a duplicate pg_class
// row).
func TestConcurrentOpensOnAFreshPostgres(t *testing.T) {
	for round := range 3 {
		dsn := testenv.Postgres(t)
		errs := make(chan error, 4)
		for range 4 {
			go func() {
				s, err := audit.Open(context.Background(), dsn)
				if err == nil {
					_ = s.Close()
				}
				errs <- err
			}()
		}
		for range 4 {
			require.NoError(t, <-errs, "round %d", round)
		}
	}
}
