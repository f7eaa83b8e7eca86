// Package metrics is Salve's Prometheus instrumentation: one Metrics value
// built on its own registry, served by Handler at GET /metrics.
//
// The packages that do the work declare the small observer interfaces they
// need (triggers.IngestMetrics, triggers.TriggerMetrics,
// activities.Metrics, bus.DuplicateObserver) and Metrics implements them
// structurally, so this package imports none of them: it sits beside them
// at layer L2 of DESIGN §5 and depends only on internal/domain (L0) and the
// Prometheus client. What other packages count themselves (Vault leases)
// reaches it through a plain function the composition root adapts.
//
// Labels are bounded: runbook names, step kinds, outcomes, alert statuses,
// trigger decisions and HTTP codes. Fingerprints, run and workflow IDs,
// incident keys and Vault roles are never labels.
package metrics

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/trace"

	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/internal/safety"
)

// Trigger decisions (the decision label of salve_trigger_decisions_total);
// the same strings as triggers.Decision*.
const (
	DecisionStarted    = "started"
	DecisionJoined     = "joined"
	DecisionResolved   = "resolved_signalled"
	DecisionSuppressed = "suppressed"
	DecisionNoMatch    = "no_match"
	DecisionFailed     = "failed"
)

// Run outcomes (the outcome label of salve_runs_total): a run's final state.
const (
	RunSucceeded = "succeeded"
	RunFailed    = "failed"
	RunCancelled = "cancelled"
	RunRejected  = "rejected"
)

// Step outcomes (the outcome label of salve_step_duration_seconds).
const (
	StepSucceeded = "succeeded"
	StepFailed    = "failed"
	StepPlanned   = "planned" // a mutating step in dry-run mode: not run
)

// other stands in for a label value outside its known set, so a surprise
// value can never grow the number of series.
const other = "other"

var (
	runbookDecisions = []string{DecisionStarted, DecisionJoined, DecisionResolved, DecisionSuppressed, DecisionFailed}
	allDecisions     = append(slices.Clone(runbookDecisions), DecisionNoMatch)
	runOutcomes      = []string{RunSucceeded, RunFailed, RunCancelled, RunRejected}
	stepOutcomes     = []string{StepSucceeded, StepFailed, StepPlanned}
	alertStatuses    = []string{domain.StatusFiring, domain.StatusResolved}
	// ingestCodes are the answers the webhook handler gives; their series
	// exist from the start so 5xx rates read 0, not "no data".
	ingestCodes = []int{http.StatusOK, http.StatusBadRequest, http.StatusUnauthorized,
		http.StatusMethodNotAllowed, http.StatusRequestEntityTooLarge, http.StatusServiceUnavailable}
)

// Metrics holds every Salve metric. The zero value is not usable; a nil
// *Metrics is, and observes nothing.
type Metrics struct {
	reg *prometheus.Registry

	alertsReceived     *prometheus.CounterVec
	alertsDeduplicated prometheus.Counter
	ingestPublish      prometheus.Histogram
	ingestRequests     *prometheus.CounterVec
	triggerDecisions   *prometheus.CounterVec
	safetyChecks       *prometheus.CounterVec
	sloDecisions       *prometheus.CounterVec
	runs               *prometheus.CounterVec
	runDuration        *prometheus.HistogramVec
	toilSaved          *prometheus.CounterVec
	stepDuration       *prometheus.HistogramVec
	approvalWait       prometheus.Histogram
	runbooksLoaded     prometheus.Gauge
	isolated           *prometheus.CounterVec

	pendingOnce sync.Once
	pending     atomic.Pointer[func() float64]
	leases      atomic.Pointer[func() LeaseTotals]

	mu       sync.Mutex
	runbooks map[string]bool // runbooks whose series exist
}

// New builds the metrics on a fresh registry with the Go and process
// collectors.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{reg: reg, runbooks: map[string]bool{}}
	m.alertsReceived = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "salve_alerts_received_total",
		Help: "Alerts in webhooks Salve accepted (stored durably, answered 2xx), by status; duplicates included.",
	}, []string{"status"})
	m.alertsDeduplicated = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "salve_alerts_deduplicated_total",
		Help: "Alerts JetStream already had (an Alertmanager retry or HA peer): stored once, counted here.",
	})
	m.ingestPublish = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "salve_ingest_publish_seconds",
		Help:    "Time to store one webhook's alerts in JetStream (until every publish is acknowledged or fails).",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	})
	m.ingestRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "salve_ingest_requests_total",
		Help: "Alertmanager webhook requests by the HTTP status Salve answered.",
	}, []string{"code"})
	m.triggerDecisions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "salve_trigger_decisions_total",
		Help: "What the trigger decided for each stored alert and matching runbook: started, joined, resolved_signalled, suppressed, or no_match (runbook=\"\").",
	}, []string{"runbook", "decision"})
	m.safetyChecks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "salve_safety_checks_total",
		Help: "Alerts whose new run the safety envelope refused or changed, by runbook and the check that decided (cooldown, max_runs_per_hour, target_locked, blast_radius, silenced, maintenance_window, circuit_breaker_open, ...).",
	}, []string{"runbook", "check"})
	m.sloDecisions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "salve_slo_decisions_total",
		Help: "Runs started under a runbook's SLO policy (spec.slo), by SLO, the error budget's burn when the run started (fast, slow, none, unknown) and what the run did (act, approve, notify).",
	}, []string{"slo", "burn", "action"})
	m.runs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "salve_runs_total",
		Help: "Finished runs by runbook and outcome (succeeded, failed, cancelled, rejected).",
	}, []string{"runbook", "outcome"})
	m.runDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "salve_run_duration_seconds",
		Help:    "Duration of finished runs, from workflow start to the run.finished event, approval waits included.",
		Buckets: []float64{1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 43200},
	}, []string{"runbook"})
	m.toilSaved = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "salve_toil_saved_seconds_total",
		Help: "Manual work saved: each alert-triggered run that succeeded adds its runbook's toil.manualMinutes, less the time people spent approving it.",
	}, []string{"runbook"})
	m.stepDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "salve_step_duration_seconds",
		Help:    "Duration of one step attempt's action (the executor call), by step kind and outcome (succeeded, failed, planned).",
		Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800},
	}, []string{"kind", "outcome"})
	m.approvalWait = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "salve_approval_wait_seconds",
		Help:    "How long runs waited for a person's approval decision (granted or rejected).",
		Buckets: []float64{5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 43200, 86400},
	})
	m.runbooksLoaded = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "salve_runbooks_loaded",
		Help: "Runbooks in the serving set.",
	})
	m.isolated = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "salve_consumer_isolated_events_total",
		Help: "Events a consumer set aside because its store refuses them, instead of retrying them for ever: the recorder stores an audit.unstorable record in their place; the incidents read model leaves the alert out.",
	}, []string{"consumer"})
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.alertsReceived, m.alertsDeduplicated, m.ingestPublish, m.ingestRequests,
		m.triggerDecisions, m.safetyChecks, m.sloDecisions, m.runs, m.runDuration, m.toilSaved, m.stepDuration,
		m.approvalWait, m.runbooksLoaded, leaseCollector{m}, m.isolated,
	)
	for _, c := range isolatingConsumers {
		m.isolated.WithLabelValues(c)
	}
	for _, s := range alertStatuses {
		m.alertsReceived.WithLabelValues(s)
	}
	for _, c := range ingestCodes {
		m.ingestRequests.WithLabelValues(strconv.Itoa(c))
	}
	m.triggerDecisions.WithLabelValues("", DecisionNoMatch)
	return m
}

// Handler serves the registry in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	// OpenMetrics, for a scraper that asks for it, carries the exemplars:
	// a latency observation made inside a sampled trace names it.
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg, EnableOpenMetrics: true})
}

// Gatherer is the registry, for tests and for embedding.
func (m *Metrics) Gatherer() prometheus.Gatherer { return m.reg }

// --- ingest (triggers.IngestMetrics) ---

// AlertsAccepted counts the alerts of a webhook that was answered 2xx.
func (m *Metrics) AlertsAccepted(evs []domain.AlertEvent) {
	if m == nil {
		return
	}
	for _, ev := range evs {
		m.alertsReceived.WithLabelValues(known(ev.Status, alertStatuses)).Inc()
	}
}

// AlertsPublished observes how long storing one webhook's alerts took,
// whether it succeeded or not.
func (m *Metrics) AlertsPublished(ctx context.Context, took time.Duration) {
	if m == nil {
		return
	}
	observe(ctx, m.ingestPublish, took.Seconds())
}

// observe records v, with the trace ctx is in as its exemplar when that
// trace is sampled (and so can be looked up).
func observe(ctx context.Context, o prometheus.Observer, v float64) {
	if sc := trace.SpanContextFromContext(ctx); sc.IsSampled() {
		if e, ok := o.(prometheus.ExemplarObserver); ok {
			e.ObserveWithExemplar(v, prometheus.Labels{"trace_id": sc.TraceID().String()})
			return
		}
	}
	o.Observe(v)
}

// WebhookAnswered counts one webhook request by the status it got.
func (m *Metrics) WebhookAnswered(code int) {
	if m == nil {
		return
	}
	label := other
	if code >= 100 && code <= 599 {
		label = strconv.Itoa(code) // at most 500 values, in practice the six above
	}
	m.ingestRequests.WithLabelValues(label).Inc()
}

// AlertsDeduplicated counts alerts JetStream answered as duplicates
// (bus.DuplicateObserver).
func (m *Metrics) AlertsDeduplicated(n int) {
	if m == nil || n <= 0 {
		return
	}
	m.alertsDeduplicated.Add(float64(n))
}

// --- trigger (triggers.TriggerMetrics) ---

// TriggerDecision counts one recorded trigger decision.
func (m *Metrics) TriggerDecision(runbook, decision string) {
	if m == nil {
		return
	}
	if decision == DecisionNoMatch {
		runbook = ""
	}
	m.triggerDecisions.WithLabelValues(runbook, known(decision, allDecisions)).Inc()
}

// SafetyCheck counts one alert whose new run the safety envelope refused
// or changed, by the check that decided. check is from a fixed set in
// internal/safety, so the label stays bounded.
// SLODecision counts a run started under an SLO policy. The SLO names come
// from SLO files (configuration), never from alerts.
func (m *Metrics) SLODecision(slo, burn, action string) {
	if m == nil {
		return
	}
	m.sloDecisions.WithLabelValues(slo, known(burn, sloBurns), known(action, sloActions)).Inc()
}

var (
	sloBurns   = []string{"fast", "slow", "none", "unknown"}
	sloActions = []string{"act", "approve", "notify"}
)

func (m *Metrics) SafetyCheck(runbook, check string) {
	if m == nil {
		return
	}
	m.safetyChecks.WithLabelValues(runbook, known(check, safety.Checks)).Inc()
}

// --- worker (activities.Metrics) ---

// StepFinished observes one step attempt's action.
func (m *Metrics) StepFinished(ctx context.Context, kind, outcome string, took time.Duration) {
	if m == nil {
		return
	}
	observe(ctx, m.stepDuration.WithLabelValues(kind, known(outcome, stepOutcomes)), took.Seconds())
}

// AuditRecorded reads the run-level audit events the worker's Audit
// activity stored: run.finished feeds the run counters, duration and toil
// saved; approval.granted and approval.rejected the approval wait. The
// workflow writes these details (workflows.finishDetail); values that do
// not parse are skipped, never guessed.
func (m *Metrics) AuditRecorded(ev domain.AuditEvent) {
	if m == nil {
		return
	}
	switch ev.Action {
	case domain.ActionRunFinished:
		if ev.Runbook == "" {
			return
		}
		m.runs.WithLabelValues(ev.Runbook, known(ev.Outcome, runOutcomes)).Inc()
		if d, ok := seconds(ev.Detail, "durationSeconds"); ok {
			m.runDuration.WithLabelValues(ev.Runbook).Observe(d)
		}
		if s, ok := seconds(ev.Detail, "toilSeconds"); ok {
			m.toilSaved.WithLabelValues(ev.Runbook).Add(s)
		}
	case domain.ActionApprovalGranted, domain.ActionApprovalRejected:
		if w, ok := seconds(ev.Detail, "waitSeconds"); ok {
			m.approvalWait.Observe(w)
		}
	}
}

func seconds(detail map[string]string, key string) (float64, bool) {
	v, ok := detail[key]
	if !ok {
		return 0, false
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil || f < 0 || f != f {
		return 0, false
	}
	return f, true
}

// --- composition root ---

// Runbooks records the serving runbook set after a (re)load: it sets
// salve_runbooks_loaded and creates the zero-valued series of every
// runbook × decision and outcome, so dashboards show 0 rather than no
// data for a runbook that never ran. Series of runbooks that went away
// stay: their counts are history, and runs of them may still finish.
func (m *Metrics) Runbooks(names []string) {
	if m == nil {
		return
	}
	m.runbooksLoaded.Set(float64(len(names)))
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, rb := range names {
		if rb == "" || m.runbooks[rb] {
			continue
		}
		m.runbooks[rb] = true
		for _, d := range runbookDecisions {
			m.triggerDecisions.WithLabelValues(rb, d)
		}
		for _, o := range runOutcomes {
			m.runs.WithLabelValues(rb, o)
		}
		m.runDuration.WithLabelValues(rb)
		m.toilSaved.WithLabelValues(rb)
		for _, c := range safety.Checks {
			m.safetyChecks.WithLabelValues(rb, c)
		}
	}
}

// StepKinds creates the zero-valued step duration series of every
// registered step kind.
func (m *Metrics) StepKinds(kinds []string) {
	if m == nil {
		return
	}
	for _, k := range kinds {
		for _, o := range stepOutcomes {
			m.stepDuration.WithLabelValues(k, o)
		}
	}
}

// ApprovalsPending registers salve_approvals_pending, read from f at each
// scrape; f must be cheap (see CachedCount). A later call replaces f. A
// process that never calls it (a role that cannot see runs) does not
// export the gauge at all, rather than a misleading 0.
func (m *Metrics) ApprovalsPending(f func() float64) {
	if m == nil || f == nil {
		return
	}
	m.pending.Store(&f)
	m.pendingOnce.Do(func() {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "salve_approvals_pending",
			Help: "Runs waiting for a person's approval now (refreshed at most every few seconds).",
		}, func() float64 { return (*m.pending.Load())() }))
	})
}

// AlertsParked registers salve_trigger_parked_alerts, read from f at each
// scrape: alerts the trigger could not handle, waiting for a person.
func (m *Metrics) AlertsParked(f func() float64) {
	if m == nil || f == nil {
		return
	}
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "salve_trigger_parked_alerts",
		Help: "Alerts the trigger could not handle and no retry would fix, waiting for a person (salve alerts failed).",
	}, f))
}

// known returns v if it is one of set, else "other".
func known(v string, set []string) string {
	if slices.Contains(set, v) {
		return v
	}
	return other
}
