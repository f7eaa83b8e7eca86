package backtest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/alertmanager/pkg/labels"
	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// DefaultStep is the default query resolution over ALERTS: half of
// Prometheus's default rule evaluation interval (1m), so every evaluation
// is seen at least once even when evaluations and query steps drift
// apart (a step equal to the interval can skip one evaluation, and a one-
// evaluation gap in an alert would go unseen).
const DefaultStep = 30 * time.Second

// maxPointsPerQuery keeps each query_range under Prometheus's limit of
// 11,000 points per series, with a margin.
const maxPointsPerQuery = 10000

// Prometheus reads alert occurrences from Prometheus's ALERTS series: the
// alerts its rules fired, before Alertmanager (so a team can backtest
// before it deploys Salve).
type Prometheus struct {
	API v1.API
	// Selector is the validated selector, from ParseSelector ("" = all).
	Selector Selector
	// Step is the query resolution; 0 = DefaultStep.
	Step time.Duration
	// Progress, when set, is told after each query: queries done, queries
	// in all, occurrences found so far.
	Progress func(done, total, occurrences int)
}

// NewPrometheus connects to the Prometheus at url.
func NewPrometheus(url string, sel Selector, step time.Duration) (*Prometheus, error) {
	c, err := api.NewClient(api.Config{Address: url})
	if err != nil {
		return nil, fmt.Errorf("prometheus %q: %w", url, err)
	}
	return &Prometheus{API: v1.NewAPI(c), Selector: sel, Step: step}, nil
}

// Selector is extra label matchers for ALERTS, parsed and re-rendered so
// no user text reaches the query unchecked.
type Selector struct{ matchers labels.Matchers }

// ParseSelector reads label matchers as Alertmanager and Prometheus write
// them: severity="critical",team=~"db|web" (braces optional). alertstate
// and __name__ are set by the backtest and may not be given.
func ParseSelector(s string) (Selector, error) {
	if strings.TrimSpace(s) == "" {
		return Selector{}, nil
	}
	ms, err := labels.ParseMatchers(s)
	if err != nil {
		return Selector{}, fmt.Errorf("--match %q: %w (write label matchers such as severity=\"critical\",team=~\"db|web\")", s, err)
	}
	for _, m := range ms {
		switch {
		case !model.LabelName(m.Name).IsValidLegacy():
			return Selector{}, fmt.Errorf("--match %q: %q is not a Prometheus label name", s, m.Name)
		case m.Name == model.MetricNameLabel || m.Name == "alertstate":
			return Selector{}, fmt.Errorf("--match %q: %s is set by the backtest (ALERTS{alertstate=\"firing\"})", s, m.Name)
		}
	}
	return Selector{matchers: ms}, nil
}

// Query is the PromQL query the selector makes.
func (s Selector) Query() string {
	parts := []string{`alertstate="firing"`}
	for _, m := range s.matchers {
		// Names are checked; values are quoted as Go (and PromQL) strings.
		parts = append(parts, m.Name+m.Type.String()+strconv.Quote(m.Value))
	}
	return "ALERTS{" + strings.Join(parts, ",") + "}"
}

// Occurrences queries ALERTS from start to end in chunks and turns each
// series into firing intervals.
func (p *Prometheus) Occurrences(ctx context.Context, start, end time.Time) ([]Occurrence, error) {
	step := p.Step
	if step <= 0 {
		step = DefaultStep
	}
	if !end.After(start) {
		return nil, errors.New("the time range is empty: end must be after start")
	}
	// Steps on whole multiples of the step since the epoch, as rule
	// evaluations of a regular interval are: start times come out round.
	start = start.Truncate(step)
	chunk := step * maxPointsPerQuery
	total := int((end.Sub(start) + chunk - 1) / chunk)
	b := NewIntervals(step)
	q := p.Selector.Query()
	for i, from := 0, start; from.Before(end); i, from = i+1, from.Add(chunk) {
		to := from.Add(chunk - step)
		if to.After(end) {
			to = end
		}
		v, _, _, err := p.API.QueryRange(ctx, q, v1.Range{Start: from, End: to, Step: step})
		if err != nil {
			return nil, fmt.Errorf("query %s from %s to %s: %w", q, from.Format(time.RFC3339), to.Format(time.RFC3339), err)
		}
		m, ok := v.(model.Matrix)
		if !ok {
			return nil, fmt.Errorf("query %s: Prometheus answered a %s, not a matrix", q, v.Type())
		}
		b.Add(m)
		if p.Progress != nil {
			p.Progress(i+1, total, b.Len())
		}
	}
	return b.Finish(end), nil
}

// Intervals turns range-query answers (in time order, possibly in
// several chunks on one grid of steps) into occurrences: a series' run of
// samples one step apart is one occurrence; a gap longer than the step
// ends it, resolved one step after its last sample.
type Intervals struct {
	step model.Time // in ms, as samples are
	open map[model.Fingerprint]*openOcc
	done []Occurrence
}

type openOcc struct {
	labels      map[string]string
	fp          string
	first, last model.Time
}

// NewIntervals returns an empty Intervals for answers at step.
func NewIntervals(step time.Duration) *Intervals {
	return &Intervals{step: model.Time(step.Milliseconds()), open: map[model.Fingerprint]*openOcc{}}
}

// Len is the number of occurrences found so far.
func (b *Intervals) Len() int { return len(b.done) + len(b.open) }

// Add takes one answer. Samples must come in time order per series.
func (b *Intervals) Add(m model.Matrix) {
	for _, s := range m {
		ls := make(model.LabelSet, len(s.Metric))
		for k, v := range s.Metric {
			if k != model.MetricNameLabel && k != "alertstate" {
				ls[k] = v
			}
		}
		fp := ls.Fingerprint()
		for _, sp := range s.Values {
			o := b.open[fp]
			if o != nil && sp.Timestamp <= o.last {
				continue // out of order or repeated: nothing new
			}
			if o != nil && sp.Timestamp-o.last <= b.step {
				o.last = sp.Timestamp
				continue
			}
			if o != nil {
				b.close(o)
			}
			lm := make(map[string]string, len(ls))
			for k, v := range ls {
				lm[string(k)] = string(v)
			}
			b.open[fp] = &openOcc{labels: lm, fp: fp.String(), first: sp.Timestamp, last: sp.Timestamp}
		}
	}
}

func (b *Intervals) close(o *openOcc) {
	b.done = append(b.done, Occurrence{Labels: o.labels, Fingerprint: o.fp, Start: o.first.Time().UTC(), End: (o.last + b.step).Time().UTC()})
}

// Finish closes the occurrences whose last sample is more than a step
// before end (they resolved); the others still fire at end.
func (b *Intervals) Finish(end time.Time) []Occurrence {
	e := model.TimeFromUnixNano(end.UnixNano())
	for fp, o := range b.open {
		if e-o.last > b.step {
			b.close(o)
		} else {
			b.done = append(b.done, Occurrence{Labels: o.labels, Fingerprint: o.fp, Start: o.first.Time().UTC()})
		}
		delete(b.open, fp)
	}
	// A replay must not depend on map order: states at one instant are
	// replayed in this order.
	slices.SortFunc(b.done, func(x, y Occurrence) int {
		return cmp.Or(x.Start.Compare(y.Start), strings.Compare(x.Fingerprint, y.Fingerprint))
	})
	return b.done
}
