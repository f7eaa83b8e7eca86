package dashboard

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"

	"github.com/salve-sre/salve/internal/api"
	"github.com/salve-sre/salve/internal/slobudget"
)

// burnWindows are the burn-rate windows the SLO pages show, short to
// long (the period's own column is the budget left).
var burnWindows = []string{"5m", "30m", "1h", "2h", "6h", "1d", "3d"}

type sloListPage struct {
	Windows []string
	SLOs    []sloRow
}

// sloRow is an SLO with its burn rates in the order of Windows ("—"
// where Prometheus had no data).
type sloRow struct {
	api.SLOItem
	Rates []string
}

func rowOf(it api.SLOItem) sloRow {
	row := sloRow{SLOItem: it}
	for _, w := range burnWindows {
		r := "—"
		if it.Burn != nil {
			if v, ok := it.Burn.BurnRate[w]; ok {
				r = num(v)
			}
		}
		row.Rates = append(row.Rates, r)
	}
	return row
}

// sloList serves GET /ui/slos.
func (d *dashboard) sloList(w http.ResponseWriter, r *http.Request, v *view) {
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	pg := sloListPage{Windows: burnWindows}
	for _, it := range d.o.API.SLOList(ctx) {
		pg.SLOs = append(pg.SLOs, rowOf(it))
	}
	v.Title, v.Nav, v.Page = "SLOs", "slos", &pg
	d.render(w, http.StatusOK, "slos", v)
}

type sloPage struct {
	Since   string
	Windows []string
	Row     sloRow
	Report  api.SLODetail
	// Formulas are written out with the SLO's own figures.
	Budget, Period string
	Error          string
}

// sloDetail serves GET /ui/slos/{name}?since=7d.
func (d *dashboard) sloDetail(w http.ResponseWriter, r *http.Request, v *view) {
	name := r.PathValue("name")
	pg := sloPage{Since: r.URL.Query().Get("since"), Windows: burnWindows}
	v.Title, v.Nav, v.Page = "SLO "+name, "slos", &pg
	now := d.now()
	from, err := api.SLOSince(pg.Since, now)
	if err != nil {
		d.fail(w, v, http.StatusBadRequest, "Bad window", err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	rep, err := d.o.API.SLOReport(ctx, name, from, now)
	switch {
	case errors.Is(err, slobudget.ErrUnknownSLO):
		d.fail(w, v, http.StatusNotFound, "No such SLO", err.Error())
		return
	case err != nil:
		d.log.Error("dashboard SLO report", "slo", name, "error", err)
		d.fail(w, v, http.StatusServiceUnavailable, "Cannot compute the SLO's figures", err.Error())
		return
	}
	pg.Report, pg.Row = rep, rowOf(rep.SLOItem)
	pg.Budget = trimNum(rep.ErrorBudget, 6)
	pg.Period = fmt.Sprintf("%d d = %d min", rep.PeriodDays, rep.PeriodDays*24*60)
	d.render(w, http.StatusOK, "slo", v)
}

// share writes a share of the budget as a percentage with the raw figure
// next to it, so a hand computation can be checked against the page.
func share(f float64) string {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return "—"
	}
	return fmt.Sprintf("%s %% (%s)", trimNum(f*100, 3), trimNum(f, 6))
}

// shareOf is share for a figure that may be missing.
func shareOf(f *float64) string {
	if f == nil {
		return "—"
	}
	return share(*f)
}

// num writes a burn rate or ratio with enough digits to redo the sums.
func num(f float64) string { return trimNum(f, 4) }

func numOf(f *float64) string {
	if f == nil {
		return "—"
	}
	return trimNum(*f, 6)
}

// percentTarget writes an objective: 0.999 → 99.9 %.
func percentTarget(f float64) string { return trimNum(f*100, 4) + " %" }

func sloURL(name string) string { return "/ui/slos/" + url.PathEscape(name) }
