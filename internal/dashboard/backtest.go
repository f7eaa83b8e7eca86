package dashboard

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/salve-sre/salve/internal/api"
	"github.com/salve-sre/salve/internal/backtest"
	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/runbooks"
)

// backtestTimeout bounds a backtest page: a month of a busy Alertmanager
// replays in well under this.
const backtestTimeout = 2 * time.Minute

type backtestPage struct {
	Since    string
	Runbook  string
	Runbooks []string
	Result   *backtest.Result
	Rows     []backtestRow
	Chart    *chart
	Error    string
}

type backtestRow struct {
	backtest.RunbookResult
	Suppressions string
}

// bucket is one interval of the backtest's timeline.
type bucket struct {
	At                          time.Time
	Started, Joined, Suppressed int
}

// backtestView serves GET /ui/backtest: the loaded runbooks (or one)
// replayed over the alerts Salve stored, with a timeline.
func (d *dashboard) backtestView(w http.ResponseWriter, r *http.Request, v *view) {
	q := r.URL.Query()
	pg := backtestPage{Since: q.Get("since"), Runbook: q.Get("runbook"), Runbooks: d.runbookNames()}
	if pg.Since == "" {
		pg.Since = "7d"
	}
	v.Title, v.Nav, v.Page = "Backtest", "runbooks", &pg
	now := d.now()
	from, err := domain.ParseSince(pg.Since, now)
	if err != nil {
		pg.Error = err.Error()
		d.render(w, http.StatusBadRequest, "backtest", v)
		return
	}
	// The page shows the window the backtest replays, never more: a
	// year-2000 "since" must not draw a million empty days.
	from = api.ClampBacktestWindow(from, now)
	var set *runbooks.Set
	if pg.Runbook != "" {
		rb, ok := d.runbook(pg.Runbook)
		if !ok {
			pg.Error = "No runbook " + strconv.Quote(pg.Runbook) + " is loaded."
			d.render(w, http.StatusNotFound, "backtest", v)
			return
		}
		if set, err = runbooks.NewSet(rb); err != nil {
			pg.Error = err.Error()
			d.render(w, http.StatusInternalServerError, "backtest", v)
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), backtestTimeout)
	defer cancel()
	res, err := d.o.API.Backtest(ctx, set, from, now)
	if err != nil {
		pg.Error = "The backtest did not run: " + err.Error()
		code := http.StatusServiceUnavailable
		if errors.Is(err, api.ErrBacktestBusy) {
			code = http.StatusTooManyRequests
		}
		d.render(w, code, "backtest", v)
		return
	}
	pg.Result = res
	for _, rr := range res.Runbooks {
		pg.Rows = append(pg.Rows, backtestRow{RunbookResult: rr, Suppressions: backtest.ByCheck(rr.SuppressedBy, false)})
	}
	pg.Chart = decisionChart(res.Decisions, from, now)
	d.render(w, http.StatusOK, "backtest", v)
}

// decisionChart counts the decisions per hour (windows up to three days) or
// per day.
func decisionChart(decisions []backtest.Decision, from, to time.Time) *chart {
	size := 24 * time.Hour
	if to.Sub(from) <= 72*time.Hour {
		size = time.Hour
	}
	start := from.UTC().Truncate(size)
	var buckets []bucket
	for at := start; at.Before(to); at = at.Add(size) {
		buckets = append(buckets, bucket{At: at})
	}
	for _, dcn := range decisions {
		i := int(dcn.Time.Sub(start) / size)
		if i < 0 || i >= len(buckets) {
			continue
		}
		switch dcn.Outcome {
		case backtest.OutcomeStarted:
			buckets[i].Started++
		case backtest.OutcomeJoined:
			buckets[i].Joined++
		case backtest.OutcomeSuppressed:
			buckets[i].Suppressed++
		}
	}
	per := "day"
	if size == time.Hour {
		per = "hour"
	}
	at := func(b bucket) time.Time { return b.At }
	return lineChart("Would have started, joined and been suppressed, per "+per, buckets, at, []series[bucket]{
		{Name: "started", Class: "s-runs", Value: func(b bucket) float64 { return float64(b.Started) }},
		{Name: "suppressed", Class: "s-failed", Value: func(b bucket) float64 { return float64(b.Suppressed) }},
		{Name: "joined", Class: "s-alerts", Value: func(b bucket) float64 { return float64(b.Joined) }},
	})
}
