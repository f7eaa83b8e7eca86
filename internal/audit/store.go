package audit

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	_ "modernc.org/sqlite"             // registers the "sqlite" driver (pure Go)

	"github.com/salve-sre/salve/internal/domain"
)

// Store is the audit store: SQLite (embedded default) or PostgreSQL, one
// schema and one code path; only placeholders differ.
type Store struct {
	db       *sql.DB
	postgres bool
}

// Open opens a store. dsn is a PostgreSQL URL (postgres://...) or a SQLite
// file path.
func Open(ctx context.Context, dsn string) (*Store, error) {
	var (
		db  *sql.DB
		err error
		pg  = strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
	)
	if pg {
		db, err = sql.Open("pgx", dsn)
	} else {
		// WAL lets readers (verify, the API) run beside the recorder;
		// synchronous=FULL makes a committed row survive a power cut.
		db, err = sql.Open("sqlite", "file:"+dsn+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=synchronous(FULL)")
		if err == nil {
			db.SetMaxOpenConns(1) // one writer; SQLite serialises anyway
		}
	}
	if err != nil {
		return nil, fmt.Errorf("open audit store: %w", err)
	}
	s := &Store{db: db, postgres: pg}
	if err := s.migrate(ctx); err != nil {
		_ = db.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// schemaLock is the PostgreSQL advisory lock key that serialises schema
// creation: CREATE ... IF NOT EXISTS is not safe against itself, and two
// replicas starting at once on a fresh database made one fail with a
// duplicate pg_class row.
const schemaLock = 0x5a17e_a0d17

func (s *Store) migrate(ctx context.Context) error {
	stmts := append([]string{
		`CREATE TABLE IF NOT EXISTS audit_events (
			seq          BIGINT PRIMARY KEY,
			event_id     TEXT NOT NULL UNIQUE,
			time_ns      BIGINT NOT NULL,
			action       TEXT NOT NULL,
			runbook      TEXT NOT NULL,
			workflow_id  TEXT NOT NULL,
			incident_key TEXT NOT NULL,
			event_json   TEXT NOT NULL,
			prev_hash    TEXT NOT NULL,
			hash         TEXT NOT NULL
		)`,
		`CREATE INDEX IF NOT EXISTS audit_events_workflow ON audit_events (workflow_id, seq)`,
		`CREATE INDEX IF NOT EXISTS audit_events_runbook ON audit_events (runbook, seq)`,
		`CREATE INDEX IF NOT EXISTS audit_events_time ON audit_events (time_ns)`,
	}, alertsSchema...)
	if !s.postgres {
		for _, stmt := range stmts {
			if _, err := s.db.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("create audit schema: %w", err)
			}
		}
		return nil
	}
	// PostgreSQL's DDL is transactional: the whole schema in one
	// transaction, one replica at a time.
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("create audit schema: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(schemaLock)); err != nil {
		return fmt.Errorf("create audit schema: lock: %w", err)
	}
	for _, stmt := range stmts {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("create audit schema: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("create audit schema: %w", err)
	}
	return nil
}

// q rewrites ? placeholders to $n for PostgreSQL.
func (s *Store) q(query string) string {
	if !s.postgres {
		return query
	}
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Append adds events to the chain in order, skipping any whose ID is
// already stored, in one transaction. It returns how many were new.
func (s *Store) Append(ctx context.Context, evs []domain.AuditEvent) (int, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("begin audit append: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	if s.postgres {
		// One appender at a time, even if two recorders run by mistake.
		if _, err := tx.ExecContext(ctx, `LOCK TABLE audit_events IN EXCLUSIVE MODE`); err != nil {
			return 0, fmt.Errorf("lock audit table: %w", err)
		}
	}
	seq, prev := int64(0), GenesisHash
	err = tx.QueryRowContext(ctx, `SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1`).Scan(&seq, &prev)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("read audit head: %w", err)
	}
	added := 0
	for _, ev := range evs {
		var one int
		err := tx.QueryRowContext(ctx, s.q(`SELECT 1 FROM audit_events WHERE event_id = ?`), columnKey(ev.ID)).Scan(&one)
		if err == nil {
			continue // already recorded: a redelivery or a republish
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return 0, fmt.Errorf("look up audit event %s: %w", ev.ID, err)
		}
		canon, err := Canonical(ev)
		if err != nil {
			return 0, err
		}
		hash, err := ChainHash(prev, canon)
		if err != nil {
			return 0, err
		}
		seq++
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO audit_events
			(seq, event_id, time_ns, action, runbook, workflow_id, incident_key, event_json, prev_hash, hash)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
			seq, columnKey(ev.ID), ev.Time.UnixNano(), columnText(ev.Action), columnText(ev.Runbook), columnText(ev.WorkflowID), columnText(ev.IncidentKey), string(canon), prev, hash); err != nil {
			return 0, fmt.Errorf("insert audit event %s: %w", ev.ID, err)
		}
		prev = hash
		added++
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("commit audit append: %w", err)
	}
	return added, nil
}

// Ping reports whether the store answers a query: how a consumer tells an
// event the store refuses from a store that is down.
func (s *Store) Ping(ctx context.Context) error {
	_, _, err := s.Head(ctx)
	return err
}

// Head returns the last record's sequence number and hash (0 and
// GenesisHash for an empty store).
func (s *Store) Head(ctx context.Context) (int64, string, error) {
	seq, hash := int64(0), GenesisHash
	err := s.db.QueryRowContext(ctx, `SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1`).Scan(&seq, &hash)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, "", fmt.Errorf("read audit head: %w", err)
	}
	return seq, hash, nil
}

// HashAt returns the hash stored at seq.
func (s *Store) HashAt(ctx context.Context, seq int64) (string, bool, error) {
	var hash string
	err := s.db.QueryRowContext(ctx, s.q(`SELECT hash FROM audit_events WHERE seq = ?`), seq).Scan(&hash)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("read audit hash at %d: %w", seq, err)
	}
	return hash, true, nil
}

// Filter selects records. Zero fields do not filter.
type Filter struct {
	WorkflowID  string
	Runbook     string
	IncidentKey string
	Action      string
	Since       time.Time
	AfterSeq    int64 // cursor: records with a greater sequence number
	Limit       int   // default 100, at most 10000
}

// Query returns records in sequence order.
func (s *Store) Query(ctx context.Context, f Filter) ([]Record, error) {
	var (
		where []string
		args  []any
	)
	add := func(cond string, arg any) { where = append(where, cond); args = append(args, arg) }
	if f.WorkflowID != "" {
		add("workflow_id = ?", columnText(f.WorkflowID))
	}
	if f.Runbook != "" {
		add("runbook = ?", columnText(f.Runbook))
	}
	if f.IncidentKey != "" {
		add("incident_key = ?", columnText(f.IncidentKey))
	}
	if f.Action != "" {
		add("action = ?", columnText(f.Action))
	}
	if !f.Since.IsZero() {
		add("time_ns >= ?", f.Since.UnixNano())
	}
	if f.AfterSeq > 0 {
		add("seq > ?", f.AfterSeq)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, 10000)
	query := `SELECT seq, event_json, prev_hash, hash FROM audit_events`
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY seq LIMIT " + strconv.Itoa(limit)
	rows, err := s.db.QueryContext(ctx, s.q(query), args...)
	if err != nil {
		return nil, fmt.Errorf("query audit events: %w", err)
	}
	defer rows.Close()
	var out []Record
	for rows.Next() {
		var (
			r    Record
			body string
		)
		if err := rows.Scan(&r.Seq, &body, &r.PrevHash, &r.Hash); err != nil {
			return nil, fmt.Errorf("read audit event: %w", err)
		}
		if err := json.Unmarshal([]byte(body), &r.Event); err != nil {
			return nil, fmt.Errorf("audit event %d is not valid JSON: %w", r.Seq, err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// rawRow is a row as verify sees it: everything stored, nothing trusted.
type rawRow struct {
	seq                                    int64
	eventID, action, runbook, workflowID   string
	incidentKey, eventJSON, prevHash, hash string
	timeNS                                 int64
}

// scan walks every row in sequence order.
func (s *Store) scan(ctx context.Context, fn func(rawRow) error) error {
	rows, err := s.db.QueryContext(ctx, `SELECT seq, event_id, time_ns, action, runbook, workflow_id, incident_key, event_json, prev_hash, hash
		FROM audit_events ORDER BY seq`)
	if err != nil {
		return fmt.Errorf("scan audit events: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var r rawRow
		if err := rows.Scan(&r.seq, &r.eventID, &r.timeNS, &r.action, &r.runbook, &r.workflowID, &r.incidentKey, &r.eventJSON, &r.prevHash, &r.hash); err != nil {
			return fmt.Errorf("read audit row: %w", err)
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	return rows.Err()
}

// DB exposes the database for tests that tamper with it on purpose.
func (s *Store) DB() *sql.DB { return s.db }

// OpenApproval is an approval a run asked for and the log records no
// answer to (no decision, no timeout, no finished run).
type OpenApproval struct {
	WorkflowID, RunID, Step string
	Deadline                time.Time
}

// OpenApprovals lists the approvals asked for whose deadline has not
// passed and that nothing answered yet: one query over the log, so the
// approvals inbox does not ask every running run. The log may lag the
// runs a little; callers confirm each candidate with its run.
func (s *Store) OpenApprovals(ctx context.Context, now time.Time) ([]OpenApproval, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT r.event_json FROM audit_events r
		WHERE r.action = ? AND NOT EXISTS (
			SELECT 1 FROM audit_events d WHERE d.workflow_id = r.workflow_id AND d.seq > r.seq
			AND d.action IN (?, ?, ?, ?, ?))
		ORDER BY r.seq`),
		domain.ActionApprovalRequested, domain.ActionApprovalGranted, domain.ActionApprovalRejected,
		domain.ActionApprovalSkipped, domain.ActionApprovalTimedOut, domain.ActionRunFinished)
	if err != nil {
		return nil, fmt.Errorf("query open approvals: %w", err)
	}
	defer rows.Close()
	var out []OpenApproval
	for rows.Next() {
		var js string
		if err := rows.Scan(&js); err != nil {
			return nil, err
		}
		var ev domain.AuditEvent
		if json.Unmarshal([]byte(js), &ev) != nil {
			continue
		}
		deadline, err := time.Parse(time.RFC3339, ev.Detail["deadline"])
		if err == nil && !deadline.After(now) {
			continue // timed out; its run writes the timeout soon
		}
		out = append(out, OpenApproval{WorkflowID: ev.WorkflowID, RunID: ev.RunID, Step: ev.Step, Deadline: deadline})
	}
	return out, rows.Err()
}
