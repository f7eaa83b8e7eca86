package api

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/internal/httpjson"
	"github.com/salve-sre/salve/internal/slobudget"
	"github.com/salve-sre/salve/runbooks"
	"github.com/salve-sre/salve/slos"
)

// BudgetReader reads SLOs' burns and error ratios from Prometheus;
// *slobudget.Reader implements it.
type BudgetReader interface {
	Burn(ctx context.Context, name string) (slos.Burn, error)
	ErrorRatioAt(ctx context.Context, s *slos.SLO, window time.Duration, at time.Time) (ratio float64, ok bool, err error)
}

// NoPrometheus is the burn error of a server without a Prometheus.
const NoPrometheus = "no Prometheus configured (--prometheus-url)"

// SLOUnits says the unit of every figure of GET /v1/slos and
// GET /v1/slos/{name}; both answers carry it.
var SLOUnits = map[string]string{
	"objective":       "share of good events (0.999 = 99.9 %)",
	"errorBudget":     "share of events allowed to be bad: 1 − objective",
	"periodDays":      "days",
	"errorRatio":      "share of bad events over the window (0.05 = 5 %)",
	"burnRate":        "multiple of the rate that spends the budget in exactly one period: errorRatio / errorBudget",
	"budgetRemaining": "share of the period's error budget left; negative when overspent",
	"budgetConsumed":  "share of the period's error budget (0.0347 = 3.47 %)",
	"budgetSaved":     "share of the period's error budget, an estimate",
	"durationSeconds": "seconds",
	"windowMinutes":   "minutes",
	"manualMinutes":   "minutes",
	"mttrSeconds":     "seconds",
	"mtbfSeconds":     "seconds",
}

// SLOItem is an SLO with its current burn (GET /v1/slos).
type SLOItem struct {
	Name        string `json:"name"`
	DisplayName string `json:"displayName,omitempty"`
	Service     string `json:"service"`
	// Objective is the target share of good events; ErrorBudget 1 − it.
	Objective   float64 `json:"objective"`
	ErrorBudget float64 `json:"errorBudget"`
	PeriodDays  int     `json:"periodDays"`
	// Runbooks are the runbooks whose spec.slo names it.
	Runbooks []string `json:"runbooks"`
	Source   string   `json:"source,omitempty"`
	// Burn is nil when it could not be read; BurnError says why.
	Burn      *SLOBurn `json:"burn,omitempty"`
	BurnError string   `json:"burnError,omitempty"`
}

// SLOBurn is slos.Burn in JSON: its budget left is null, not NaN, when
// unknown.
type SLOBurn struct {
	At              time.Time          `json:"at"`
	Speed           string             `json:"speed"` // fast, slow, none or unknown
	ErrorRatio      map[string]float64 `json:"errorRatio"`
	BurnRate        map[string]float64 `json:"burnRate"`
	BudgetRemaining *float64           `json:"budgetRemaining"`
	Summary         string             `json:"summary"`
}

func burnOf(b slos.Burn) *SLOBurn {
	out := &SLOBurn{At: b.At.UTC(), Speed: b.Speed(), ErrorRatio: b.ErrorRatio, BurnRate: b.BurnRate, Summary: b.Summary()}
	if !math.IsNaN(b.BudgetRemaining) {
		r := b.BudgetRemaining
		out.BudgetRemaining = &r
	}
	return out
}

// loadedSLOs is the SLO set now (empty without one).
func (s *Server) loadedSLOs() map[string]*slos.SLO {
	if s.SLOs == nil {
		return nil
	}
	return s.SLOs()
}

// sloRunbooks maps each SLO name to the runbooks naming it, sorted.
func (s *Server) sloRunbooks() map[string][]string {
	out := map[string][]string{}
	if set := s.Runbooks.Current(); set != nil {
		for _, rb := range set.All() {
			if p := rb.Spec.SLO; p != nil {
				out[p.Name] = append(out[p.Name], rb.Name())
			}
		}
	}
	for _, l := range out {
		sort.Strings(l)
	}
	return out
}

// sloItem describes slo and reads its burn. A failed read is said in
// BurnError: it never fails a list.
func (s *Server) sloItem(ctx context.Context, slo *slos.SLO, runbooks []string) SLOItem {
	it := SLOItem{Name: slo.Name(), DisplayName: slo.Metadata.DisplayName, Service: slo.Spec.Service,
		Objective: slo.Target(), ErrorBudget: slo.ErrorBudget(), PeriodDays: int(slo.Period() / (24 * time.Hour)),
		Runbooks: runbooks, Source: slo.Source}
	if it.Runbooks == nil {
		it.Runbooks = []string{}
	}
	if s.Budgets == nil {
		it.BurnError = NoPrometheus
		return it
	}
	b, err := s.Budgets.Burn(ctx, slo.Name())
	if err != nil {
		it.BurnError = err.Error()
		return it
	}
	it.Burn = burnOf(b)
	return it
}

// SLOList is every loaded SLO, by name, with its burn (the dashboard's
// SLOs page and GET /v1/slos).
func (s *Server) SLOList(ctx context.Context) []SLOItem {
	set := s.loadedSLOs()
	byRunbook := s.sloRunbooks()
	names := slices.Sorted(maps.Keys(set))
	out := make([]SLOItem, len(names))
	// In parallel: each read is bounded (slobudget's timeout), and a list
	// of many SLOs should not take the sum of them.
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() { out[i] = s.sloItem(ctx, set[name], byRunbook[name]) })
	}
	wg.Wait()
	return out
}

// listSLOs serves GET /v1/slos.
func (s *Server) listSLOs(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"slos": s.SLOList(r.Context()), "units": SLOUnits})
}

// getSLO serves GET /v1/slos/{name}?since=7d (default: the SLO's period).
func (s *Server) getSLO(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	now := time.Now()
	from, err := SLOSince(r.URL.Query().Get("since"), now)
	if err != nil {
		httpjson.WriteError(w, http.StatusBadRequest, err.Error(), nil)
		return
	}
	rep, err := s.SLOReport(r.Context(), name, from, now)
	switch {
	case errors.Is(err, slobudget.ErrUnknownSLO):
		httpjson.WriteError(w, http.StatusNotFound, err.Error(), nil)
		return
	case err != nil:
		s.Log.Error("SLO report", "slo", name, "error", err)
		httpjson.WriteError(w, http.StatusServiceUnavailable, err.Error(), nil)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

// SLOSince reads the start of an SLO report's window: "" is the zero time
// (the SLO's period), else domain.ParseSince, at most maxSLOWindow back.
func SLOSince(v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := domain.ParseSince(v, now)
	if err != nil {
		return time.Time{}, err
	}
	if !t.Before(now) || now.Sub(t) > maxSLOWindow {
		return time.Time{}, fmt.Errorf("since %q: the window must start in the past and span at most %d days", v, maxSLOWindow/(24*time.Hour))
	}
	return t, nil
}

// unknownSLO says which SLOs there are.
func unknownSLO(name string, set map[string]*slos.SLO) error {
	names := slices.Sorted(maps.Keys(set))
	loaded := strings.Join(names, ", ")
	if loaded == "" {
		loaded = "none: add kind: SLO files next to the runbooks"
	}
	return fmt.Errorf("%w %q (loaded: %s)", slobudget.ErrUnknownSLO, name, loaded)
}

// planSLO fills a plan's SLO section: the burn now, and what a run an
// alert started now would do under the runbook's policy.
func (s *Server) planSLO(ctx context.Context, rb *runbooks.Runbook, p *runbooks.PlannedSLO) {
	speed := "unknown"
	switch {
	case s.Budgets == nil:
		p.Now = "burn unknown: no Prometheus configured (--prometheus-url)"
	default:
		b, err := s.Budgets.Burn(ctx, p.Name)
		if err != nil {
			p.Now = "burn unknown: " + err.Error()
		} else {
			speed, p.Now = b.Speed(), b.Summary()
		}
	}
	p.AlertRun = rb.Spec.SLO.Action(speed)
}
