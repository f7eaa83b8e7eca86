// Package promql holds the Prometheus step kinds: prometheus.query reads a
// number a later step can use, and prometheus.assert checks that a
// remediation worked ("error rate below 1% for 2m within 5m"). Both speak
// the Prometheus HTTP API v1, so any Prometheus-compatible server (Thanos,
// Mimir, VictoriaMetrics) works; answers are decoded with Prometheus's own
// model types (prometheus/common/model). The request is built here rather
// than by client_golang's API client, which cannot bound an answer's size,
// falls back to GET (the query in URLs and access logs) on a 403, and does
// not return the status code that decides whether a retry can help.
package promql

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"

	"github.com/salve-sre/salve/activities/egress"
	"github.com/salve-sre/salve/activities/step"
)

// Step kinds' names in runbooks.
const (
	QueryKind  = "prometheus.query"
	AssertKind = "prometheus.assert"
)

const (
	// maxSeries bounds the series kept as step output: outputs go into
	// workflow history. "count" still says how many there were.
	maxSeries = 50
	// maxResponse bounds how much of an answer is read. A query that
	// returns more is a runbook mistake, not something to retry.
	maxResponse = 8 << 20
	// defaultInterval is prometheus.assert's poll interval: a few scrape
	// intervals, so each poll can see new data without hammering the server.
	defaultInterval = 5 * time.Second
	// heartbeatEvery bounds the gap between heartbeats while waiting, so a
	// long interval never looks like a dead worker.
	heartbeatEvery = 10 * time.Second
)

// Doer is the part of *http.Client the steps need.
type Doer interface {
	Do(*http.Request) (*http.Response, error)
}

// Options configure both step kinds.
type Options struct {
	// URL is the Prometheus base URL (--prometheus-url, SALVE_PROMETHEUS_URL),
	// e.g. http://prometheus:9090 or https://thanos.internal/prometheus. A
	// step's "prometheus" parameter overrides it. It may be empty.
	URL string
	// Client sends the requests. Nil uses a client without an overall
	// timeout: the step's timeout, carried by ctx, bounds each request.
	Client Doer
	// Heartbeat, if set, is called after every poll and while waiting
	// between polls of prometheus.assert. The activity adapter passes
	// activity.RecordHeartbeat; the package stays free of Temporal imports.
	Heartbeat func(ctx context.Context, details ...any)
	// Now reads the clock that for/within are measured on; nil is
	// time.Now. Waits between polls use real timers, so a test clock must
	// move forward on its own (e.g. on each request the fake server sees).
	Now func() time.Time
}

// Specs returns prometheus.query and prometheus.assert. Neither is
// mutating: they only read.
func Specs(opts Options) []step.Spec {
	if opts.Client == nil {
		// The prometheus parameter is a URL a runbook sets: the same
		// egress guard as http.request (activities/egress).
		opts.Client = &http.Client{Transport: egress.Transport()}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	c := client{opts: opts}
	urlParam := step.Param{Name: "prometheus", Type: step.TypeString, Doc: "Prometheus base URL, e.g. http://prometheus:9090; default the worker's --prometheus-url", Sink: step.SinkURL}
	return []step.Spec{
		{
			Kind:    QueryKind,
			Summary: "Run a PromQL instant query and return its result.",
			Params: step.ParamSchema{Params: []step.Param{
				{Name: "query", Type: step.TypeString, Required: true, Doc: "PromQL expression, evaluated now", Sink: step.SinkPromQL},
				urlParam,
			}},
			Executor: step.ExecutorFunc(c.query),
		},
		{
			Kind:    AssertKind,
			Summary: "Wait until a PromQL condition has held for a while, or fail.",
			Params: step.ParamSchema{Params: []step.Param{
				{Name: "query", Type: step.TypeString, Required: true, Doc: "PromQL condition: holds while the result is non-empty, as in alerting rules (e.g. rate(errors[1m]) / rate(requests[1m]) < 0.01)", Sink: step.SinkPromQL},
				{Name: "for", Type: step.TypeDuration, Doc: "how long the condition must hold without a break; default 0 (one non-empty result)"},
				{Name: "within", Type: step.TypeDuration, Required: true, Doc: "deadline for the condition to have held for `for`"},
				{Name: "interval", Type: step.TypeDuration, Doc: "time between polls; default 5s"},
				urlParam,
			}},
			Executor: step.ExecutorFunc(c.assert),
		},
	}
}

type client struct{ opts Options }

// base picks the Prometheus URL: the step's parameter, else the configured
// one. Errors name URLs only in redacted form: user info and query strings
// carry tokens, and errors reach history and the audit log.
func (c client) base(p map[string]any) (*url.URL, error) {
	raw, fromParam := c.opts.URL, false
	if v, ok := p["prometheus"]; ok {
		s, err := step.String(v)
		if err != nil {
			return nil, fmt.Errorf("%w: prometheus: %v", step.ErrInvalidParams, err)
		}
		if s != "" {
			raw, fromParam = s, true
		}
	}
	if raw == "" {
		return nil, fmt.Errorf("%w: no Prometheus URL: set --prometheus-url (SALVE_PROMETHEUS_URL) on the worker, or the step's prometheus parameter", step.ErrPermanent)
	}
	// A bad configured URL is the operator's to fix, not the runbook's.
	bad, what := step.ErrInvalidParams, "parameter prometheus"
	if !fromParam {
		bad, what = step.ErrPermanent, "--prometheus-url"
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %s is not a valid URL", bad, what)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("%w: %s %q must start with http:// or https://", bad, what, redact(u))
	}
	if u.Host == "" {
		return nil, fmt.Errorf("%w: %s %q has no host", bad, what, redact(u))
	}
	return u, nil
}

func queryParam(p map[string]any) (string, error) {
	q, err := step.String(p["query"])
	if err != nil || strings.TrimSpace(q) == "" {
		return "", fmt.Errorf("%w: query: required, a PromQL expression such as up{job=\"api\"}", step.ErrInvalidParams)
	}
	return q, nil
}

// sample is one series of a result. A native histogram sample has no float
// value (hasValue false).
type sample struct {
	labels   map[string]string
	value    float64
	hasValue bool
}

// result is a decoded instant-query answer.
type result struct {
	resultType string
	series     []sample // vector and matrix (the last value of each series)
	scalar     float64  // scalar
}

// single returns the float a result stands for: a scalar, or a vector with
// exactly one float sample.
func (r result) single() (float64, bool) {
	switch {
	case r.resultType == "scalar":
		return r.scalar, true
	case r.resultType == "vector" && len(r.series) == 1 && r.series[0].hasValue:
		return r.series[0].value, true
	}
	return 0, false
}

// describe says what a result was, for error text.
func (r result) describe() string {
	if v, ok := r.single(); ok {
		return strconv.FormatFloat(v, 'g', -1, 64)
	}
	switch {
	case r.resultType == "string":
		return "a string"
	case len(r.series) == 0:
		return "empty"
	case len(r.series) == 1:
		return "1 series"
	}
	return fmt.Sprintf("%d series", len(r.series))
}

// instant runs one instant query. Errors that a retry cannot fix (a
// PromQL syntax error, a wrong URL path, an answer that is not the
// Prometheus API) wrap step.ErrPermanent; 5xx, throttling and connection
// errors do not.
func (c client) instant(ctx context.Context, base *url.URL, query string) (result, error) {
	u := *base
	u.Path = strings.TrimSuffix(u.Path, "/") + "/api/v1/query"
	u.RawPath = ""
	// POST keeps long expressions out of URLs and access logs; the HTTP
	// API accepts form-encoded POST for queries, as Grafana uses by default.
	form := url.Values{"query": {query}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), strings.NewReader(form.Encode()))
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return result{}, fmt.Errorf("%w: build request: %v", step.ErrInvalidParams, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "salve")
	where := "prometheus " + redact(&u)
	resp, err := c.opts.Client.Do(req)
	if err != nil {
		// *url.Error repeats the full URL; keep only its cause.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return result{}, fmt.Errorf("%s: %w", where, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return result{}, fmt.Errorf("%s: read answer: %w", where, err)
	}
	permanent := step.PermanentStatus(resp.StatusCode)
	var api struct {
		Status    string          `json:"status"`
		Data      json.RawMessage `json:"data"`
		ErrorType string          `json:"errorType"`
		Error     string          `json:"error"`
	}
	if len(body) > maxResponse {
		if resp.StatusCode/100 == 2 {
			return result{}, fmt.Errorf("%w: %s: answer is larger than %d MiB: narrow the query (e.g. with topk or sum by)", step.ErrPermanent, where, maxResponse>>20)
		}
		body = nil // an enormous error page says nothing useful
	}
	if jerr := json.Unmarshal(body, &api); jerr != nil || api.Status == "" {
		err := fmt.Errorf("%s: status %d, not a Prometheus API answer", where, resp.StatusCode)
		if permanent || resp.StatusCode/100 == 2 {
			// 200 with something else is the wrong URL, e.g. a UI
			// behind a proxy: retrying will not change it.
			err = fmt.Errorf("%w: %v", step.ErrPermanent, err)
		}
		return result{}, err
	}
	if api.Status != "success" {
		err := fmt.Errorf("%s: status %d: %s: %s", where, resp.StatusCode, api.ErrorType, api.Error)
		// bad_data is Prometheus's word for a query it cannot parse or
		// type-check, whatever the status. Other 4xx (422 execution
		// errors such as many-to-many matching, a proxy's 403) will not
		// change on retry either; 5xx, timeouts and throttling may.
		if permanent || api.ErrorType == "bad_data" {
			err = fmt.Errorf("%w: %v", step.ErrPermanent, err)
		}
		return result{}, err
	}
	res, err := decode(api.Data)
	if err != nil {
		return result{}, fmt.Errorf("%w: %s: %v", step.ErrPermanent, where, err)
	}
	return res, nil
}

// decode reads the "data" of a successful query answer with Prometheus's
// own model types, which also carry NaN and ±Inf (strings in the API) and
// native histograms.
func decode(data json.RawMessage) (result, error) {
	var d struct {
		ResultType model.ValueType `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return result{}, fmt.Errorf("decode answer: %v", err)
	}
	out := result{resultType: d.ResultType.String()}
	switch d.ResultType {
	case model.ValVector:
		var v model.Vector
		if err := json.Unmarshal(d.Result, &v); err != nil {
			return result{}, fmt.Errorf("decode vector: %v", truncate(err.Error()))
		}
		out.series = make([]sample, 0, len(v))
		for _, s := range v {
			// A native histogram sample has no float value.
			out.series = append(out.series, sample{labels: labelMap(s.Metric), value: float64(s.Value), hasValue: s.Histogram == nil})
		}
	case model.ValMatrix:
		// An instant query returns a matrix only for a range selector
		// such as foo[5m]; each series keeps its newest float value.
		var m model.Matrix
		if err := json.Unmarshal(d.Result, &m); err != nil {
			return result{}, fmt.Errorf("decode matrix: %v", truncate(err.Error()))
		}
		out.series = make([]sample, 0, len(m))
		for _, s := range m {
			smp := sample{labels: labelMap(s.Metric)}
			if n := len(s.Values); n > 0 {
				smp.value, smp.hasValue = float64(s.Values[n-1].Value), true
			}
			out.series = append(out.series, smp)
		}
	case model.ValScalar:
		var sc model.Scalar
		if err := json.Unmarshal(d.Result, &sc); err != nil {
			return result{}, fmt.Errorf("decode scalar: %v", truncate(err.Error()))
		}
		out.scalar = float64(sc.Value)
	case model.ValString:
	default:
		return result{}, fmt.Errorf("unknown result type %q", d.ResultType.String())
	}
	return out, nil
}

func labelMap(m model.Metric) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[string(k)] = string(v)
	}
	return out
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// number is a float as step output. JSON has no NaN or ±Inf, and history
// is JSON, so those stay in Prometheus's own spelling ("NaN", "+Inf").
func number(f float64) any {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "+Inf"
	case math.IsInf(f, -1):
		return "-Inf"
	}
	return f
}

// query is prometheus.query: one instant query, no retries of its own
// (those are Temporal's job). Output: resultType; value (a scalar, or a
// vector with exactly one sample); series (at most maxSeries, in
// Prometheus's order so sort_desc and topk keep their meaning), each
// {labels, value}; count (all series, before the cap).
func (c client) query(ctx context.Context, req step.Request) (step.Result, error) {
	q, err := queryParam(req.Params)
	if err != nil {
		return step.Result{}, err
	}
	base, err := c.base(req.Params)
	if err != nil {
		return step.Result{}, err
	}
	res, err := c.instant(ctx, base, q)
	if err != nil {
		return step.Result{}, err
	}
	out := map[string]any{"resultType": res.resultType, "count": len(res.series)}
	if v, ok := res.single(); ok {
		out["value"] = number(v)
	}
	series := make([]map[string]any, 0, min(len(res.series), maxSeries))
	for _, s := range res.series[:min(len(res.series), maxSeries)] {
		labels := s.labels
		if labels == nil {
			labels = map[string]string{}
		}
		e := map[string]any{"labels": labels}
		if s.hasValue {
			e["value"] = number(s.value)
		}
		series = append(series, e)
	}
	out["series"] = series
	return step.Result{Output: out}, nil
}

type assertParams struct {
	query                  string
	hold, within, interval time.Duration
}

func parseAssert(p map[string]any) (assertParams, error) {
	out := assertParams{interval: defaultInterval}
	var err error
	if out.query, err = queryParam(p); err != nil {
		return out, err
	}
	v, ok := p["within"]
	if !ok {
		return out, fmt.Errorf("%w: within: required, the deadline for the condition to hold, e.g. 5m", step.ErrInvalidParams)
	}
	if out.within, err = step.Duration(v); err != nil {
		return out, fmt.Errorf("%w: within: %v", step.ErrInvalidParams, err)
	}
	if out.within == 0 {
		return out, fmt.Errorf("%w: within: must be more than 0, e.g. 5m", step.ErrInvalidParams)
	}
	if v, ok := p["for"]; ok {
		if out.hold, err = step.Duration(v); err != nil {
			return out, fmt.Errorf("%w: for: %v", step.ErrInvalidParams, err)
		}
	}
	if out.hold > out.within {
		return out, fmt.Errorf("%w: for (%s) is longer than within (%s): the condition could never hold long enough", step.ErrInvalidParams, out.hold, out.within)
	}
	if v, ok := p["interval"]; ok {
		if out.interval, err = step.Duration(v); err != nil {
			return out, fmt.Errorf("%w: interval: %v", step.ErrInvalidParams, err)
		}
		if out.interval == 0 {
			return out, fmt.Errorf("%w: interval: must be more than 0, e.g. 5s", step.ErrInvalidParams)
		}
	}
	return out, nil
}

// assert is prometheus.assert. It polls until the condition has held for
// `for` without a break, measured like an alerting rule's pending period:
// from the first poll that saw a non-empty result to the latest one. A
// failed poll breaks the streak, because nobody saw the condition then,
// and a false "it worked" is worse than a late one. It gives up as soon as
// the condition can no longer hold for `for` before `within` ends; running
// out of time is permanent (a retry would restart the clock and hide the
// failure). Output: heldFor, polls, lastValue (if a single sample).
func (c client) assert(ctx context.Context, req step.Request) (step.Result, error) {
	p, err := parseAssert(req.Params)
	if err != nil {
		return step.Result{}, err
	}
	base, err := c.base(req.Params)
	if err != nil {
		return step.Result{}, err
	}
	now := c.opts.Now
	start := now()
	deadline := start.Add(p.within)
	var (
		polls     int
		heldSince time.Time // zero while the condition does not hold
		heldFor   time.Duration
		last      string // what the last poll saw, for error text
		lastRes   result
	)
	beat := func() {
		if c.opts.Heartbeat != nil {
			c.opts.Heartbeat(ctx, map[string]any{"polls": polls, "heldFor": heldFor.Round(time.Millisecond).String(), "last": last})
		}
	}
	for {
		res, err := c.instant(ctx, base, p.query)
		polls++
		at := now()
		stamp := at.UTC().Format(time.RFC3339)
		switch {
		case ctx.Err() != nil:
			return step.Result{}, fmt.Errorf("condition `%s`: stopped after %d polls (held %s): %w", p.query, polls, heldFor.Round(time.Millisecond), ctx.Err())
		case errors.Is(err, step.ErrPermanent), errors.Is(err, step.ErrInvalidParams):
			return step.Result{}, fmt.Errorf("condition `%s`: %w", p.query, err)
		case err != nil:
			heldSince, heldFor, last = time.Time{}, 0, fmt.Sprintf("last poll failed at %s: %v", stamp, err)
		case res.resultType != "vector":
			// Alerting rules reject these too: a scalar or matrix has no
			// "empty" to mean "does not hold".
			return step.Result{}, fmt.Errorf("%w: condition `%s` returns a %s; it must return an instant vector (e.g. a comparison such as x < 0.01)", step.ErrPermanent, p.query, res.resultType)
		case len(res.series) == 0:
			heldSince, heldFor, last = time.Time{}, 0, "last result empty at "+stamp
		default:
			if heldSince.IsZero() {
				heldSince = at
			}
			heldFor, lastRes = at.Sub(heldSince), res
			last = fmt.Sprintf("last result %s at %s", res.describe(), stamp)
		}
		beat()
		if !heldSince.IsZero() && heldFor >= p.hold {
			out := map[string]any{"heldFor": heldFor.Round(time.Millisecond).String(), "polls": polls}
			if v, ok := lastRes.single(); ok {
				out["lastValue"] = number(v)
			}
			return step.Result{Output: out}, nil
		}
		// The earliest the condition could have held for long enough;
		// past the deadline, more polls cannot change the outcome.
		done := at.Add(p.hold)
		if !heldSince.IsZero() {
			done = heldSince.Add(p.hold)
		}
		if !at.Before(deadline) || done.After(deadline) {
			cond := fmt.Sprintf("did not hold for %s within %s", p.hold, p.within)
			if p.hold == 0 {
				cond = fmt.Sprintf("did not hold within %s", p.within)
			}
			detail := fmt.Sprintf("%d polls", polls)
			if at.Before(deadline) {
				detail += fmt.Sprintf("; gave up after %s with too little time left", at.Sub(start).Round(time.Millisecond))
			}
			return step.Result{}, fmt.Errorf("%w: condition `%s` %s: %s (%s)", step.ErrPermanent, p.query, cond, last, detail)
		}
		wait := min(p.interval, deadline.Sub(at))
		if !heldSince.IsZero() {
			// Poll again exactly when the condition could have held
			// long enough, rather than up to an interval later.
			wait = min(wait, done.Sub(at))
		}
		if err := c.sleep(ctx, wait, beat); err != nil {
			return step.Result{}, fmt.Errorf("condition `%s`: stopped after %d polls (held %s): %w", p.query, polls, heldFor.Round(time.Millisecond), err)
		}
	}
}

// sleep waits d or until ctx ends, heartbeating at least every
// heartbeatEvery so the activity's heartbeat timeout can be short.
func (c client) sleep(ctx context.Context, d time.Duration, beat func()) error {
	for d > 0 {
		chunk := min(d, heartbeatEvery)
		t := time.NewTimer(chunk)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		d -= chunk
		if d > 0 {
			beat()
		}
	}
	return nil
}

// redact drops user info, query and fragment (where tokens hide) from a
// URL shown in error text.
func redact(in *url.URL) string {
	u := *in
	u.User = nil
	u.RawQuery = ""
	u.Fragment = ""
	return u.String()
}
