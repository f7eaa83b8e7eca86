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
	"net/url"
	"sort"
	"strconv"
	"time"

	"github.com/salve-sre/salve/internal/audit"
	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/internal/runs"
	"github.com/salve-sre/salve/internal/timeline"
	"github.com/salve-sre/salve/triggers"
)

// RunReader reads runs; *runs.Runs implements it.
type RunReader interface {
	List(ctx context.Context, pageSize int, pageToken []byte) ([]runs.Summary, []byte, error)
	Get(ctx context.Context, workflowID, runID string) (runs.Detail, error)
}

// AuditReader reads and verifies the audit log.
type AuditReader interface {
	Query(ctx context.Context, f audit.Filter) ([]audit.Record, error)
	Verify(ctx context.Context) (audit.VerifyResult, error)
	Alerts(ctx context.Context, f audit.AlertFilter) ([]audit.AlertState, error)
}

// Check is one readiness dependency.
type Check struct {
	Name string
	// Check returns nil when the dependency is usable.
	Check func(ctx context.Context) error
	// Warning, when set, is shown in /readyz even when healthy (e.g. an
	// insecure dev-only setting).
	Warning string
}

// Server holds what the handlers need.
type Server struct {
	Ingest   http.Handler
	Runs     RunReader
	Runbooks triggers.Runbooks
	Audit    AuditReader
	Checks   []Check
	Version  string
	Log      *slog.Logger
}

// Handler returns the routed API.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "version": s.Version})
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("POST /v1/alertmanager", s.Ingest)
	mux.HandleFunc("GET /v1/runs", s.listRuns)
	mux.HandleFunc("GET /v1/runs/{id...}", s.getRun)
	mux.HandleFunc("GET /v1/runbooks", s.listRunbooks)
	mux.HandleFunc("GET /v1/audit", s.listAudit)
	mux.HandleFunc("GET /v1/audit/verify", s.verifyAudit)
	mux.HandleFunc("GET /v1/timelines/{key...}", s.incidentTimeline)
	mux.HandleFunc("GET /v1/alerts", s.listAlerts)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		triggers.WriteError(w, http.StatusNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path, nil)
	})
	return mux
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	type result struct {
		Name    string `json:"name"`
		OK      bool   `json:"ok"`
		Error   string `json:"error,omitempty"`
		Warning string `json:"warning,omitempty"`
	}
	ready := true
	out := make([]result, 0, len(s.Checks))
	for _, c := range s.Checks {
		res := result{Name: c.Name, OK: true, Warning: c.Warning}
		if err := c.Check(ctx); err != nil {
			res.OK, res.Error, ready = false, err.Error(), false
		}
		out = append(out, res)
	}
	code := http.StatusOK
	if !ready {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, map[string]any{"ready": ready, "checks": out})
}

func (s *Server) listRuns(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	size, ok := limitParam(w, q, 100, 1000)
	if !ok {
		return
	}
	var token []byte
	if v := q.Get("pageToken"); v != "" {
		t, err := base64.RawURLEncoding.DecodeString(v)
		if err != nil {
			triggers.WriteError(w, http.StatusBadRequest, "pageToken is not a token from a previous response", nil)
			return
		}
		token = t
	}
	list, next, err := s.Runs.List(r.Context(), size, token)
	if err != nil {
		s.Log.Error("list runs", "error", err)
		triggers.WriteError(w, http.StatusServiceUnavailable, "cannot read runs from Temporal: "+err.Error(), nil)
		return
	}
	body := map[string]any{"runs": list}
	if len(next) > 0 {
		body["nextPageToken"] = base64.RawURLEncoding.EncodeToString(next)
	}
	writeJSON(w, http.StatusOK, body)
}

func (s *Server) getRun(w http.ResponseWriter, r *http.Request) {
	d, err := s.Runs.Get(r.Context(), r.PathValue("id"), r.URL.Query().Get("runId"))
	if errors.Is(err, runs.ErrNotFound) {
		triggers.WriteError(w, http.StatusNotFound, err.Error(), nil)
		return
	}
	if err != nil {
		s.Log.Error("get run", "error", err)
		triggers.WriteError(w, http.StatusServiceUnavailable, "cannot read the run from Temporal: "+err.Error(), nil)
		return
	}
	writeJSON(w, http.StatusOK, d)
}

func (s *Server) listRunbooks(w http.ResponseWriter, r *http.Request) {
	type item struct {
		Name        string   `json:"name"`
		Description string   `json:"description,omitempty"`
		Owner       string   `json:"owner,omitempty"`
		Matchers    []string `json:"matchers,omitempty"`
		Steps       []string `json:"steps"`
		Source      string   `json:"source"`
		Hash        string   `json:"hash"`
	}
	out := []item{}
	if set := s.Runbooks.Current(); set != nil {
		for _, rb := range set.All() {
			it := item{Name: rb.Name(), Description: rb.Metadata.Description, Owner: rb.Metadata.Owner,
				Matchers: rb.Spec.Trigger.Matchers, Source: rb.Source, Hash: rb.Hash}
			for _, st := range rb.Spec.Steps {
				it.Steps = append(it.Steps, st.Name+" ("+st.Action+")")
			}
			out = append(out, it)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	writeJSON(w, http.StatusOK, map[string]any{"runbooks": out})
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
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			if t, terr := time.Parse(time.RFC3339, v); terr == nil {
				f.Since = t
			} else {
				triggers.WriteError(w, http.StatusBadRequest, "since must be a duration such as 1h or an RFC 3339 time", nil)
				return
			}
		} else {
			f.Since = time.Now().Add(-d)
		}
	}
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			triggers.WriteError(w, http.StatusBadRequest, "after must be a sequence number from a previous response", nil)
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
		triggers.WriteError(w, http.StatusServiceUnavailable, "cannot read the audit store: "+err.Error(), nil)
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
		triggers.WriteError(w, http.StatusServiceUnavailable, err.Error(), nil)
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
		triggers.WriteError(w, http.StatusBadRequest, "format must be json or markdown", nil)
		return
	}
	ctx := r.Context()
	const max = 10000
	recs, err := s.Audit.Query(ctx, audit.Filter{IncidentKey: key, Limit: max})
	if err != nil {
		triggers.WriteError(w, http.StatusServiceUnavailable, "cannot read the audit store: "+err.Error(), nil)
		return
	}
	if len(recs) == 0 {
		triggers.WriteError(w, http.StatusNotFound, fmt.Sprintf("no audit records for incident %q", key), nil)
		return
	}
	// Step events carry the run, not the incident key: add each run's.
	seen := map[int64]bool{}
	for _, rec := range recs {
		seen[rec.Seq] = true
	}
	all := append([]audit.Record{}, recs...)
	runsSeen := map[string]bool{}
	for _, rec := range recs {
		wf := rec.Event.WorkflowID
		if wf == "" || runsSeen[wf] {
			continue
		}
		runsSeen[wf] = true
		more, err := s.Audit.Query(ctx, audit.Filter{WorkflowID: wf, Limit: max})
		if err != nil {
			triggers.WriteError(w, http.StatusServiceUnavailable, "cannot read the audit store: "+err.Error(), nil)
			return
		}
		for _, m := range more {
			if !seen[m.Seq] {
				seen[m.Seq] = true
				all = append(all, m)
			}
		}
	}
	// The alerts themselves: accepted alerts from a day before the first
	// record on; Build keeps those of this incident's fingerprints.
	alerts, err := s.Audit.Query(ctx, audit.Filter{Action: domain.ActionAlertAccepted, Since: recs[0].Event.Time.Add(-24 * time.Hour), Limit: max})
	if err != nil {
		triggers.WriteError(w, http.StatusServiceUnavailable, "cannot read the audit store: "+err.Error(), nil)
		return
	}
	tl := timeline.Build(key, all, alerts)
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
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			triggers.WriteError(w, http.StatusBadRequest, "since must be a duration such as 24h", nil)
			return
		}
		f.Since = time.Now().Add(-d)
	}
	var ok bool
	if f.Limit, ok = limitParam(w, q, f.Limit, 10000); !ok {
		return
	}
	list, err := s.Audit.Alerts(r.Context(), f)
	if err != nil {
		triggers.WriteError(w, http.StatusServiceUnavailable, "cannot read alerts: "+err.Error(), nil)
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
		triggers.WriteError(w, http.StatusBadRequest, fmt.Sprintf("limit must be a whole number from 1 to %d", max), nil)
		return 0, false
	}
	return n, true
}
