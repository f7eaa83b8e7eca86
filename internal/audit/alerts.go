package audit

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/salve-sre/salve/internal/domain"
)

// The incidents read model: when each alert (fingerprint + startsAt) fired
// and resolved, kept beside the audit chain so toil and MTTR figures can be
// computed without replaying the ALERTS stream. It is a projection, not
// evidence: it is not hash-chained.

// AlertState is one alert occurrence.
type AlertState struct {
	Fingerprint string            `json:"fingerprint"`
	Alertname   string            `json:"alertname"`
	Labels      map[string]string `json:"labels"`
	StartsAt    time.Time         `json:"startsAt"`
	ReceivedAt  time.Time         `json:"receivedAt"`
	ResolvedAt  time.Time         `json:"resolvedAt,omitzero"`
}

// Duration is firing-to-resolved, or zero while the alert still fires.
func (a AlertState) Duration() time.Duration {
	if a.ResolvedAt.IsZero() {
		return 0
	}
	return a.ResolvedAt.Sub(a.StartsAt)
}

// alertsSchema is the alert read model's part of the schema (migrate).
var alertsSchema = []string{
	`CREATE TABLE IF NOT EXISTS alert_states (
		fingerprint    TEXT NOT NULL,
		starts_at_ns   BIGINT NOT NULL,
		alertname      TEXT NOT NULL,
		labels_json    TEXT NOT NULL,
		received_at_ns BIGINT NOT NULL,
		resolved_at_ns BIGINT,
		PRIMARY KEY (fingerprint, starts_at_ns)
	)`,
	`CREATE INDEX IF NOT EXISTS alert_states_starts ON alert_states (starts_at_ns)`,
}

// RecordAlert folds one alert notification into the read model. Repeats are
// harmless: a firing never clears a recorded resolution, and the first
// receipt time is kept.
func (s *Store) RecordAlert(ctx context.Context, ev domain.AlertEvent) error {
	labels, err := json.Marshal(ev.Labels)
	if err != nil {
		return fmt.Errorf("encode labels: %w", err)
	}
	var resolved sql.NullInt64
	if ev.Status == domain.StatusResolved {
		end := ev.EndsAt
		if end.IsZero() {
			end = ev.ReceivedAt
		}
		resolved = sql.NullInt64{Int64: end.UnixNano(), Valid: true}
	}
	_, err = s.db.ExecContext(ctx, s.q(`INSERT INTO alert_states
		(fingerprint, starts_at_ns, alertname, labels_json, received_at_ns, resolved_at_ns)
		VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (fingerprint, starts_at_ns) DO UPDATE SET
			resolved_at_ns = COALESCE(excluded.resolved_at_ns, alert_states.resolved_at_ns)`),
		columnKey(ev.Fingerprint), ev.StartsAt.UnixNano(), columnText(ev.Name()), string(labels), ev.ReceivedAt.UnixNano(), resolved)
	if err != nil {
		return fmt.Errorf("record alert %s: %w", ev.ID, err)
	}
	return nil
}

// AlertFilter selects alert states. Zero fields do not filter.
type AlertFilter struct {
	Alertname string
	Since     time.Time // alerts that started at or after
	Limit     int       // default 1000, at most 10000
}

// Alerts lists alert occurrences, oldest first.
func (s *Store) Alerts(ctx context.Context, f AlertFilter) ([]AlertState, error) {
	var (
		where []string
		args  []any
	)
	if f.Alertname != "" {
		where, args = append(where, "alertname = ?"), append(args, columnText(f.Alertname))
	}
	if !f.Since.IsZero() {
		where, args = append(where, "starts_at_ns >= ?"), append(args, f.Since.UnixNano())
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 1000
	}
	query := `SELECT fingerprint, starts_at_ns, alertname, labels_json, received_at_ns, resolved_at_ns FROM alert_states`
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY starts_at_ns, fingerprint LIMIT " + strconv.Itoa(min(limit, 10000))
	rows, err := s.db.QueryContext(ctx, s.q(query), args...)
	if err != nil {
		return nil, fmt.Errorf("query alert states: %w", err)
	}
	defer rows.Close()
	var out []AlertState
	for rows.Next() {
		var (
			a                AlertState
			starts, received int64
			resolved         sql.NullInt64
			labels           string
		)
		if err := rows.Scan(&a.Fingerprint, &starts, &a.Alertname, &labels, &received, &resolved); err != nil {
			return nil, fmt.Errorf("read alert state: %w", err)
		}
		_ = json.Unmarshal([]byte(labels), &a.Labels)
		a.StartsAt, a.ReceivedAt = time.Unix(0, starts).UTC(), time.Unix(0, received).UTC()
		if resolved.Valid {
			a.ResolvedAt = time.Unix(0, resolved.Int64).UTC()
		}
		out = append(out, a)
	}
	return out, rows.Err()
}
