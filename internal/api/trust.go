package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/salve-sre/salve/internal/audit"
	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/internal/httpjson"
	"github.com/salve-sre/salve/internal/trust"
	"github.com/salve-sre/salve/runbooks"
)

// evidenceWindow is how far back a runbook's evidence is read.
const evidenceWindow = 90 * 24 * time.Hour

// evidence reads a runbook's evidence from the audit log.
func (s *Server) evidence(ctx context.Context, rb *runbooks.Runbook) (trust.Summary, error) {
	if s.Audit == nil {
		return trust.Summary{}, errors.New("this server has no audit store to read evidence from")
	}
	var all []domain.AuditEvent
	since := time.Now().Add(-evidenceWindow)
	// People's launches matter only from the oldest shadow run's watch on;
	// read them last, from there.
	launchesSince := time.Time{}
	for _, action := range []string{domain.ActionShadowEvidence, domain.ActionApprovalGranted, domain.ActionApprovalRejected, domain.ActionRunLaunched} {
		f := audit.Filter{Runbook: rb.Name(), Action: action, Since: since}
		if action == domain.ActionRunLaunched {
			if launchesSince.IsZero() {
				break // no shadow run to compare with
			}
			// A launch of any runbook on the shadow run's target.
			f.Runbook, f.Since = "", launchesSince
		}
		err := s.queryAll(ctx, f, func(ev domain.AuditEvent) {
			all = append(all, ev)
			if ev.Action == domain.ActionShadowEvidence && (launchesSince.IsZero() || ev.Time.Before(launchesSince)) {
				launchesSince = ev.Time.Add(-runbooks.MaxShadowWindow)
			}
		})
		if err != nil {
			return trust.Summary{}, err
		}
	}
	return trust.Summarize(rb, all), nil
}

// maxEvidenceRecords bounds what one evidence summary reads per action.
const maxEvidenceRecords = 1_000_000

// queryAll reads every record f selects, page by page (the store answers
// at most 10,000 at a time, oldest first): evidence must not be the
// oldest page of it.
func (s *Server) queryAll(ctx context.Context, f audit.Filter, each func(domain.AuditEvent)) error {
	const page = 10000
	f.Limit = page
	for read := 0; ; {
		recs, err := s.Audit.Query(ctx, f)
		if err != nil {
			return err
		}
		for _, r := range recs {
			each(r.Event)
		}
		if read += len(recs); len(recs) < page {
			return nil
		}
		if read >= maxEvidenceRecords {
			return fmt.Errorf("more than %d %s records in the evidence window: too many to weigh at once", maxEvidenceRecords, f.Action)
		}
		f.AfterSeq = recs[len(recs)-1].Seq
	}
}

func nextRung(rung string) string {
	switch rung {
	case trust.RungDryRun, trust.RungShadow:
		return trust.RungApprove
	case trust.RungApprove:
		return trust.RungEnforce
	}
	return ""
}

// Evidence is a runbook's evidence, the next rung and whether the trust
// policy allows promoting it there (the API and the dashboard show it).
func (s *Server) Evidence(ctx context.Context, rb *runbooks.Runbook) (trust.EvidenceAnswer, error) {
	sum, err := s.evidence(ctx, rb)
	if err != nil {
		return trust.EvidenceAnswer{}, err
	}
	ans := trust.EvidenceAnswer{Summary: sum, Policy: s.Trust.Effective(), Next: nextRung(sum.Rung)}
	if ans.Next != "" {
		if err := s.Trust.Check(sum.Rung, ans.Next, sum); err != nil {
			ans.Missing = err.Error()
		} else {
			ans.Allowed = true
		}
	}
	return ans, nil
}

// getEvidence serves GET /v1/runbooks/{name}/evidence.
func (s *Server) getEvidence(w http.ResponseWriter, r *http.Request) {
	rb, ok := s.runbook(w, r.PathValue("name"))
	if !ok {
		return
	}
	var from time.Time
	if v := r.URL.Query().Get("backtest"); v != "" {
		t, err := domain.ParseSince(v, time.Now())
		if err != nil {
			httpjson.WriteError(w, http.StatusBadRequest, "backtest: "+err.Error(), nil)
			return
		}
		from = t
	}
	ans, err := s.Evidence(r.Context(), rb)
	if err != nil {
		httpjson.WriteError(w, http.StatusServiceUnavailable, "cannot read the runbook's evidence: "+err.Error(), nil)
		return
	}
	if !from.IsZero() {
		if ans.Backtest, err = s.backtestOne(r.Context(), rb, from, time.Now()); err != nil {
			code := http.StatusServiceUnavailable
			if errors.Is(err, ErrBacktestBusy) {
				code = http.StatusTooManyRequests
			}
			httpjson.WriteError(w, code, "cannot backtest the runbook: "+err.Error(), nil)
			return
		}
	}
	writeJSON(w, http.StatusOK, ans)
}

// promote serves POST /v1/runbooks/{name}/promote: an admin's decision
// to move a runbook up the trust ladder, taken only on enough evidence or
// with an override and a reason. Either way it is audited before the
// answer; the file change it answers with is for people to make.
func (s *Server) promote(w http.ResponseWriter, r *http.Request) {
	rb, ok := s.runbook(w, r.PathValue("name"))
	if !ok {
		return
	}
	var req trust.PromoteRequest
	if !decodeBody(w, r, &req) || !checkReason(w, req.Reason) {
		return
	}
	if req.To != trust.RungApprove && req.To != trust.RungEnforce {
		httpjson.WriteError(w, http.StatusBadRequest, fmt.Sprintf(`to: want "approve" or "enforce", got %q`, req.To), nil)
		return
	}
	if req.Override && strings.TrimSpace(req.Reason) == "" {
		httpjson.WriteError(w, http.StatusBadRequest, "an override needs a reason: it goes into the audit log", nil)
		return
	}
	sum, err := s.evidence(r.Context(), rb)
	if err != nil {
		httpjson.WriteError(w, http.StatusServiceUnavailable, "cannot read the runbook's evidence: "+err.Error(), nil)
		return
	}
	detail := map[string]string{"from": sum.Rung, "to": req.To, "evidenceRuns": strconv.Itoa(sum.EvidenceRuns),
		"compared": strconv.Itoa(sum.Compared), "shadowRuns": strconv.Itoa(sum.ShadowRuns)}
	if sum.Agreement != nil {
		detail["agreement"] = strconv.FormatFloat(*sum.Agreement, 'f', 3, 64)
	}
	if req.Reason != "" {
		detail["reason"] = req.Reason
	}
	p := principal(r)
	ev := domain.AuditEvent{Actor: actorOf(p), Runbook: rb.Name(), RunbookHash: rb.Hash, Detail: detail}
	checkErr := s.Trust.Check(sum.Rung, req.To, sum)
	switch {
	case checkErr != nil && !errors.Is(checkErr, trust.ErrBelowThreshold):
		httpjson.WriteError(w, http.StatusConflict, checkErr.Error(), nil)
		return
	case checkErr != nil && !req.Override:
		ev.Action, ev.Outcome, ev.Error = domain.ActionPromotionRefused, "below_threshold", checkErr.Error()
		if err := s.recordOrFail(r.Context(), ev); err != nil {
			httpjson.WriteError(w, http.StatusServiceUnavailable, "cannot audit the refusal: "+err.Error(), nil)
			return
		}
		httpjson.WriteError(w, http.StatusConflict, fmt.Sprintf("runbook %s stays on %s: %v (an admin may override with a reason)", rb.Name(), sum.Rung, checkErr), sum)
		return
	}
	ev.Action, ev.Outcome = domain.ActionRunbookPromoted, req.To
	if checkErr != nil {
		detail["override"], ev.Error = "true", checkErr.Error()
	}
	if err := s.recordOrFail(r.Context(), ev); err != nil {
		// Unaudited, a promotion did not happen.
		httpjson.WriteError(w, http.StatusServiceUnavailable, "cannot audit the promotion, so it is not made: "+err.Error(), nil)
		return
	}
	writeJSON(w, http.StatusOK, trust.PromoteAnswer{Runbook: rb.Name(), From: sum.Rung, To: req.To, Override: checkErr != nil,
		Summary: sum, Source: rb.Source, Change: changeText(req.To)})
}

// changeText says what to change in the file for a rung.
func changeText(to string) string {
	if to == trust.RungApprove {
		return "spec.safety.mode: enforce, spec.safety.approval.required: true (remove spec.safety.shadowWindow); then reload the runbooks. `salve runbook promote --file` writes it."
	}
	return "spec.safety.mode: enforce, and remove spec.safety.approval and spec.safety.shadowWindow; then reload the runbooks. `salve runbook promote --file` writes it."
}

// recordOrFail records an audit event and returns the error, for actions
// that must not happen unaudited.
func (s *Server) recordOrFail(ctx context.Context, ev domain.AuditEvent) error {
	if s.Recorder == nil {
		return errors.New("this server has no audit recorder")
	}
	ev.ID = "api/" + ev.Action + "/" + randomHex(12)
	ev.Time = time.Now().UTC()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	return s.Recorder.Record(ctx, ev)
}
