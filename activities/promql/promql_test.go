package promql_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/activities/promql"
	"github.com/salve-sre/salve/activities/step"
)

// fake is a Prometheus stand-in on a loopback port: answer decides each
// reply from the 1-based request number, and every request moves the
// test clock one second, so for/within logic runs without real waiting.
type fake struct {
	*httptest.Server
	mu      sync.Mutex
	n       int
	queries []string
	paths   []string
	clock   time.Time
	answer  func(n int) (status int, body string)
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newFake(t *testing.T, answer func(n int) (int, string)) *fake {
	t.Helper()
	f := &fake{answer: answer, clock: t0}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := ""
		if r.Method == http.MethodPost && r.ParseForm() == nil {
			q = r.PostForm.Get("query")
		}
		f.mu.Lock()
		f.n++
		f.clock = f.clock.Add(time.Second)
		f.queries = append(f.queries, q)
		f.paths = append(f.paths, r.URL.Path)
		n := f.n
		f.mu.Unlock()
		status, body := answer(n)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fake) now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.clock
}

func (f *fake) requests() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n
}

func always(status int, body string) func(int) (int, string) {
	return func(int) (int, string) { return status, body }
}

// seq answers the i-th request with bodies[i-1] (200), then repeats the last.
func seq(bodies ...string) func(int) (int, string) {
	return func(n int) (int, string) {
		if n > len(bodies) {
			n = len(bodies)
		}
		b := bodies[n-1]
		if b == unavailable {
			return http.StatusServiceUnavailable, b
		}
		return http.StatusOK, b
	}
}

const (
	empty       = `{"status":"success","data":{"resultType":"vector","result":[]}}`
	unavailable = `{"status":"error","errorType":"unavailable","error":"TSDB not ready"}`
	badData     = `{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:6: parse error: unclosed left parenthesis"}`
)

// vec is a vector answer with one series per value.
func vec(values ...string) string {
	var parts []string
	for i, v := range values {
		parts = append(parts, fmt.Sprintf(`{"metric":{"__name__":"demo","instance":"i%d"},"value":[1772366400.5,%q]}`, i, v))
	}
	return `{"status":"success","data":{"resultType":"vector","result":[` + strings.Join(parts, ",") + `]}}`
}

func specs(opts promql.Options) map[string]step.Spec {
	out := map[string]step.Spec{}
	for _, s := range promql.Specs(opts) {
		out[s.Kind] = s
	}
	return out
}

func run(t *testing.T, ctx context.Context, opts promql.Options, kind string, params map[string]any) (step.Result, error) {
	t.Helper()
	s, ok := specs(opts)[kind]
	require.True(t, ok, kind)
	return s.Executor.Execute(ctx, step.Request{
		WorkflowID: "salve/verify/abc", RunID: "run-1", Runbook: "verify", Step: "check",
		Kind: kind, Params: params, IdempotencyKey: "salve/verify/abc/check",
	})
}

func TestSpecs(t *testing.T) {
	all := promql.Specs(promql.Options{})
	require.Len(t, all, 2)
	got := specs(promql.Options{})
	for kind, required := range map[string][]string{
		"prometheus.query":  {"query"},
		"prometheus.assert": {"query", "within"},
	} {
		s, ok := got[kind]
		require.True(t, ok, kind)
		require.False(t, s.Mutating, "%s only reads", kind)
		require.Empty(t, s.Credential)
		require.NotNil(t, s.Executor)
		require.NotEmpty(t, s.Summary)
		for _, p := range s.Params.Params {
			require.Equal(t, contains(required, p.Name), p.Required, "%s param %s", kind, p.Name)
			require.NotEmpty(t, p.Doc)
		}
	}
	require.Equal(t, promql.QueryKind, all[0].Kind)
	require.Equal(t, promql.AssertKind, all[1].Kind)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestParamSchema checks what runbook loading catches before any incident.
func TestParamSchema(t *testing.T) {
	got := specs(promql.Options{})
	for _, tc := range []struct {
		name   string
		kind   string
		params map[string]any
		want   []string // substrings of the errors, in order; none: valid
	}{
		{name: "query minimal", kind: promql.QueryKind, params: map[string]any{"query": "up"}},
		{name: "query with url", kind: promql.QueryKind, params: map[string]any{"query": "up", "prometheus": "http://p:9090"}},
		{name: "query templated", kind: promql.QueryKind, params: map[string]any{"query": `up{job="{{ .Alert.Labels.job }}"}`}},
		{name: "query missing", kind: promql.QueryKind, params: map[string]any{}, want: []string{`missing required parameter "query"`}},
		{name: "query unknown param", kind: promql.QueryKind, params: map[string]any{"query": "up", "within": "1m"}, want: []string{`unknown parameter "within"`}},
		{name: "assert minimal", kind: promql.AssertKind, params: map[string]any{"query": "up == 1", "within": "5m"}},
		{name: "assert full", kind: promql.AssertKind, params: map[string]any{"query": "up == 1", "for": "2m", "within": "5m", "interval": "10s", "prometheus": "https://p"}},
		{name: "assert missing within", kind: promql.AssertKind, params: map[string]any{"query": "up == 1"}, want: []string{`missing required parameter "within"`}},
		{name: "assert bad durations", kind: promql.AssertKind, params: map[string]any{"query": "up", "for": "2 minutes", "within": 300, "interval": "-1s"},
			want: []string{`"for"`, `"interval"`, `"within"`}},
		{name: "assert typo", kind: promql.AssertKind, params: map[string]any{"query": "up", "within": "1m", "fro": "1m"}, want: []string{`unknown parameter "fro"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			errs := got[tc.kind].Params.Validate(tc.params)
			require.Len(t, errs, len(tc.want), "%v", errs)
			for i, w := range tc.want {
				require.ErrorIs(t, errs[i], step.ErrInvalidParams)
				require.Contains(t, errs[i].Error(), w)
			}
		})
	}
}

func TestQueryResults(t *testing.T) {
	for _, tc := range []struct {
		name       string
		body       string
		wantType   string
		wantValue  any // nil: no "value" key
		wantCount  int
		wantSeries []map[string]any
	}{
		{
			name: "vector with one sample has a value", body: vec("42.5"),
			wantType: "vector", wantValue: 42.5, wantCount: 1,
			wantSeries: []map[string]any{{"labels": map[string]string{"__name__": "demo", "instance": "i0"}, "value": 42.5}},
		},
		{
			name: "vector with two samples has no single value", body: vec("1", "2"),
			wantType: "vector", wantCount: 2,
			wantSeries: []map[string]any{
				{"labels": map[string]string{"__name__": "demo", "instance": "i0"}, "value": 1.0},
				{"labels": map[string]string{"__name__": "demo", "instance": "i1"}, "value": 2.0},
			},
		},
		{name: "empty vector", body: empty, wantType: "vector", wantCount: 0, wantSeries: []map[string]any{}},
		{
			name: "scalar", body: `{"status":"success","data":{"resultType":"scalar","result":[1772366400,"3"]}}`,
			wantType: "scalar", wantValue: 3.0, wantSeries: []map[string]any{},
		},
		{
			name: "NaN and Inf keep Prometheus's spelling, as JSON has neither", body: vec("NaN"),
			wantType: "vector", wantValue: "NaN", wantCount: 1,
			wantSeries: []map[string]any{{"labels": map[string]string{"__name__": "demo", "instance": "i0"}, "value": "NaN"}},
		},
		{
			name:     "matrix keeps each series' newest value",
			body:     `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"job":"a"},"values":[[1,"1"],[2,"+Inf"]]}]}}`,
			wantType: "matrix", wantCount: 1,
			wantSeries: []map[string]any{{"labels": map[string]string{"job": "a"}, "value": "+Inf"}},
		},
		{
			name:     "native histogram sample has labels but no value",
			body:     `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"histogram":[1,{"count":"3"}]}]}}`,
			wantType: "vector", wantCount: 1,
			wantSeries: []map[string]any{{"labels": map[string]string{}}},
		},
		{
			name:     "string",
			body:     `{"status":"success","data":{"resultType":"string","result":[1,"hello"]}}`,
			wantType: "string", wantSeries: []map[string]any{},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t, always(http.StatusOK, tc.body))
			res, err := run(t, context.Background(), promql.Options{URL: f.URL + "/prom/"}, promql.QueryKind, map[string]any{"query": `sum(rate(x[1m])) > 0 & on() up{job="a b"}`})
			require.NoError(t, err)
			require.Equal(t, tc.wantType, res.Output["resultType"])
			require.Equal(t, tc.wantCount, res.Output["count"])
			v, has := res.Output["value"]
			require.Equal(t, tc.wantValue != nil, has, "value: %v", v)
			require.Equal(t, tc.wantValue, res.Output["value"])
			require.Equal(t, tc.wantSeries, res.Output["series"])
			require.Equal(t, []string{"/prom/api/v1/query"}, f.paths, "the base URL's path prefix is kept")
			require.Equal(t, []string{`sum(rate(x[1m])) > 0 & on() up{job="a b"}`}, f.queries)
		})
	}
}

func TestQuerySeriesAreCappedInPrometheusOrder(t *testing.T) {
	values := make([]string, 120)
	for i := range values {
		values[i] = fmt.Sprint(120 - i) // as sort_desc returns them
	}
	f := newFake(t, always(http.StatusOK, vec(values...)))
	res, err := run(t, context.Background(), promql.Options{URL: f.URL}, promql.QueryKind, map[string]any{"query": "sort_desc(demo)"})
	require.NoError(t, err)
	require.Equal(t, 120, res.Output["count"], "count says how many there were")
	series := res.Output["series"].([]map[string]any)
	require.Len(t, series, 50)
	require.Equal(t, 120.0, series[0]["value"])
	require.Equal(t, 71.0, series[49]["value"])
	require.NotContains(t, res.Output, "value")
}

func TestQueryErrors(t *testing.T) {
	for _, tc := range []struct {
		name          string
		status        int
		body          string
		want          string
		wantPermanent bool
	}{
		{name: "syntax error is permanent with Prometheus's message", status: 400, body: badData, want: "parse error: unclosed left parenthesis", wantPermanent: true},
		{name: "bad_data under another status is permanent", status: 200, body: `{"status":"error","errorType":"bad_data","error":"bad"}`, want: "bad_data: bad", wantPermanent: true},
		{name: "execution error is permanent", status: 422, body: `{"status":"error","errorType":"execution","error":"many-to-many matching not allowed"}`, want: "many-to-many", wantPermanent: true},
		{name: "503 unavailable is retryable", status: 503, body: unavailable, want: "TSDB not ready"},
		{name: "503 timeout is retryable", status: 503, body: `{"status":"error","errorType":"timeout","error":"query timed out"}`, want: "timed out"},
		{name: "500 with a proxy's page is retryable", status: 500, body: "<html>oops</html>", want: "status 500"},
		{name: "502 empty is retryable", status: 502, body: "", want: "status 502"},
		{name: "429 is retryable", status: 429, body: "slow down", want: "status 429"},
		{name: "404 is the wrong URL: permanent", status: 404, body: "404 page not found", want: "status 404", wantPermanent: true},
		{name: "200 that is not the API is permanent", status: 200, body: "<html>Grafana</html>", want: "not a Prometheus API answer", wantPermanent: true},
		{name: "unknown result type is permanent", status: 200, body: `{"status":"success","data":{"resultType":"table","result":[]}}`, want: "table", wantPermanent: true},
		{name: "malformed sample is permanent", status: 200, body: `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"abc"]}]}}`, want: `decode vector: strconv.ParseFloat: parsing "abc"`, wantPermanent: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t, always(tc.status, tc.body))
			res, err := run(t, context.Background(), promql.Options{URL: f.URL}, promql.QueryKind, map[string]any{"query": "rate(x[1m]"})
			require.Error(t, err)
			require.Nil(t, res.Output)
			require.Contains(t, err.Error(), tc.want)
			require.Contains(t, err.Error(), "/api/v1/query", "the error says which server failed")
			require.Equal(t, tc.wantPermanent, errors.Is(err, step.ErrPermanent), "%v", err)
			require.False(t, errors.Is(err, step.ErrInvalidParams))
		})
	}
}

func TestConnectionRefusedIsRetryable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	u := srv.URL
	srv.Close()
	for _, kind := range []string{promql.QueryKind, promql.AssertKind} {
		// Assert keeps polling through errors until within ends.
		_, err := run(t, context.Background(), promql.Options{URL: u}, kind, map[string]any{"query": "up", "within": "1ms"})
		require.Error(t, err)
		require.Contains(t, err.Error(), "refused")
		if kind == promql.QueryKind {
			require.False(t, errors.Is(err, step.ErrPermanent), "%v", err)
		}
	}
}

func TestPrometheusURL(t *testing.T) {
	configured := newFake(t, always(http.StatusOK, vec("1")))
	override := newFake(t, always(http.StatusOK, vec("2")))

	res, err := run(t, context.Background(), promql.Options{URL: configured.URL}, promql.QueryKind, map[string]any{"query": "up"})
	require.NoError(t, err)
	require.Equal(t, 1.0, res.Output["value"])

	res, err = run(t, context.Background(), promql.Options{URL: configured.URL}, promql.QueryKind, map[string]any{"query": "up", "prometheus": override.URL})
	require.NoError(t, err)
	require.Equal(t, 2.0, res.Output["value"], "the step's parameter wins")

	res, err = run(t, context.Background(), promql.Options{}, promql.QueryKind, map[string]any{"query": "up", "prometheus": override.URL})
	require.NoError(t, err)
	require.Equal(t, 2.0, res.Output["value"], "the parameter alone is enough")

	for _, kind := range []string{promql.QueryKind, promql.AssertKind} {
		for _, params := range []map[string]any{
			{"query": "up", "within": "1s"},
			{"query": "up", "within": "1s", "prometheus": ""},
		} {
			_, err = run(t, context.Background(), promql.Options{}, kind, params)
			require.ErrorIs(t, err, step.ErrPermanent, "no URL anywhere is for the operator to fix")
			require.Contains(t, err.Error(), "--prometheus-url")
			require.Contains(t, err.Error(), "SALVE_PROMETHEUS_URL")
		}
	}

	_, err = run(t, context.Background(), promql.Options{URL: "ftp://p"}, promql.QueryKind, map[string]any{"query": "up"})
	require.ErrorIs(t, err, step.ErrPermanent, "a bad configured URL is the operator's")
	require.False(t, errors.Is(err, step.ErrInvalidParams))
	require.Contains(t, err.Error(), "--prometheus-url")
	_, err = run(t, context.Background(), promql.Options{URL: configured.URL}, promql.QueryKind, map[string]any{"query": "up", "prometheus": "p:9090"})
	require.ErrorIs(t, err, step.ErrInvalidParams, "a bad parameter is the runbook's")
}

// TestErrorsDoNotLeakURLSecrets: user info and query strings, where tokens
// hide, never reach error text (logs, audit, workflow history).
func TestErrorsDoNotLeakURLSecrets(t *testing.T) {
	const password, token = "hunter2-pass", "tok-s3cr3t"
	secret := func(base string) string {
		return strings.Replace(base, "http://", "http://ops:"+password+"@", 1) + "/prom?token=" + token
	}
	check := func(t *testing.T, err error) {
		t.Helper()
		require.Error(t, err)
		require.NotContains(t, err.Error(), password)
		require.NotContains(t, err.Error(), token)
		require.NotContains(t, err.Error(), "ops:")
	}
	f := newFake(t, always(http.StatusBadRequest, badData))
	_, err := run(t, context.Background(), promql.Options{URL: secret(f.URL)}, promql.QueryKind, map[string]any{"query": "x"})
	check(t, err)
	require.Contains(t, err.Error(), "/prom/api/v1/query")

	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	_, err = run(t, context.Background(), promql.Options{}, promql.QueryKind, map[string]any{"query": "x", "prometheus": secret(down.URL)})
	check(t, err)
	_, err = run(t, context.Background(), promql.Options{}, promql.AssertKind, map[string]any{"query": "x", "within": "1ms", "prometheus": secret(down.URL)})
	check(t, err)

	for _, u := range []string{"ftp://ops:" + password + "@p/?token=" + token, "http://ops:" + password + "@/?token=" + token} {
		_, err = run(t, context.Background(), promql.Options{URL: u}, promql.QueryKind, map[string]any{"query": "x"})
		check(t, err)
		_, err = run(t, context.Background(), promql.Options{}, promql.QueryKind, map[string]any{"query": "x", "prometheus": u})
		check(t, err)
	}
}

func TestBadAssertParams(t *testing.T) {
	f := newFake(t, always(http.StatusOK, vec("1")))
	for _, tc := range []struct {
		name   string
		params map[string]any
		want   string
	}{
		{name: "missing query", params: map[string]any{"within": "1m"}, want: "query"},
		{name: "blank query", params: map[string]any{"query": "  ", "within": "1m"}, want: "query"},
		{name: "missing within", params: map[string]any{"query": "up"}, want: "within"},
		{name: "within zero", params: map[string]any{"query": "up", "within": "0s"}, want: "within"},
		{name: "within not a duration", params: map[string]any{"query": "up", "within": "soon"}, want: "within"},
		{name: "for not a duration", params: map[string]any{"query": "up", "within": "1m", "for": 5}, want: "for"},
		{name: "for longer than within", params: map[string]any{"query": "up", "within": "1m", "for": "2m"}, want: "could never hold"},
		{name: "interval zero", params: map[string]any{"query": "up", "within": "1m", "interval": "0s"}, want: "interval"},
		{name: "interval negative", params: map[string]any{"query": "up", "within": "1m", "interval": "-1s"}, want: "interval"},
		{name: "prometheus not a string", params: map[string]any{"query": "up", "within": "1m", "prometheus": []any{"x"}}, want: "prometheus"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := run(t, context.Background(), promql.Options{URL: f.URL}, promql.AssertKind, tc.params)
			require.ErrorIs(t, err, step.ErrInvalidParams)
			require.Contains(t, err.Error(), tc.want)
			require.Nil(t, res.Output)
		})
	}
	require.Zero(t, f.requests(), "bad parameters never reach Prometheus")
}

func TestAssertFakeClock(t *testing.T) {
	// Each request moves the fake clock one second: poll i is at t0+i s.
	stamp := func(i int) string { return t0.Add(time.Duration(i) * time.Second).Format(time.RFC3339) }
	for _, tc := range []struct {
		name        string
		answers     func(int) (int, string)
		params      map[string]any
		wantPolls   int
		wantHeldFor string // success
		wantLast    any
		wantErr     []string // failure
	}{
		{
			name:    "holds at once with for 0",
			answers: seq(vec("0.003")), params: map[string]any{"within": "1m"},
			wantPolls: 1, wantHeldFor: "0s", wantLast: 0.003,
		},
		{
			name:    "a break restarts the for clock",
			answers: seq(empty, vec("1"), vec("1"), empty, vec("1"), vec("2"), vec("0.5")), params: map[string]any{"for": "2s", "within": "20s"},
			wantPolls: 7, wantHeldFor: "2s", wantLast: 0.5,
		},
		{
			name:    "a failed poll breaks the streak too",
			answers: seq(vec("1"), unavailable, vec("1"), vec("1"), vec("1")), params: map[string]any{"for": "2s", "within": "20s"},
			wantPolls: 5, wantHeldFor: "2s", wantLast: 1.0,
		},
		{
			name:    "several series hold but have no single lastValue",
			answers: seq(vec("1", "2")), params: map[string]any{"within": "5s"},
			wantPolls: 1, wantHeldFor: "0s",
		},
		{
			name:    "never holds: fails at within with the last result",
			answers: seq(empty), params: map[string]any{"within": "5s"},
			wantPolls: 5, wantErr: []string{"did not hold within 5s: last result empty at " + stamp(5) + " (5 polls)"},
		},
		{
			name:    "gives up once for can no longer fit before within",
			answers: seq(empty), params: map[string]any{"for": "3s", "within": "5s"},
			wantPolls: 3, wantErr: []string{"did not hold for 3s within 5s: last result empty at " + stamp(3), "3 polls; gave up after 3s with too little time left"},
		},
		{
			name:    "starts holding too late to finish",
			answers: seq(empty, empty, vec("7")), params: map[string]any{"for": "3s", "within": "5s"},
			wantPolls: 3, wantErr: []string{"last result 7 at " + stamp(3) + " (3 polls; gave up after 3s"},
		},
		{
			name:    "a break near the end leaves too little time",
			answers: seq(empty, vec("7"), vec("7"), empty), params: map[string]any{"for": "3s", "within": "5s"},
			wantPolls: 4, wantErr: []string{"last result empty at " + stamp(4) + " (4 polls; gave up after 4s"},
		},
		{
			name:    "Prometheus down until within: says so",
			answers: seq(unavailable), params: map[string]any{"within": "3s"},
			wantPolls: 3, wantErr: []string{"last poll failed at " + stamp(3), "TSDB not ready", "(3 polls)"},
		},
		{
			name:    "syntax error fails at once",
			answers: func(int) (int, string) { return http.StatusBadRequest, badData }, params: map[string]any{"within": "1m"},
			wantPolls: 1, wantErr: []string{"unclosed left parenthesis"},
		},
		{
			name:    "scalar condition is refused",
			answers: seq(`{"status":"success","data":{"resultType":"scalar","result":[1,"1"]}}`), params: map[string]any{"within": "1m"},
			wantPolls: 1, wantErr: []string{"returns a scalar", "instant vector"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t, tc.answers)
			var mu sync.Mutex
			var beats []map[string]any
			opts := promql.Options{URL: f.URL, Now: f.now, Heartbeat: func(ctx context.Context, details ...any) {
				require.NotNil(t, ctx)
				require.Len(t, details, 1)
				mu.Lock()
				beats = append(beats, details[0].(map[string]any))
				mu.Unlock()
			}}
			params := map[string]any{"query": "ratio < 0.01", "interval": "1ms"}
			for k, v := range tc.params {
				params[k] = v
			}
			res, err := run(t, context.Background(), opts, promql.AssertKind, params)
			require.Equal(t, tc.wantPolls, f.requests())
			if tc.wantErr != nil {
				require.Error(t, err)
				require.ErrorIs(t, err, step.ErrPermanent)
				require.Contains(t, err.Error(), "condition `ratio < 0.01`")
				for _, w := range tc.wantErr {
					require.Contains(t, err.Error(), w)
				}
				require.Nil(t, res.Output)
				return
			}
			require.NoError(t, err)
			want := map[string]any{"heldFor": tc.wantHeldFor, "polls": tc.wantPolls}
			if tc.wantLast != nil {
				want["lastValue"] = tc.wantLast
			}
			require.Equal(t, want, res.Output)
			mu.Lock()
			defer mu.Unlock()
			require.Len(t, beats, tc.wantPolls, "one heartbeat per poll")
			require.Equal(t, tc.wantPolls, beats[len(beats)-1]["polls"])
		})
	}
}

// TestAssertRealTime runs the loop on the real clock with small durations.
func TestAssertRealTime(t *testing.T) {
	t.Run("holds for 150ms", func(t *testing.T) {
		f := newFake(t, always(http.StatusOK, vec("1")))
		start := time.Now()
		res, err := run(t, context.Background(), promql.Options{URL: f.URL}, promql.AssertKind,
			map[string]any{"query": "up == 1", "for": "150ms", "within": "5s", "interval": "50ms"})
		elapsed := time.Since(start)
		require.NoError(t, err)
		held, err := time.ParseDuration(res.Output["heldFor"].(string))
		require.NoError(t, err)
		require.GreaterOrEqual(t, held, 150*time.Millisecond)
		require.GreaterOrEqual(t, elapsed, 150*time.Millisecond)
		require.Less(t, elapsed, 3*time.Second)
		require.GreaterOrEqual(t, res.Output["polls"], 3)
	})
	t.Run("fails at within", func(t *testing.T) {
		f := newFake(t, always(http.StatusOK, empty))
		start := time.Now()
		_, err := run(t, context.Background(), promql.Options{URL: f.URL}, promql.AssertKind,
			map[string]any{"query": "up == 1", "within": "200ms", "interval": "50ms"})
		elapsed := time.Since(start)
		require.ErrorIs(t, err, step.ErrPermanent)
		require.Contains(t, err.Error(), "did not hold within 200ms: last result empty")
		require.GreaterOrEqual(t, elapsed, 200*time.Millisecond)
		require.Less(t, elapsed, 3*time.Second)
		require.GreaterOrEqual(t, f.requests(), 3)
	})
}

func TestAssertHonoursCancellation(t *testing.T) {
	t.Run("while waiting between polls", func(t *testing.T) {
		f := newFake(t, always(http.StatusOK, empty))
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(100*time.Millisecond, cancel)
		start := time.Now()
		_, err := run(t, ctx, promql.Options{URL: f.URL}, promql.AssertKind,
			map[string]any{"query": "up == 1", "within": "1h", "interval": "30s"})
		require.ErrorIs(t, err, context.Canceled)
		require.False(t, errors.Is(err, step.ErrPermanent), "cancellation is Temporal's to handle")
		require.Contains(t, err.Error(), "stopped after 1 polls")
		require.Less(t, time.Since(start), 5*time.Second)
		require.Equal(t, 1, f.requests())
	})
	t.Run("during a slow query", func(t *testing.T) {
		release := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}))
		t.Cleanup(srv.Close)
		t.Cleanup(func() { close(release) })
		for _, kind := range []string{promql.QueryKind, promql.AssertKind} {
			ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
			start := time.Now()
			_, err := run(t, ctx, promql.Options{URL: srv.URL}, kind, map[string]any{"query": "up", "within": "1h"})
			cancel()
			require.ErrorIs(t, err, context.DeadlineExceeded, kind)
			require.False(t, errors.Is(err, step.ErrPermanent), kind)
			require.Less(t, time.Since(start), 5*time.Second, kind)
		}
	})
}
