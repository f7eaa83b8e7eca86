package metrics_test

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace"

	"github.com/salve-sre/salve/activities"
	"github.com/salve-sre/salve/internal/bus"
	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/internal/metrics"
	"github.com/salve-sre/salve/triggers"
)

// Metrics implements the observers its users declare (checked here, so the
// package itself imports none of them).
var (
	_ triggers.IngestMetrics  = (*metrics.Metrics)(nil)
	_ triggers.TriggerMetrics = (*metrics.Metrics)(nil)
	_ activities.Metrics      = (*metrics.Metrics)(nil)
	_ bus.DuplicateObserver   = (*metrics.Metrics)(nil)
)

func TestDecisionNamesMatchTriggers(t *testing.T) {
	require.Equal(t, triggers.DecisionStarted, metrics.DecisionStarted)
	require.Equal(t, triggers.DecisionJoined, metrics.DecisionJoined)
	require.Equal(t, triggers.DecisionResolved, metrics.DecisionResolved)
	require.Equal(t, triggers.DecisionSuppressed, metrics.DecisionSuppressed)
	require.Equal(t, triggers.DecisionNoMatch, metrics.DecisionNoMatch)
}

// families gathers m, without the Go and process collectors.
func families(t *testing.T, m *metrics.Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	mfs, err := m.Gatherer().Gather()
	require.NoError(t, err)
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "salve_") {
			out[mf.GetName()] = mf
		}
	}
	return out
}

// series counts salve_* series (a histogram is one series per label set).
func series(t *testing.T, m *metrics.Metrics) int {
	t.Helper()
	n := 0
	for _, mf := range families(t, m) {
		n += len(mf.GetMetric())
	}
	return n
}

// find returns the series of name with exactly these label pairs.
func find(t *testing.T, m *metrics.Metrics, name string, labels ...string) (*dto.Metric, bool) {
	t.Helper()
	require.Zero(t, len(labels)%2)
	mf, ok := families(t, m)[name]
	if !ok {
		return nil, false
	}
outer:
	for _, s := range mf.GetMetric() {
		if len(s.GetLabel()) != len(labels)/2 {
			continue
		}
		for i := 0; i < len(labels); i += 2 {
			found := false
			for _, lp := range s.GetLabel() {
				if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue outer
			}
		}
		return s, true
	}
	return nil, false
}

// value is a counter's or gauge's value, or a histogram's sample count.
func value(t *testing.T, m *metrics.Metrics, name string, labels ...string) float64 {
	t.Helper()
	s, ok := find(t, m, name, labels...)
	require.True(t, ok, "no series %s%v", name, labels)
	switch {
	case s.Counter != nil:
		return s.GetCounter().GetValue()
	case s.Gauge != nil:
		return s.GetGauge().GetValue()
	case s.Histogram != nil:
		return float64(s.GetHistogram().GetSampleCount())
	}
	t.Fatalf("series %s%v has no value", name, labels)
	return 0
}

func histSum(t *testing.T, m *metrics.Metrics, name string, labels ...string) float64 {
	t.Helper()
	s, ok := find(t, m, name, labels...)
	require.True(t, ok, "no series %s%v", name, labels)
	return s.GetHistogram().GetSampleSum()
}

func finished(runbook, outcome string, detail map[string]string) domain.AuditEvent {
	return domain.AuditEvent{ID: "x", Action: domain.ActionRunFinished, Runbook: runbook, Outcome: outcome, Detail: detail}
}

func TestObserversMoveTheirSeries(t *testing.T) {
	tests := []struct {
		name    string
		observe func(m *metrics.Metrics)
		metric  string
		labels  []string
		want    float64 // counter/gauge value or histogram count
		wantSum float64 // histogram sum, when want is a count
	}{
		{"firing alerts", func(m *metrics.Metrics) {
			m.AlertsAccepted([]domain.AlertEvent{{Status: "firing"}, {Status: "firing"}, {Status: "resolved"}})
		}, "salve_alerts_received_total", []string{"status", "firing"}, 2, 0},
		{"resolved alerts", func(m *metrics.Metrics) {
			m.AlertsAccepted([]domain.AlertEvent{{Status: "firing"}, {Status: "resolved"}})
		}, "salve_alerts_received_total", []string{"status", "resolved"}, 1, 0},
		{"an odd status is other", func(m *metrics.Metrics) {
			m.AlertsAccepted([]domain.AlertEvent{{Status: "exploded"}})
		}, "salve_alerts_received_total", []string{"status", "other"}, 1, 0},
		{"duplicates", func(m *metrics.Metrics) { m.AlertsDeduplicated(3); m.AlertsDeduplicated(0) },
			"salve_alerts_deduplicated_total", nil, 3, 0},
		{"publish latency", func(m *metrics.Metrics) { m.AlertsPublished(context.Background(), 250*time.Millisecond) },
			"salve_ingest_publish_seconds", nil, 1, 0.25},
		{"webhook answers", func(m *metrics.Metrics) { m.WebhookAnswered(200); m.WebhookAnswered(200); m.WebhookAnswered(503) },
			"salve_ingest_requests_total", []string{"code", "200"}, 2, 0},
		{"webhook 5xx", func(m *metrics.Metrics) { m.WebhookAnswered(503) },
			"salve_ingest_requests_total", []string{"code", "503"}, 1, 0},
		{"a code out of range is other", func(m *metrics.Metrics) { m.WebhookAnswered(0); m.WebhookAnswered(1000) },
			"salve_ingest_requests_total", []string{"code", "other"}, 2, 0},
		{"started", func(m *metrics.Metrics) { m.TriggerDecision("restart", "started") },
			"salve_trigger_decisions_total", []string{"runbook", "restart", "decision", "started"}, 1, 0},
		{"no match has no runbook", func(m *metrics.Metrics) { m.TriggerDecision("ignored", "no_match") },
			"salve_trigger_decisions_total", []string{"runbook", "", "decision", "no_match"}, 1, 0},
		{"run succeeded", func(m *metrics.Metrics) {
			m.AuditRecorded(finished("restart", "succeeded", map[string]string{"durationSeconds": "42.500", "toilSeconds": "1200.000"}))
		}, "salve_runs_total", []string{"runbook", "restart", "outcome", "succeeded"}, 1, 0},
		{"run duration", func(m *metrics.Metrics) {
			m.AuditRecorded(finished("restart", "failed", map[string]string{"durationSeconds": "42.500"}))
		}, "salve_run_duration_seconds", []string{"runbook", "restart"}, 1, 42.5},
		{"toil saved adds up", func(m *metrics.Metrics) {
			m.AuditRecorded(finished("restart", "succeeded", map[string]string{"toilSeconds": "1200.000"}))
			m.AuditRecorded(finished("restart", "succeeded", map[string]string{"toilSeconds": "900.5"}))
			m.AuditRecorded(finished("restart", "failed", map[string]string{})) // no toil: not counted
		}, "salve_toil_saved_seconds_total", []string{"runbook", "restart"}, 2100.5, 0},
		{"rejected run", func(m *metrics.Metrics) { m.AuditRecorded(finished("restart", "rejected", nil)) },
			"salve_runs_total", []string{"runbook", "restart", "outcome", "rejected"}, 1, 0},
		{"an odd outcome is other", func(m *metrics.Metrics) { m.AuditRecorded(finished("restart", "weird", nil)) },
			"salve_runs_total", []string{"runbook", "restart", "outcome", "other"}, 1, 0},
		{"approval wait, granted and rejected", func(m *metrics.Metrics) {
			m.AuditRecorded(domain.AuditEvent{Action: domain.ActionApprovalGranted, Detail: map[string]string{"waitSeconds": "30.000"}})
			m.AuditRecorded(domain.AuditEvent{Action: domain.ActionApprovalRejected, Detail: map[string]string{"waitSeconds": "90.000"}})
			m.AuditRecorded(domain.AuditEvent{Action: domain.ActionApprovalTimedOut})
			m.AuditRecorded(domain.AuditEvent{Action: domain.ActionApprovalGranted, Detail: map[string]string{"waitSeconds": "soon"}})
		}, "salve_approval_wait_seconds", nil, 2, 120},
		{"step succeeded", func(m *metrics.Metrics) {
			m.StepFinished(context.Background(), "http.request", "succeeded", 2*time.Second)
		},
			"salve_step_duration_seconds", []string{"kind", "http.request", "outcome", "succeeded"}, 1, 2},
		{"step planned", func(m *metrics.Metrics) { m.StepFinished(context.Background(), "kubernetes.restart", "planned", 0) },
			"salve_step_duration_seconds", []string{"kind", "kubernetes.restart", "outcome", "planned"}, 1, 0},
		{"runbooks loaded", func(m *metrics.Metrics) { m.Runbooks([]string{"a", "b", "c"}); m.Runbooks([]string{"a", "b"}) },
			"salve_runbooks_loaded", nil, 2, 0},
		{"credentials issued", func(m *metrics.Metrics) {
			m.Leases(func() metrics.LeaseTotals { return metrics.LeaseTotals{Issued: 7, Revoked: 6, RevokeFailed: 1} })
		}, "salve_credentials_issued_total", nil, 7, 0},
		{"credentials revoked", func(m *metrics.Metrics) {
			m.Leases(func() metrics.LeaseTotals { return metrics.LeaseTotals{Issued: 7, Revoked: 6, RevokeFailed: 1} })
		}, "salve_credentials_revoked_total", nil, 6, 0},
		{"approvals pending", func(m *metrics.Metrics) { m.ApprovalsPending(func() float64 { return 4 }) },
			"salve_approvals_pending", nil, 4, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := metrics.New()
			tt.observe(m)
			require.Equal(t, tt.want, value(t, m, tt.metric, tt.labels...))
			if tt.wantSum != 0 {
				require.InDelta(t, tt.wantSum, histSum(t, m, tt.metric, tt.labels...), 1e-9)
			}
		})
	}
}

func TestRunFinishedWithoutRunbookOrWithBadDetailIsNotGuessed(t *testing.T) {
	m := metrics.New()
	m.Runbooks([]string{"r"})
	m.AuditRecorded(finished("", "succeeded", map[string]string{"durationSeconds": "1"}))
	m.AuditRecorded(finished("r", "succeeded", map[string]string{"durationSeconds": "-1", "toilSeconds": "NaN"}))
	m.AuditRecorded(domain.AuditEvent{Action: domain.ActionRunStarted, Runbook: "r"})
	require.Equal(t, 1.0, value(t, m, "salve_runs_total", "runbook", "r", "outcome", "succeeded"))
	require.Equal(t, 0.0, value(t, m, "salve_run_duration_seconds", "runbook", "r"))
	require.Equal(t, 0.0, value(t, m, "salve_toil_saved_seconds_total", "runbook", "r"))
	_, ok := find(t, m, "salve_runs_total", "runbook", "", "outcome", "succeeded")
	require.False(t, ok)
}

func TestRunbooksPreinitialisesZeroSeries(t *testing.T) {
	m := metrics.New()
	m.Runbooks([]string{"restart", "scale-out"})
	for _, rb := range []string{"restart", "scale-out"} {
		for _, o := range []string{"succeeded", "failed", "cancelled", "rejected"} {
			require.Equal(t, 0.0, value(t, m, "salve_runs_total", "runbook", rb, "outcome", o))
		}
		for _, d := range []string{"started", "joined", "resolved_signalled", "suppressed"} {
			require.Equal(t, 0.0, value(t, m, "salve_trigger_decisions_total", "runbook", rb, "decision", d))
		}
		require.Equal(t, 0.0, value(t, m, "salve_toil_saved_seconds_total", "runbook", rb))
		require.Equal(t, 0.0, value(t, m, "salve_run_duration_seconds", "runbook", rb))
		_, ok := find(t, m, "salve_trigger_decisions_total", "runbook", rb, "decision", "no_match")
		require.False(t, ok, "no_match is never per runbook")
	}
	require.Equal(t, 0.0, value(t, m, "salve_trigger_decisions_total", "runbook", "", "decision", "no_match"))
	require.Equal(t, 2.0, value(t, m, "salve_runbooks_loaded"))

	// A reload that drops a runbook keeps its history, and repeating the
	// call adds nothing.
	before := series(t, m)
	m.Runbooks([]string{"restart"})
	m.Runbooks([]string{"restart"})
	require.Equal(t, before, series(t, m))
	require.Equal(t, 1.0, value(t, m, "salve_runbooks_loaded"))

	m.StepKinds([]string{"http.request"})
	for _, o := range []string{"succeeded", "failed", "planned"} {
		require.Equal(t, 0.0, value(t, m, "salve_step_duration_seconds", "kind", "http.request", "outcome", o))
	}
	// Series that exist from the start.
	require.Equal(t, 0.0, value(t, m, "salve_alerts_received_total", "status", "firing"))
	require.Equal(t, 0.0, value(t, m, "salve_ingest_requests_total", "code", "503"))
	require.Equal(t, 0.0, value(t, m, "salve_credentials_issued_total"))
	_, ok := families(t, m)["salve_approvals_pending"]
	require.False(t, ok, "no approvals gauge until a source is given")
}

// A thousand incidents, runs and alerts with distinct fingerprints, IDs
// and keys add observations, never series.
func TestLabelCardinalityIsBounded(t *testing.T) {
	m := metrics.New()
	m.Runbooks([]string{"restart"})
	m.StepKinds([]string{"http.request"})
	m.ApprovalsPending(func() float64 { return 0 })
	feed := func(i int) {
		id := fmt.Sprintf("%06d", i)
		ev := domain.AlertEvent{ID: "fp" + id + "|firing|t", Fingerprint: "fp" + id, Status: "firing",
			Labels: map[string]string{"alertname": "Crash", "instance": "host-" + id}}
		m.AlertsAccepted([]domain.AlertEvent{ev})
		m.AlertsPublished(context.Background(), time.Millisecond)
		m.WebhookAnswered(http.StatusOK)
		m.AlertsDeduplicated(1)
		m.TriggerDecision("restart", "started")
		m.TriggerDecision("restart", "joined")
		m.TriggerDecision("nothing-"+id, "no_match")
		m.StepFinished(context.Background(), "http.request", "succeeded", time.Second)
		m.AuditRecorded(domain.AuditEvent{
			ID: "salve/restart/" + id + "/run-" + id + "/run.finished", Action: domain.ActionRunFinished, Runbook: "restart",
			WorkflowID: "salve/restart/" + id, RunID: "run-" + id, IncidentKey: "shop/" + id, Outcome: "succeeded",
			Actor:  domain.Actor{Kind: domain.ActorAlert, Name: "Crash"},
			Detail: map[string]string{"durationSeconds": "10", "toilSeconds": "60", "owner": "team-" + id},
		})
		m.AuditRecorded(domain.AuditEvent{Action: domain.ActionApprovalGranted, WorkflowID: "salve/restart/" + id,
			Actor: domain.Actor{Kind: domain.ActorUser, Name: "user-" + id}, Detail: map[string]string{"waitSeconds": "5"}})
	}
	feed(0)
	after1 := series(t, m)
	for i := 1; i < 1000; i++ {
		feed(i)
	}
	require.Equal(t, after1, series(t, m), "series grew with distinct IDs")
	require.Equal(t, 1000.0, value(t, m, "salve_runs_total", "runbook", "restart", "outcome", "succeeded"))
	require.Equal(t, 60000.0, value(t, m, "salve_toil_saved_seconds_total", "runbook", "restart"))
	require.Equal(t, 1000.0, value(t, m, "salve_trigger_decisions_total", "runbook", "", "decision", "no_match"))

	// No label value anywhere carries an ID.
	for name, mf := range families(t, m) {
		for _, s := range mf.GetMetric() {
			for _, lp := range s.GetLabel() {
				require.NotRegexp(t, `\d{6}|fp|run-|salve/|user-|team-`, lp.GetValue(), "%s{%s}", name, lp.GetName())
			}
		}
	}
}

func TestNilMetricsObserveNothing(t *testing.T) {
	var m *metrics.Metrics
	require.NotPanics(t, func() {
		m.AlertsAccepted([]domain.AlertEvent{{Status: "firing"}})
		m.AlertsPublished(context.Background(), time.Second)
		m.WebhookAnswered(200)
		m.AlertsDeduplicated(1)
		m.TriggerDecision("a", "started")
		m.StepFinished(context.Background(), "k", "succeeded", time.Second)
		m.AuditRecorded(finished("a", "succeeded", nil))
		m.Runbooks([]string{"a"})
		m.StepKinds([]string{"k"})
		m.ApprovalsPending(func() float64 { return 1 })
		m.Leases(func() metrics.LeaseTotals { return metrics.LeaseTotals{} })
	})
}

func TestHandlerServesTheExpositionFormatAndPassesLint(t *testing.T) {
	m := metrics.New()
	m.Runbooks([]string{"restart"})
	m.StepKinds([]string{"http.request"})
	m.ApprovalsPending(func() float64 { return math.NaN() })
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	for _, want := range []string{
		`salve_runs_total{outcome="succeeded",runbook="restart"} 0`,
		`salve_approvals_pending NaN`,
		`go_goroutines `,
		`process_`, // the process collector (Linux)
	} {
		require.Contains(t, string(body), want)
	}

	mfs, err := m.Gatherer().Gather()
	require.NoError(t, err)
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	require.NoError(t, err)
	var ours []string
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "salve_") {
			ours = append(ours, p.Metric+": "+p.Text)
		}
	}
	require.Empty(t, ours)
}

// A latency observed inside a sampled trace carries the trace as its
// exemplar, and /metrics serves it to a scraper that asks for OpenMetrics.
func TestLatencyExemplars(t *testing.T) {
	m := metrics.New()
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	sampled := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled}))
	unsampled := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid}))
	m.AlertsPublished(sampled, 3*time.Millisecond)
	m.StepFinished(sampled, "http.request", "succeeded", 2*time.Second)
	m.StepFinished(unsampled, "notify", "succeeded", time.Second)

	exemplars := map[string][]string{}
	mfs, err := m.Gatherer().Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		for _, met := range mf.GetMetric() {
			for _, b := range met.GetHistogram().GetBucket() {
				if e := b.GetExemplar(); e != nil {
					for _, l := range e.GetLabel() {
						exemplars[mf.GetName()] = append(exemplars[mf.GetName()], l.GetName()+"="+l.GetValue())
					}
				}
			}
		}
	}
	require.Equal(t, []string{"trace_id=" + tid.String()}, exemplars["salve_ingest_publish_seconds"])
	require.Equal(t, []string{"trace_id=" + tid.String()}, exemplars["salve_step_duration_seconds"], "one exemplar: the unsampled step has none")

	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	req.Header.Set("Accept", "application/openmetrics-text; version=1.0.0")
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, req)
	require.Contains(t, rec.Body.String(), `# {trace_id="`+tid.String()+`"}`)
}
