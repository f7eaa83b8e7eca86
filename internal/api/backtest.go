package api

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/salve-sre/salve/internal/audit"
	"github.com/salve-sre/salve/internal/backtest"
	"github.com/salve-sre/salve/internal/safety"
	"github.com/salve-sre/salve/internal/trust"
	"github.com/salve-sre/salve/runbooks"
)

// ErrBacktestBusy: one backtest at a time per server; a replay of a busy
// week takes seconds of CPU that the trigger and the API need too.
var ErrBacktestBusy = errors.New("another backtest is running on this server; try again in a few seconds")

// MaxBacktestWindow bounds a server-side backtest.
const MaxBacktestWindow = 31 * 24 * time.Hour

// ClampBacktestWindow is the start of a backtest window ending at to,
// at most MaxBacktestWindow long.
func ClampBacktestWindow(from, to time.Time) time.Time {
	if to.Sub(from) > MaxBacktestWindow {
		return to.Add(-MaxBacktestWindow)
	}
	return from
}

// Backtest replays the alerts Salve stored that started in [from, to)
// through runbooks (nil: the loaded ones), with the trigger and the guard
// of this server's safety configuration on a simulated clock: what they
// would have done. Nothing is started and nothing acts.
func (s *Server) Backtest(ctx context.Context, set *runbooks.Set, from, to time.Time) (*backtest.Result, error) {
	if s.Audit == nil {
		return nil, errors.New("this server has no audit store to read alert history from")
	}
	from = ClampBacktestWindow(from, to)
	if set == nil {
		set = s.Runbooks.Current()
	}
	if !s.backtesting.TryLock() {
		return nil, ErrBacktestBusy
	}
	defer s.backtesting.Unlock()
	occs, err := backtest.SalveOccurrences(ctx, auditAlerts{s.Audit}, from, to, nil)
	if err != nil {
		return nil, err
	}
	states := backtest.States(occs, backtest.DefaultRepeatInterval, from, to)
	opts := backtest.Options{Runbooks: set, Safety: s.SafetyConfig}
	if am := s.SafetyConfig.Alertmanager; am.URL != "" {
		// The silences people set (expired ones included), checked at
		// each alert's simulated time, as the trigger checks live ones.
		src := safety.Alertmanager{URL: am.URL, BearerTokenFile: am.BearerTokenFile}
		if opts.Silences, err = src.List(ctx); err != nil {
			return nil, fmt.Errorf("read silences from Alertmanager: %w", err)
		}
	}
	return backtest.Run(ctx, states, opts)
}

// auditAlerts reads alert history straight from the audit store.
type auditAlerts struct{ a AuditReader }

func (l auditAlerts) Alerts(ctx context.Context, since time.Time, limit int) ([]audit.AlertState, error) {
	return l.a.Alerts(ctx, audit.AlertFilter{Since: since, Limit: limit})
}

// backtestOne backtests one runbook for its evidence.
func (s *Server) backtestOne(ctx context.Context, rb *runbooks.Runbook, from, to time.Time) (*trust.BacktestSummary, error) {
	from = ClampBacktestWindow(from, to)
	set, err := runbooks.NewSet(rb)
	if err != nil {
		return nil, err
	}
	res, err := s.Backtest(ctx, set, from, to)
	if err != nil {
		return nil, err
	}
	sum := &trust.BacktestSummary{From: from, To: to, AlertStates: res.AlertStates}
	for _, rr := range res.Runbooks {
		sum.Started, sum.Joined, sum.Suppressed, sum.By, sum.Peak = rr.Started, rr.Joined, rr.Suppressed, rr.SuppressedBy, rr.PeakConcurrent
	}
	return sum, nil
}
