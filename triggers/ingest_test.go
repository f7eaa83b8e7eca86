package triggers_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/internal/bus"
	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/triggers"
)

type fakeStore struct {
	mu     sync.Mutex
	err    error
	stored []domain.AlertEvent
}

func (f *fakeStore) PublishAlerts(_ context.Context, evs []domain.AlertEvent) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	f.stored = append(f.stored, evs...)
	return nil
}

type fakeAudit struct {
	mu     sync.Mutex
	err    error
	events []domain.AuditEvent
}

func (f *fakeAudit) RecordAll(_ context.Context, evs []domain.AuditEvent) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	f.events = append(f.events, evs...)
	return nil
}

func (f *fakeAudit) actions() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, e := range f.events {
		out = append(out, e.Action)
	}
	return out
}

func demoPayload(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("testdata/webhook-demo.json")
	require.NoError(t, err)
	return string(b)
}

func TestIngest(t *testing.T) {
	demo := demoPayload(t)
	truncated := strings.Replace(demo, `"truncatedAlerts": 0`, `"truncatedAlerts": 7`, 1)
	const token = "s3cret"
	tests := []struct {
		name       string
		method     string
		auth       string
		body       string
		storeErr   error
		auditErr   error
		maxBody    int64
		wantCode   int
		wantInBody string
		wantStored int
		wantAudit  []string
	}{
		{name: "accepted", auth: "Bearer " + token, body: demo, wantCode: 200, wantInBody: `"accepted":1`, wantStored: 1},
		{name: "truncated group is audited", auth: "Bearer " + token, body: truncated, wantCode: 200, wantStored: 1, wantAudit: []string{domain.ActionAlertTruncated}},
		{name: "no token", body: demo, wantCode: 401, wantInBody: "bearer token"},
		{name: "wrong token", auth: "Bearer nope", body: demo, wantCode: 401},
		{name: "basic auth is not a bearer token", auth: "Basic czNjcmV0", body: demo, wantCode: 401},
		{name: "GET", method: http.MethodGet, auth: "Bearer " + token, wantCode: 405},
		{name: "too large", auth: "Bearer " + token, body: demo, maxBody: 100, wantCode: 413, wantInBody: "max_alerts"},
		{name: "not JSON", auth: "Bearer " + token, body: "{nope", wantCode: 400, wantInBody: "not valid JSON"},
		{name: "one alert too large to store", auth: "Bearer " + token, body: strings.Replace(demo, `"annotations": {`, `"annotations": {"huge": "`+strings.Repeat("x", triggers.MaxAlertBytes)+`", `, 1), wantCode: 413, wantInBody: "Salve stores alerts up to"},
		{name: "wrong version", auth: "Bearer " + token, body: strings.Replace(demo, `"version": "4"`, `"version": "3"`, 1), wantCode: 400, wantInBody: `version is \"3\"`},
		{name: "JetStream cannot store", auth: "Bearer " + token, body: demo, storeErr: errors.New("no responders"), wantCode: 503, wantInBody: "retry"},
		// Accepted alerts are audited by the recorder from ALERTS: the
		// webhook publishes nothing else for them.
		{name: "accepted alerts need no audit publish", auth: "Bearer " + token, body: demo, auditErr: errors.New("timeout"), wantCode: 200, wantStored: 1},
		{name: "truncation record cannot be stored", auth: "Bearer " + token, body: truncated, auditErr: errors.New("timeout"), wantCode: 503, wantStored: 1},
		{name: "ALERTS is full", auth: "Bearer " + token, body: demo, storeErr: fmt.Errorf("%w: %w: maximum bytes exceeded", bus.ErrNotStored, bus.ErrStreamFull), wantCode: 503, wantInBody: "the ALERTS stream is full"},
		{name: "AUDIT is full", auth: "Bearer " + token, body: truncated, auditErr: fmt.Errorf("%w: %w: maximum bytes exceeded", bus.ErrNotStored, bus.ErrStreamFull), wantCode: 503, wantStored: 1, wantInBody: "the AUDIT stream is full"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := &fakeStore{err: tt.storeErr}
			audit := &fakeAudit{err: tt.auditErr}
			h := &triggers.Ingest{Store: store, Audit: audit, Token: token, MaxBody: tt.maxBody, Log: slog.New(slog.DiscardHandler),
				Now: func() time.Time { return time.Date(2026, 11, 24, 9, 0, 1, 0, time.UTC) }}
			method := tt.method
			if method == "" {
				method = http.MethodPost
			}
			req := httptest.NewRequest(method, "/v1/alertmanager", strings.NewReader(tt.body))
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			require.Equal(t, tt.wantCode, rec.Code, rec.Body.String())
			require.Equal(t, "application/json", rec.Header().Get("Content-Type"))
			var body map[string]any
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body), "error bodies are JSON")
			if tt.wantCode >= 400 {
				require.NotEmpty(t, body["error"])
			}
			if tt.wantInBody != "" {
				require.Contains(t, rec.Body.String(), tt.wantInBody)
			}
			require.Len(t, store.stored, tt.wantStored)
			require.Equal(t, tt.wantAudit, audit.actions())
			if tt.wantCode == 503 {
				require.NotEmpty(t, rec.Header().Get("Retry-After"))
			}
		})
	}
}

func TestIngestEmptyTokenRefusesEverything(t *testing.T) {
	h := &triggers.Ingest{Store: &fakeStore{}, Audit: &fakeAudit{}, Log: slog.New(slog.DiscardHandler)}
	req := httptest.NewRequest(http.MethodPost, "/v1/alertmanager", strings.NewReader(demoPayload(t)))
	req.Header.Set("Authorization", "Bearer ")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	require.Equal(t, http.StatusUnauthorized, rec.Code)
}

func TestIngestStoresEventsWithDedupIDs(t *testing.T) {
	store := &fakeStore{}
	h := &triggers.Ingest{Store: store, Audit: &fakeAudit{}, Token: "t", Log: slog.New(slog.DiscardHandler)}
	req := httptest.NewRequest(http.MethodPost, "/v1/alertmanager", strings.NewReader(demoPayload(t)))
	req.Header.Set("Authorization", "Bearer t")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	require.Equal(t, 200, rec.Code)
	_, _ = io.Copy(io.Discard, rec.Body)
	require.Len(t, store.stored, 1)
	ev := store.stored[0]
	require.Equal(t, "5e1f6f2b7a0c9d3e|firing|2026-11-24T09:00:00Z", ev.ID)
	require.Equal(t, "salve", ev.Receiver)
	require.Equal(t, "demo-1", ev.Labels["instance"])
}

// A NATS server with a small max_payload lowers the largest alert the
// webhook accepts: such an alert gets 413 at once, never 503 for ever.
func TestIngestFitsTheNATSPayloadLimit(t *testing.T) {
	require.Equal(t, triggers.MaxAlertBytes, triggers.MaxAlertFor(1<<20))
	require.Equal(t, 60<<10, triggers.MaxAlertFor(64<<10))
	demo, err := os.ReadFile("testdata/webhook-demo.json")
	require.NoError(t, err)
	body := strings.Replace(string(demo), `"annotations": {`, `"annotations": {"big": "`+strings.Repeat("x", 70<<10)+`", `, 1)
	store := &fakeStore{}
	h := &triggers.Ingest{Store: store, Audit: &fakeAudit{}, Token: "t0k3n-0123456789abcdef0123456789ab", Log: slog.New(slog.DiscardHandler),
		MaxAlertBytes: triggers.MaxAlertFor(64 << 10)}
	req := httptest.NewRequest(http.MethodPost, "/v1/alertmanager", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer t0k3n-0123456789abcdef0123456789ab")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	require.Equal(t, http.StatusRequestEntityTooLarge, rec.Code, rec.Body.String())
	require.Contains(t, rec.Body.String(), "Salve stores alerts up to 61440 bytes")
	require.Empty(t, store.stored)
}
