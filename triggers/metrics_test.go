package triggers_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/triggers"
)

// fakeMetrics records what the ingest and trigger hooks report.
type fakeMetrics struct {
	mu        sync.Mutex
	codes     []int
	published int
	accepted  []string // statuses
	decisions []string // runbook/decision
	checks    []string // runbook/check
	slo       []string // slo/burn/action
}

func (f *fakeMetrics) SLODecision(slo, burn, action string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.slo = append(f.slo, slo+"/"+burn+"/"+action)
}

func (f *fakeMetrics) SafetyCheck(runbook, check string) {
	f.mu.Lock()
	f.checks = append(f.checks, runbook+"/"+check)
	f.mu.Unlock()
}

func (f *fakeMetrics) WebhookAnswered(code int) {
	f.mu.Lock()
	f.codes = append(f.codes, code)
	f.mu.Unlock()
}
func (f *fakeMetrics) AlertsPublished(context.Context, time.Duration) {
	f.mu.Lock()
	f.published++
	f.mu.Unlock()
}

func (f *fakeMetrics) AlertsAccepted(evs []domain.AlertEvent) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ev := range evs {
		f.accepted = append(f.accepted, ev.Status)
	}
}

func (f *fakeMetrics) TriggerDecision(runbook, decision string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.decisions = append(f.decisions, runbook+"/"+decision)
}

func TestIngestMetrics(t *testing.T) {
	tests := []struct {
		name          string
		auth          string
		storeErr      error
		auditErr      error
		truncated     bool // Alertmanager cut the group: the one audit publish on the webhook's path
		wantCode      int
		wantPublished int
		wantAccepted  []string
	}{
		{name: "accepted", auth: "Bearer t", wantCode: 200, wantPublished: 1, wantAccepted: []string{"firing"}},
		{name: "unauthorized", auth: "Bearer nope", wantCode: 401},
		{name: "not stored", auth: "Bearer t", storeErr: errors.New("no responders"), wantCode: 503, wantPublished: 1},
		{name: "stored, truncation record not", auth: "Bearer t", auditErr: errors.New("timeout"), truncated: true, wantCode: 503, wantPublished: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fm := &fakeMetrics{}
			h := &triggers.Ingest{Store: &fakeStore{err: tt.storeErr}, Audit: &fakeAudit{err: tt.auditErr}, Token: "t",
				Log: slog.New(slog.DiscardHandler), Metrics: fm}
			body := demoPayload(t)
			if tt.truncated {
				body = strings.Replace(body, `"truncatedAlerts": 0`, `"truncatedAlerts": 7`, 1)
			}
			req := httptest.NewRequest(http.MethodPost, "/v1/alertmanager", strings.NewReader(body))
			req.Header.Set("Authorization", tt.auth)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			require.Equal(t, tt.wantCode, rec.Code)
			require.Equal(t, []int{tt.wantCode}, fm.codes, "each answer is counted once, with its code")
			require.Equal(t, tt.wantPublished, fm.published)
			require.Equal(t, tt.wantAccepted, fm.accepted, "alerts count as received only once answered 2xx")
		})
	}
}

func TestTriggerMetricsCountRecordedDecisions(t *testing.T) {
	set := testSet(t, restartRunbook, pageRunbook)
	t0 := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
	crash := map[string]string{"alertname": "Crash", "severity": "warning", "namespace": "shop", "deployment": "cart"}
	fm := &fakeMetrics{}
	audit := &fakeAudit{}
	tr := &triggers.Trigger{Runbooks: triggers.StaticRunbooks{Set: set}, Starter: &fakeStarter{running: map[string]bool{}},
		Audit: audit, Log: slog.New(slog.DiscardHandler), Metrics: fm}
	ctx := context.Background()

	require.NoError(t, tr.Handle(ctx, alert("firing", map[string]string{"alertname": "Other"}, t0)))
	require.NoError(t, tr.Handle(ctx, alert("firing", crash, t0)))
	require.NoError(t, tr.Handle(ctx, alert("firing", crash, t0.Add(time.Minute))))
	require.NoError(t, tr.Handle(ctx, alert("resolved", crash, t0)))
	require.NoError(t, tr.Handle(ctx, alert("firing", map[string]string{"alertname": "Crash", "severity": "warning"}, t0)))
	require.Equal(t, []string{"/no_match", "restart/started", "restart/joined", "restart/resolved_signalled", "restart/failed"}, fm.decisions)

	// A decision whose audit record failed is not counted: the alert is
	// redelivered and counted when it is recorded.
	audit.err = errors.New("audit down")
	require.Error(t, tr.Handle(ctx, alert("firing", crash, t0.Add(2*time.Minute))))
	require.Len(t, fm.decisions, 5)
}
