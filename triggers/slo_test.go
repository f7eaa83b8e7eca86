package triggers_test

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/internal/safety"
	"github.com/salve-sre/salve/runbooks"
	"github.com/salve-sre/salve/slos"
	"github.com/salve-sre/salve/triggers"
)

type fakeBudgets struct {
	burn  slos.Burn
	err   error
	reads int
}

func (f *fakeBudgets) Burn(_ context.Context, name string) (slos.Burn, error) {
	f.reads++
	b := f.burn
	b.SLO = name
	return b, f.err
}

const sloRunbook = `apiVersion: salve/v1
kind: Runbook
metadata: {name: budgeted}
spec:
  trigger:
    matchers: ['alertname="SLOErrorBudgetBurn"']
    incidentKey: '{{ .Labels.salve_slo }}'
  slo: {name: checkout-availability}
  steps:
    - {name: call, action: http.request, with: {url: "http://127.0.0.1:1/x"}}
`

// A runbook that names an SLO acts on a fast burn, waits for a person on a
// slow one, only notifies otherwise, and asks a person when the burn
// cannot be read; the decision and its figures are in the audit record.
func TestTriggerDecidesBySLOBurn(t *testing.T) {
	set := testSet(t, sloRunbook)
	t0 := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name           string
		burn           slos.Burn
		err            error
		action         string
		dryRun, approv bool
	}{
		{"fast burn acts", slos.Burn{Fast: true, Slow: true, Known: true, BurnRate: map[string]float64{"1h": 50}, BudgetRemaining: 0.8}, nil, "act", false, false},
		{"slow burn waits for approval", slos.Burn{Slow: true, Known: true, BurnRate: map[string]float64{"1d": 4}, BudgetRemaining: 0.9}, nil, "approve", false, true},
		{"no burn only notifies", slos.Burn{Known: true, BurnRate: map[string]float64{"1h": 0.5}, BudgetRemaining: 0.99}, nil, "notify", true, false},
		{"unreadable burn asks a person", slos.Burn{}, errors.New("prometheus: connection refused"), "approve", false, true},
		{"no data asks a person", slos.Burn{BudgetRemaining: math.NaN()}, nil, "approve", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := &fakeStarter{running: map[string]bool{}}
			audit := &fakeAudit{}
			budgets := &fakeBudgets{burn: tc.burn, err: tc.err}
			m := &fakeMetrics{}
			tr := &triggers.Trigger{Runbooks: triggers.StaticRunbooks{Set: set}, Starter: st, Audit: audit, Log: slog.New(slog.DiscardHandler), Budgets: budgets, Metrics: m}
			require.NoError(t, tr.Handle(context.Background(), alert("firing", map[string]string{"alertname": "SLOErrorBudgetBurn", "salve_slo": "checkout-availability"}, t0)))
			require.Len(t, st.starts, 1)
			req := st.starts[0]
			require.Equal(t, tc.dryRun, req.DryRun, req.DryRunReason)
			require.Equal(t, tc.approv, req.ApprovalReason != "", req.ApprovalReason)
			reason := req.ApprovalReason + req.DryRunReason
			if tc.action != "act" {
				require.Contains(t, reason, "SLO checkout-availability")
			}
			recs := audit.events
			require.Len(t, recs, 1)
			d := recs[0].Detail
			require.Equal(t, domain.ActionTriggerMatched, recs[0].Action)
			require.Equal(t, "checkout-availability", d["slo"])
			require.Equal(t, tc.action, d["sloAction"])
			if tc.err != nil {
				require.Equal(t, "unknown", d["sloBurn"])
				require.Contains(t, d["sloError"], "connection refused")
			}
			if tc.burn.BudgetRemaining > 0 {
				require.NotEmpty(t, d["sloBudgetRemaining"])
			}
			require.True(t, strings.HasPrefix(d["sloDecision"], "SLO checkout-availability"), d["sloDecision"])
			require.Equal(t, []string{"checkout-availability/" + d["sloBurn"] + "/" + tc.action}, m.slo, "the decision is counted")
		})
	}

	// Without a reader the runbook's onUnknown applies: approve.
	st := &fakeStarter{running: map[string]bool{}}
	tr := &triggers.Trigger{Runbooks: triggers.StaticRunbooks{Set: set}, Starter: st, Audit: &fakeAudit{}, Log: slog.New(slog.DiscardHandler)}
	require.NoError(t, tr.Handle(context.Background(), alert("firing", map[string]string{"alertname": "SLOErrorBudgetBurn", "salve_slo": "x"}, t0)))
	require.Contains(t, st.starts[0].ApprovalReason, "set --prometheus-url")
}

// A dry run the safety envelope already chose stands, and the SLO's burn
// is not even read for it; an approval it asked for stands over an SLO
// "act".
func TestEnvelopeChoicesStandOverSLO(t *testing.T) {
	set := testSet(t, sloRunbook)
	t0 := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	labels := map[string]string{"alertname": "SLOErrorBudgetBurn", "salve_slo": "checkout-availability"}
	for _, tc := range []struct {
		name  string
		adm   safety.Admission
		reads int
	}{
		{"breaker's dry run", safety.Admission{Allowed: true, DryRun: true, Check: "circuit_breaker_open", Reason: "breaker open"}, 0},
		{"blast radius approval", safety.Admission{Allowed: true, RequireApproval: true, Check: "blast_radius", Reason: "too wide"}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := &fakeStarter{running: map[string]bool{}}
			budgets := &fakeBudgets{burn: slos.Burn{Fast: true, Known: true}}
			tr := &triggers.Trigger{Runbooks: triggers.StaticRunbooks{Set: set}, Starter: st, Audit: &fakeAudit{}, Log: slog.New(slog.DiscardHandler),
				Budgets: budgets, Guard: admitting{tc.adm}}
			require.NoError(t, tr.Handle(context.Background(), alert("firing", labels, t0)))
			require.Equal(t, tc.reads, budgets.reads)
			req := st.starts[0]
			require.Equal(t, tc.adm.DryRun, req.DryRun)
			require.Equal(t, tc.adm.RequireApproval, req.ApprovalReason == "too wide", req.ApprovalReason)
		})
	}
}

type admitting struct{ adm safety.Admission }

func (a admitting) Admit(context.Context, *runbooks.Runbook, *domain.AlertEvent, string, string) (safety.Admission, error) {
	return a.adm, nil
}

func (admitting) Release(context.Context, string, string) error { return nil }
