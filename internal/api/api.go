// Package api serves Salve's HTTP API: health, the Alertmanager webhook,
// and read access to runs and runbooks.
package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/salve-sre/salve/internal/audit"
	"github.com/salve-sre/salve/internal/auth"
	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/internal/httpjson"
	"github.com/salve-sre/salve/internal/runbookload"
	"github.com/salve-sre/salve/internal/runs"
	"github.com/salve-sre/salve/internal/safety"
	"github.com/salve-sre/salve/internal/stats"
	"github.com/salve-sre/salve/internal/timeline"
	"github.com/salve-sre/salve/internal/tracing"
	"github.com/salve-sre/salve/internal/trust"
	"github.com/salve-sre/salve/runbooks"
	"github.com/salve-sre/salve/slos"
	"github.com/salve-sre/salve/triggers"
	"github.com/salve-sre/salve/workflows"
)

// RunService reads and operates runs; *runs.Runs implements it.
type RunService interface {
	ListFiltered(ctx context.Context, f runs.ListFilter, pageSize int, pageToken []byte) ([]runs.Summary, []byte, error)
	Get(ctx context.Context, workflowID, runID string) (runs.Detail, error)
	Launch(ctx context.Context, rb *runbooks.Runbook, incidentKey string, params map[string]string, actor domain.Actor, reason, requestID string) (workflowID, runID string, started bool, err error)
	Cancel(ctx context.Context, workflowID, runID, reason, identity string) (string, error)
	Decide(ctx context.Context, workflowID, runID string, d workflows.Decision) (workflows.DecisionAck, string, error)
	PendingApprovals(ctx context.Context) ([]runs.PendingApproval, error)
	Stats(ctx context.Context, runbook string, limit int) ([]runs.Summary, runs.RunbookStats, error)
}

// SafetyControl reads and resets the safety envelope's state;
// *safety.Guard implements it.
type SafetyControl interface {
	State(ctx context.Context, runbook string) (safety.BreakerState, error)
	Reset(ctx context.Context, runbook string) (bool, error)
}

// FailedAlerts lists and retries the alerts the trigger parked;
// triggers.FailedAlerts implements it.
type FailedAlerts interface {
	List(ctx context.Context) ([]triggers.FailedAlert, error)
	Retry(ctx context.Context, id string) (triggers.FailedAlert, error)
}

// AuditReader reads and verifies the audit log.
type AuditReader interface {
	Query(ctx context.Context, f audit.Filter) ([]audit.Record, error)
	Verify(ctx context.Context) (audit.VerifyResult, error)
	Alerts(ctx context.Context, f audit.AlertFilter) ([]audit.AlertState, error)
}

// Recorder writes audit events (launches, cancels, refusals).
type Recorder interface {
	Record(ctx context.Context, ev domain.AuditEvent) error
}

// Check is one readiness dependency.
type Check struct {
	Name string
	// Check returns nil when the dependency is usable.
	Check func(ctx context.Context) error
	// Warning, when set, is shown in /readyz even when healthy (e.g. an
	// insecure dev-only setting).
	Warning string
	// Warn, when set, adds a warning found at each request (e.g. a
	// consumer falling behind); "" = none.
	Warn func(ctx context.Context) string
}

// Server holds what the handlers need.
type Server struct {
	Ingest   http.Handler
	Runs     RunService
	Runbooks triggers.Runbooks
	// Catalog is the step registry, for dry-run plans.
	Catalog runbooks.StepCatalog
	Audit   AuditReader
	// Recorder audits what people do through the API.
	Recorder Recorder
	// Auth checks API tokens. Nil refuses every endpoint that needs a
	// role: the API is never open by accident.
	Auth *auth.Authenticator
	// Reload re-reads the runbook directory (POST /v1/runbooks/reload);
	// nil = not available.
	Reload func(ctx context.Context) (runbookload.Change, error)
	// PublicURL is the base URL people reach the API at, for links;
	// "" = the request's own host.
	PublicURL string
	// TraceURL is the template of links to a run's trace
	// (tracing.traceURL: e.g. http://jaeger:16686/trace/{traceId}).
	TraceURL string
	Checks   []Check
	Version  string
	Log      *slog.Logger
	// EventsPoll is how often a run's event stream checks for new audit
	// records; default 300ms.
	EventsPoll time.Duration
	// Sessions keeps the dashboard's sign-ins; nil = no cookie sign-in.
	Sessions auth.SessionStore
	// TrustedProxies may say a request came over TLS (X-Forwarded-Proto).
	TrustedProxies []netip.Prefix
	// MaxStreams bounds the event streams one caller (token or session
	// subject) holds open at once; default DefaultMaxStreams.
	MaxStreams int
	streams    streamCounter

	// Metrics serves GET /metrics (Prometheus); nil = 404.
	Metrics http.Handler
	// Trust is how much evidence a promotion needs.
	Trust trust.Policy
	// SafetyConfig is the config's safety section, for backtests.
	SafetyConfig safety.Config
	backtesting  sync.Mutex
	// Safety reads and resets runbooks' circuit breakers; nil = none.
	Safety SafetyControl
	// Failed lists and retries parked alerts; nil = 501.
	Failed FailedAlerts
	// Stats computes the dashboard's figures for a window (GET /v1/stats);
	// nil = 501.
	Stats func(ctx context.Context, from, to time.Time) (stats.Report, error)
	// SLOs is the loaded SLO set, by name (GET /v1/slos); nil = none.
	SLOs func() map[string]*slos.SLO
	// Budgets reads SLOs' burns from Prometheus; nil = no Prometheus
	// configured, which the SLO answers say.
	Budgets BudgetReader

	anonymous refusalLimiter
}

// Route is one endpoint and the role it needs. The router, the
// authorization check and the OpenAPI test all read this one table.
type Route struct {
	Method  string
	Path    string // as in the OpenAPI spec, e.g. /v1/runs/{id}/cancel
	Role    auth.Role
	Summary string
	handler http.HandlerFunc
	pattern string // ServeMux pattern when it differs from Path
}

// Routes lists every endpoint.
func (s *Server) Routes() []Route {
	return []Route{
		{Method: "GET", Path: "/healthz", Role: auth.RoleNone, Summary: "liveness", handler: s.healthz},
		{Method: "GET", Path: "/readyz", Role: auth.RoleNone, Summary: "readiness of each dependency", handler: s.readyz},
		{Method: "GET", Path: "/v1/openapi.json", Role: auth.RoleNone, Summary: "this API's OpenAPI 3 description", handler: s.openAPI},
		// The webhook authenticates with its own token, which can do nothing else.
		{Method: "POST", Path: "/v1/alertmanager", Role: auth.RoleNone, Summary: "Alertmanager webhook receiver", handler: func(w http.ResponseWriter, r *http.Request) { s.Ingest.ServeHTTP(w, r) }},
		{Method: "GET", Path: "/v1/whoami", Role: auth.RoleViewer, Summary: "the caller's subject, role and groups", handler: s.whoami},
		{Method: "GET", Path: "/v1/runs", Role: auth.RoleViewer, Summary: "list runs", handler: s.listRuns},
		{Method: "GET", Path: "/v1/runs/{id}", Role: auth.RoleViewer, Summary: "one run with its step timeline", handler: s.getRun, pattern: "GET /v1/runs/{id...}"},
		{Method: "GET", Path: "/v1/runs/{id}/events", Role: auth.RoleViewer, Summary: "live run events (Server-Sent Events)", handler: s.runEvents},
		{Method: "POST", Path: "/v1/runs/{id}/cancel", Role: auth.RoleOperator, Summary: "cancel a run (onFailure still runs)", handler: s.cancelRun},
		{Method: "POST", Path: "/v1/runs/{id}/approve", Role: auth.RoleOperator, Summary: "approve what the run waits for", handler: s.decide(true)},
		{Method: "POST", Path: "/v1/runs/{id}/reject", Role: auth.RoleOperator, Summary: "reject what the run waits for", handler: s.decide(false)},
		{Method: "GET", Path: "/v1/approvals", Role: auth.RoleViewer, Summary: "runs waiting for approval", handler: s.listApprovals},
		{Method: "GET", Path: "/v1/runbooks", Role: auth.RoleViewer, Summary: "list runbooks", handler: s.listRunbooks},
		{Method: "POST", Path: "/v1/runbooks/reload", Role: auth.RoleAdmin, Summary: "re-read the runbook directory now", handler: s.reloadRunbooks},
		{Method: "GET", Path: "/v1/runbooks/{name}", Role: auth.RoleViewer, Summary: "one runbook with recent runs and success rate", handler: s.getRunbook},
		{Method: "POST", Path: "/v1/runbooks/{name}/launch", Role: auth.RoleOperator, Summary: "launch a run, or get its plan with dryRun", handler: s.launch},
		{Method: "GET", Path: "/v1/runbooks/{name}/evidence", Role: auth.RoleViewer, Summary: "the runbook's trust evidence", handler: s.getEvidence},
		{Method: "POST", Path: "/v1/runbooks/{name}/promote", Role: auth.RoleAdmin, Summary: "promote the runbook up the trust ladder", handler: s.promote},
		{Method: "POST", Path: "/v1/runbooks/{name}/breaker/reset", Role: auth.RoleAdmin, Summary: "close the runbook's circuit breaker", handler: s.resetBreaker},
		{Method: "GET", Path: "/v1/audit", Role: auth.RoleViewer, Summary: "audit records", handler: s.listAudit},
		{Method: "GET", Path: "/v1/audit/verify", Role: auth.RoleViewer, Summary: "verify the audit hash chain", handler: s.verifyAudit},
		{Method: "GET", Path: "/v1/timelines/{key}", Role: auth.RoleViewer, Summary: "an incident's timeline", handler: s.incidentTimeline, pattern: "GET /v1/timelines/{key...}"},
		{Method: "GET", Path: "/v1/alerts", Role: auth.RoleViewer, Summary: "alert occurrences with fired and resolved times", handler: s.listAlerts},
		{Method: "GET", Path: "/v1/failed-alerts", Role: auth.RoleViewer, Summary: "alerts the trigger could not handle, waiting for a person", handler: s.listFailed},
		{Method: "POST", Path: "/v1/failed-alerts/{id}/retry", Role: auth.RoleOperator, Summary: "send a parked alert back to the trigger", handler: s.retryFailed},
		{Method: "GET", Path: "/v1/slos", Role: auth.RoleViewer, Summary: "SLOs with their current error-budget burn", handler: s.listSLOs},
		{Method: "GET", Path: "/v1/slos/{name}", Role: auth.RoleViewer, Summary: "one SLO: burn, incidents, budget consumed and saved, MTTR and MTBF", handler: s.getSLO},
		{Method: "GET", Path: "/v1/stats", Role: auth.RoleViewer, Summary: "toil saved and reliability figures for a window", handler: s.getStats},
		// Bounded labels (runbook, step kind, outcome): nothing secret.
		{Method: "GET", Path: "/metrics", Role: auth.RoleNone, Summary: "Prometheus metrics", handler: s.metrics},
	}
}

// Handler returns the routed API.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, rt := range s.Routes() {
		pattern := rt.pattern
		if pattern == "" {
			pattern = rt.Method + " " + rt.Path
		}
		mux.Handle(pattern, s.guard(rt))
	}
	mux.HandleFunc("/", s.notFound)
	return mux
}

// notFound answers paths no route serves: 405 with Allow when the path
// exists for other methods, else 404.
func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	probe := http.NewServeMux()
	for _, rt := range s.Routes() {
		pattern := rt.pattern
		if pattern == "" {
			pattern = rt.Method + " " + rt.Path
		}
		_, path, _ := strings.Cut(pattern, " ")
		method := rt.Method
		// A wildcard pattern may repeat across routes: register each
		// path once per method.
		func() {
			defer func() { _ = recover() }()
			probe.HandleFunc(method+" "+path, func(http.ResponseWriter, *http.Request) {})
		}()
	}
	var allow []string
	for _, m := range []string{"GET", "POST"} {
		if m == r.Method {
			continue
		}
		req := r.Clone(r.Context())
		req.Method = m
		if _, pat := probe.Handler(req); pat != "" {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		httpjson.WriteError(w, http.StatusMethodNotAllowed, fmt.Sprintf("%s %s: method not allowed (use %s)", r.Method, r.URL.Path, strings.Join(allow, " or ")), nil)
		return
	}
	httpjson.WriteError(w, http.StatusNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path+" (see GET /v1/openapi.json)", nil)
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "version": s.Version})
}

// CheckResult is one dependency's state, as /readyz shows it.
type CheckResult struct {
	Name    string `json:"name"`
	OK      bool   `json:"ok"`
	Error   string `json:"error,omitempty"`
	Warning string `json:"warning,omitempty"`
}

// Health runs the checks (those named in only, or all) and reports each;
// /readyz and the dashboard both show it.
func (s *Server) Health(ctx context.Context, only map[string]bool) (ready bool, out []CheckResult) {
	ready = true
	for _, c := range s.Checks {
		if len(only) > 0 && !only[c.Name] {
			continue
		}
		res := CheckResult{Name: c.Name, OK: true, Warning: c.Warning}
		if c.Warn != nil {
			if w := c.Warn(ctx); w != "" {
				res.Warning = strings.TrimPrefix(res.Warning+"; "+w, "; ")
			}
		}
		if err := c.Check(ctx); err != nil {
			res.OK, res.Error, ready = false, err.Error(), false
		}
		out = append(out, res)
	}
	return ready, out
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	// ?check=nats,temporal limits readiness to the named checks: the
	// webhook's readiness needs only NATS, so a Temporal outage or a
	// missing worker need not take the webhook out of a load balancer
	// (the trigger retries every stored alert until Temporal answers).
	only := map[string]bool{}
	if v := r.URL.Query().Get("check"); v != "" {
		known := map[string]bool{}
		for _, c := range s.Checks {
			known[c.Name] = true
		}
		for _, name := range strings.Split(v, ",") {
			if !known[name] {
				names := make([]string, 0, len(s.Checks))
				for _, c := range s.Checks {
					names = append(names, c.Name)
				}
				httpjson.WriteError(w, http.StatusBadRequest, fmt.Sprintf("unknown check %q: the checks are %s", name, strings.Join(names, ", ")), nil)
				return
			}
			only[name] = true
		}
	}
	ready, out := s.Health(ctx, only)
	if out == nil {
		out = []CheckResult{}
	}
	code := http.StatusOK
	if !ready {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, map[string]any{"ready": ready, "checks": out})
}

// listRuns serves GET /v1/runs?runbook=&status=&incidentKey=&since=&limit=&pageToken=.
func (s *Server) listRuns(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	size, ok := limitParam(w, q, 100, 1000)
	if !ok {
		return
	}
	f := runs.ListFilter{Runbook: q.Get("runbook"), Status: q.Get("status"), IncidentKey: q.Get("incidentKey")}
	if v := q.Get("since"); v != "" {
		t, err := domain.ParseSince(v, time.Now())
		if err != nil {
			httpjson.WriteError(w, http.StatusBadRequest, err.Error(), nil)
			return
		}
		f.Since = t
	}
	var token []byte
	if v := q.Get("pageToken"); v != "" {
		t, err := base64.RawURLEncoding.DecodeString(v)
		if err != nil {
			httpjson.WriteError(w, http.StatusBadRequest, "pageToken is not a token from a previous response", nil)
			return
		}
		token = t
	}
	list, next, err := s.Runs.ListFiltered(r.Context(), f, size, token)
	if err != nil {
		s.runError(w, "list runs", err)
		return
	}
	body := map[string]any{"runs": list}
	if len(next) > 0 {
		body["nextPageToken"] = base64.RawURLEncoding.EncodeToString(next)
	}
	writeJSON(w, http.StatusOK, body)
}

func (s *Server) getRun(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	d, err := s.Runs.Get(r.Context(), id, r.URL.Query().Get("runId"))
	if errors.Is(err, runs.ErrNotFound) {
		msg := err.Error()
		for _, sfx := range []string{"/events", "/cancel", "/approve", "/reject"} {
			if strings.HasSuffix(id, sfx) {
				msg += fmt.Sprintf(" (for %s, escape the slashes of the workflow ID: /v1/runs/%s%s)", sfx, url.PathEscape(strings.TrimSuffix(id, sfx)), sfx)
			}
		}
		httpjson.WriteError(w, http.StatusNotFound, msg, nil)
		return
	}
	if err != nil {
		s.runError(w, "get run", err)
		return
	}
	d.TraceURL = tracing.Link(s.TraceURL, d.TraceID)
	writeJSON(w, http.StatusOK, d)
}

func (s *Server) listRunbooks(w http.ResponseWriter, r *http.Request) {
	out := []runbookItem{}
	if set := s.Runbooks.Current(); set != nil {
		for _, rb := range set.All() {
			out = append(out, itemOf(rb))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	writeJSON(w, http.StatusOK, map[string]any{"runbooks": out})
}

// runbookItem is a runbook in lists.
type runbookItem struct {
	Name        string                    `json:"name"`
	Description string                    `json:"description,omitempty"`
	Owner       string                    `json:"owner,omitempty"`
	Matchers    []string                  `json:"matchers,omitempty"`
	Steps       []string                  `json:"steps"`
	Params      map[string]runbooks.Param `json:"params,omitempty"`
	Mode        string                    `json:"mode,omitempty"`
	Approval    bool                      `json:"approval"` // some approval is required
	ToilMinutes float64                   `json:"toilMinutes,omitempty"`
	Source      string                    `json:"source"`
	Hash        string                    `json:"hash"`
}

func itemOf(rb *runbooks.Runbook) runbookItem {
	it := runbookItem{Name: rb.Name(), Description: rb.Metadata.Description, Owner: rb.Metadata.Owner,
		Matchers: rb.Spec.Trigger.Matchers, Params: rb.Spec.Params, Mode: rb.Spec.Safety.Mode,
		ToilMinutes: rb.Spec.Toil.ManualMinutes, Source: rb.Source, Hash: rb.Hash}
	it.Approval = rb.NeedsApproval()
	for _, st := range rb.Spec.Steps {
		it.Steps = append(it.Steps, st.Name+" ("+st.Action+")")
	}
	return it
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// listAudit serves GET /v1/audit?workflowId=&runbook=&incidentKey=&action=&since=1h&after=SEQ&limit=N.
// The cursor is the last sequence number seen: pass nextAfter back as after.
func (s *Server) listAudit(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := audit.Filter{WorkflowID: q.Get("workflowId"), Runbook: q.Get("runbook"), IncidentKey: q.Get("incidentKey"), Action: q.Get("action"), Limit: 100}
	if v := q.Get("since"); v != "" {
		t, err := domain.ParseSince(v, time.Now())
		if err != nil {
			httpjson.WriteError(w, http.StatusBadRequest, err.Error(), nil)
			return
		}
		f.Since = t
	}
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			httpjson.WriteError(w, http.StatusBadRequest, "after must be a sequence number from a previous response", nil)
			return
		}
		f.AfterSeq = n
	}
	var ok bool
	if f.Limit, ok = limitParam(w, q, f.Limit, 10000); !ok {
		return
	}
	recs, err := s.Audit.Query(r.Context(), f)
	if err != nil {
		s.Log.Error("query audit", "error", err)
		httpjson.WriteError(w, http.StatusServiceUnavailable, "cannot read the audit store: "+err.Error(), nil)
		return
	}
	body := map[string]any{"events": recs}
	if recs == nil {
		body["events"] = []audit.Record{}
	}
	if len(recs) == f.Limit {
		body["nextAfter"] = recs[len(recs)-1].Seq
	}
	writeJSON(w, http.StatusOK, body)
}

func (s *Server) verifyAudit(w http.ResponseWriter, r *http.Request) {
	res, err := s.Audit.Verify(r.Context())
	if err != nil {
		httpjson.WriteError(w, http.StatusServiceUnavailable, err.Error(), nil)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// incidentTimeline serves GET /v1/timelines/{incident key}?format=json|markdown.
// The key may also be a run's workflow ID (salve/<runbook>/<key>).
func (s *Server) incidentTimeline(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	if _, k, err := domain.ParseWorkflowID(key); err == nil {
		key = k
	}
	format := r.URL.Query().Get("format")
	if format == "" {
		format = "json"
	}
	if format != "json" && format != "markdown" {
		httpjson.WriteError(w, http.StatusBadRequest, "format must be json or markdown", nil)
		return
	}
	tl, found, err := timeline.Load(r.Context(), s.Audit, key)
	if err != nil {
		httpjson.WriteError(w, http.StatusServiceUnavailable, "cannot read the audit store: "+err.Error(), nil)
		return
	}
	if !found {
		httpjson.WriteError(w, http.StatusNotFound, fmt.Sprintf("no audit records for incident %q", key), nil)
		return
	}
	if format == "markdown" {
		w.Header().Set("Content-Type", "text/markdown; charset=utf-8")
		_ = tl.Markdown(w)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = tl.JSON(w)
}

// listAlerts serves GET /v1/alerts?since=24h&alertname=&limit=: each alert
// occurrence with when it fired and resolved (the incidents read model).
func (s *Server) listAlerts(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := audit.AlertFilter{Alertname: q.Get("alertname"), Limit: 1000}
	if v := q.Get("since"); v != "" {
		t, err := domain.ParseSince(v, time.Now())
		if err != nil {
			httpjson.WriteError(w, http.StatusBadRequest, err.Error(), nil)
			return
		}
		f.Since = t
	}
	var ok bool
	if f.Limit, ok = limitParam(w, q, f.Limit, 10000); !ok {
		return
	}
	list, err := s.Audit.Alerts(r.Context(), f)
	if err != nil {
		httpjson.WriteError(w, http.StatusServiceUnavailable, "cannot read alerts: "+err.Error(), nil)
		return
	}
	type item struct {
		audit.AlertState
		DurationSeconds float64 `json:"durationSeconds,omitempty"`
	}
	out := make([]item, 0, len(list))
	for _, a := range list {
		out = append(out, item{AlertState: a, DurationSeconds: a.Duration().Seconds()})
	}
	writeJSON(w, http.StatusOK, map[string]any{"alerts": out})
}

// limitParam reads ?limit= (default def, 1..max); on a bad value it writes
// the 400 and returns false.
func limitParam(w http.ResponseWriter, q url.Values, def, max int) (int, bool) {
	v := q.Get("limit")
	if v == "" {
		return def, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > max {
		httpjson.WriteError(w, http.StatusBadRequest, fmt.Sprintf("limit must be a whole number from 1 to %d", max), nil)
		return 0, false
	}
	return n, true
}

// jsonLine is v as one line of JSON (for SSE data lines).
func jsonLine(v any) ([]byte, error) { return json.Marshal(v) }

func (s *Server) metrics(w http.ResponseWriter, r *http.Request) {
	if s.Metrics == nil {
		httpjson.WriteError(w, http.StatusNotFound, "metrics are not enabled on this server", nil)
		return
	}
	s.Metrics.ServeHTTP(w, r)
}

// getStats serves GET /v1/stats?since=7d|RFC3339&until=RFC3339 (default:
// the last 7 days).
func (s *Server) getStats(w http.ResponseWriter, r *http.Request) {
	if s.Stats == nil {
		httpjson.WriteError(w, http.StatusNotImplemented, "statistics are not available on this server", nil)
		return
	}
	q := r.URL.Query()
	to := time.Now()
	from := to.Add(-7 * 24 * time.Hour)
	if v := q.Get("since"); v != "" {
		if d, ok := parseDays(v); ok {
			from = to.Add(-d)
		} else {
			t, err := domain.ParseSince(v, time.Now())
			if err != nil {
				httpjson.WriteError(w, http.StatusBadRequest, err.Error()+" (or a number of days such as 30d)", nil)
				return
			}
			from = t
		}
	}
	if v := q.Get("until"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			httpjson.WriteError(w, http.StatusBadRequest, "until must be an RFC 3339 time", nil)
			return
		}
		to = t
	}
	if !from.Before(to) || to.Sub(from) > 400*24*time.Hour {
		httpjson.WriteError(w, http.StatusBadRequest, "the window must start before it ends and span at most 400 days", nil)
		return
	}
	rep, err := s.Stats(r.Context(), from, to)
	if err != nil {
		s.Log.Error("stats", "error", err)
		httpjson.WriteError(w, http.StatusServiceUnavailable, "cannot compute statistics: "+err.Error(), nil)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

// parseDays reads "30d".
func parseDays(v string) (time.Duration, bool) {
	n, err := strconv.Atoi(strings.TrimSuffix(v, "d"))
	if !strings.HasSuffix(v, "d") || err != nil || n <= 0 || n > 400 {
		return 0, false
	}
	return time.Duration(n) * 24 * time.Hour, true
}

// resetBreaker serves POST /v1/runbooks/{name}/breaker/reset.
func (s *Server) resetBreaker(w http.ResponseWriter, r *http.Request) {
	rb, ok := s.runbook(w, r.PathValue("name"))
	if !ok {
		return
	}
	if s.Safety == nil {
		httpjson.WriteError(w, http.StatusNotImplemented, "this server keeps no safety state", nil)
		return
	}
	var req struct {
		Reason string `json:"reason"`
	}
	if !decodeBody(w, r, &req) || !checkReason(w, req.Reason) {
		return
	}
	if strings.TrimSpace(req.Reason) == "" {
		httpjson.WriteError(w, http.StatusBadRequest, `a reason is required: send {"reason": "..."}; it goes into the audit log`, nil)
		return
	}
	was, err := s.Safety.Reset(r.Context(), rb.Name())
	if err != nil {
		httpjson.WriteError(w, http.StatusServiceUnavailable, "cannot reset the circuit breaker: "+err.Error(), nil)
		return
	}
	s.record(r.Context(), domain.AuditEvent{Actor: actorOf(principal(r)), Action: domain.ActionBreakerReset, Runbook: rb.Name(),
		Outcome: map[bool]string{true: "closed", false: "was_closed"}[was], Detail: map[string]string{"reason": req.Reason}})
	writeJSON(w, http.StatusOK, map[string]any{"runbook": rb.Name(), "wasOpen": was, "open": false})
}

// listFailed serves GET /v1/failed-alerts.
func (s *Server) listFailed(w http.ResponseWriter, r *http.Request) {
	if s.Failed == nil {
		httpjson.WriteError(w, http.StatusNotImplemented, "this server keeps no parked alerts", nil)
		return
	}
	list, err := s.Failed.List(r.Context())
	if err != nil {
		httpjson.WriteError(w, http.StatusServiceUnavailable, "cannot read parked alerts: "+err.Error(), nil)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"failedAlerts": list})
}

// retryFailed serves POST /v1/failed-alerts/{id}/retry.
func (s *Server) retryFailed(w http.ResponseWriter, r *http.Request) {
	if s.Failed == nil {
		httpjson.WriteError(w, http.StatusNotImplemented, "this server keeps no parked alerts", nil)
		return
	}
	var req struct {
		Reason string `json:"reason"`
	}
	if !decodeBody(w, r, &req) || !checkReason(w, req.Reason) {
		return
	}
	f, err := s.Failed.Retry(r.Context(), r.PathValue("id"))
	switch {
	case errors.Is(err, triggers.ErrFailedNotFound):
		httpjson.WriteError(w, http.StatusNotFound, err.Error()+" (list them with GET /v1/failed-alerts)", nil)
		return
	case errors.Is(err, triggers.ErrAlertGone):
		httpjson.WriteError(w, http.StatusGone, err.Error()+": it cannot be retried", nil)
		return
	case err != nil:
		httpjson.WriteError(w, http.StatusServiceUnavailable, "cannot retry: "+err.Error(), nil)
		return
	}
	s.record(r.Context(), domain.AuditEvent{Actor: actorOf(principal(r)), Action: domain.ActionTriggerRetried, Runbook: f.Runbook,
		WorkflowID: f.WorkflowID, IncidentKey: f.IncidentKey, Outcome: "sent_back",
		Detail: map[string]string{"failedId": f.ID, "alertId": f.AlertID, "reason": req.Reason}})
	writeJSON(w, http.StatusAccepted, map[string]any{"retried": f})
}
