package dashboard

import (
	"math"
	"strings"
	"time"

	"github.com/salve-sre/salve/internal/stats"
)

// Charts are drawn on the server as SVG, through the page template (so
// every label is escaped): no chart library and no script. Coordinates
// are computed here; templates/layout.html draws them.

const (
	chartW       = 640.0
	chartH       = 220.0
	chartLeft    = 44.0
	chartRight   = 12.0
	chartTop     = 24.0 // room for the legend
	chartBottom  = 28.0
	maxXLabels   = 8
	yTickCount   = 4
	pointsShownN = 31 // draw point markers up to this many days
)

type chart struct {
	Title  string
	W, H   float64
	PlotX  float64
	PlotY  float64
	PlotW  float64
	PlotH  float64
	Bottom float64 // PlotY + PlotH
	Right  float64 // PlotX + PlotW
	YTicks []tick
	XTicks []tick
	Bars   []bar
	Lines  []line
	Legend []legendItem
	// Total is a text summary for screen readers and for the page text.
	Total string

	top, step float64 // the y axis: 0 to top in steps
}

type tick struct {
	X, Y  float64
	Label string
}

type bar struct {
	X, Y, W, H float64
	Title      string
}

type line struct {
	Class  string
	Name   string
	Points string
	Dots   []dot
}

type dot struct {
	X, Y  float64
	Title string
}

type legendItem struct {
	Class, Name string
	X           float64
}

// series is one line of a chart over points of type P (a day of the
// toil report, an hour of a backtest).
type series[P any] struct {
	Name  string
	Class string
	Value func(P) float64
}

// dayOf places a report's day on the time axis.
func dayOf(p stats.DayPoint) time.Time { return p.Day }

func newChart(title string, maxV float64, integer bool) *chart {
	c := &chart{Title: title, W: chartW, H: chartH, PlotX: chartLeft, PlotY: chartTop,
		PlotW: chartW - chartLeft - chartRight, PlotH: chartH - chartTop - chartBottom}
	c.Bottom, c.Right = c.PlotY+c.PlotH, c.PlotX+c.PlotW
	c.top, c.step = niceAxis(maxV, integer)
	for v := 0.0; v <= c.top+c.step/1000; v += c.step {
		c.YTicks = append(c.YTicks, tick{X: c.PlotX - 6, Y: round1(c.yOf(v)), Label: trimNum(v, 2)})
	}
	return c
}

func (c *chart) slot(n int) float64 {
	if n == 0 {
		return c.PlotW
	}
	return c.PlotW / float64(n)
}

func (c *chart) yOf(v float64) float64 {
	if c.top <= 0 {
		return c.Bottom
	}
	return c.Bottom - v/c.top*c.PlotH
}

// xTicks labels the time axis: month-day, with the hour when points are
// less than a day apart.
func xTicks[P any](c *chart, pts []P, at func(P) time.Time) {
	n := len(pts)
	layout := "01-02"
	if n > 1 && at(pts[1]).Sub(at(pts[0])) < 24*time.Hour {
		layout = "01-02 15h"
	}
	step := max(1, int(math.Ceil(float64(n)/maxXLabels)))
	for i := 0; i < n; i += step {
		c.XTicks = append(c.XTicks, tick{X: round1(c.PlotX + c.slot(n)*(float64(i)+0.5)), Y: c.Bottom + 16, Label: at(pts[i]).UTC().Format(layout)})
	}
}

// pointLabel names a point in a tooltip: its date, and its hour when
// points are hourly.
func pointLabel(t time.Time, hourly bool) string {
	if hourly {
		return t.UTC().Format("2006-01-02 15:04")
	}
	return t.UTC().Format(time.DateOnly)
}

func hourly[P any](pts []P, at func(P) time.Time) bool {
	return len(pts) > 1 && at(pts[1]).Sub(at(pts[0])) < 24*time.Hour
}

// barChart draws one value per point as bars.
func barChart[P any](title string, days []P, at func(P) time.Time, value func(P) float64) *chart {
	maxV, total := 0.0, 0.0
	for _, p := range days {
		maxV = max(maxV, value(p))
		total += value(p)
	}
	c := newChart(title, maxV, false)
	slot := c.slot(len(days))
	for i, p := range days {
		v := value(p)
		y := c.yOf(v)
		c.Bars = append(c.Bars, bar{X: round1(c.PlotX + slot*float64(i) + slot*0.15), Y: round1(y), W: round1(max(slot*0.7, 1)),
			H: round1(c.Bottom - y), Title: pointLabel(at(p), hourly(days, at)) + ": " + trimNum(v, 2)})
	}
	xTicks(c, days, at)
	c.Total = "total " + trimNum(total, 2)
	return c
}

// lineChart draws several values per point as lines.
func lineChart[P any](title string, days []P, at func(P) time.Time, ss []series[P]) *chart {
	maxV := 0.0
	for _, s := range ss {
		for _, p := range days {
			maxV = max(maxV, s.Value(p))
		}
	}
	c := newChart(title, maxV, true)
	slot := c.slot(len(days))
	for i, s := range ss {
		ln := line{Class: s.Class, Name: s.Name}
		total := 0.0
		var points strings.Builder
		for j, p := range days {
			v := s.Value(p)
			total += v
			x, y := round1(c.PlotX+slot*(float64(j)+0.5)), round1(c.yOf(v))
			if j > 0 {
				points.WriteByte(' ')
			}
			points.WriteString(trimNum(x, 1) + "," + trimNum(y, 1))
			if len(days) <= pointsShownN {
				ln.Dots = append(ln.Dots, dot{X: x, Y: y, Title: pointLabel(at(p), hourly(days, at)) + ": " + trimNum(v, 2) + " " + s.Name})
			}
		}
		ln.Points = points.String()
		c.Lines = append(c.Lines, ln)
		c.Legend = append(c.Legend, legendItem{Class: s.Class, Name: s.Name, X: c.Right - float64(len(ss)-i)*70})
		if c.Total != "" {
			c.Total += ", "
		}
		c.Total += trimNum(total, 0) + " " + s.Name
	}
	xTicks(c, days, at)
	return c
}

// niceAxis picks the y axis for values up to maxV: about yTickCount
// steps of 1, 2, 2.5 or 5 times a power of ten (whole steps for counts),
// and the top as a whole number of steps.
func niceAxis(maxV float64, integer bool) (top, step float64) {
	if maxV <= 0 {
		maxV = 1
	}
	step = niceNum(maxV / yTickCount)
	if integer && step < 1 {
		step = 1
	}
	top = math.Ceil(maxV/step-1e-9) * step
	return top, step
}

// niceNum rounds v up to 1, 2, 2.5 or 5 times a power of ten.
func niceNum(v float64) float64 {
	exp := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 2.5, 5} {
		if v <= m*exp*(1+1e-9) {
			return m * exp
		}
	}
	return 10 * exp
}

// spanBar places a step on its run's time line (a small Gantt bar).
type spanBar struct {
	X, W  float64
	Class string
}

const spanBarW = 160.0

func newSpanBar(offset, dur, span time.Duration, state string) *spanBar {
	x := float64(offset) / float64(span) * spanBarW
	w := float64(dur) / float64(span) * spanBarW
	x = math.Min(math.Max(x, 0), spanBarW-2)
	w = math.Min(math.Max(w, 2), spanBarW-x)
	return &spanBar{X: round1(x), W: round1(w), Class: "gantt-" + state}
}
