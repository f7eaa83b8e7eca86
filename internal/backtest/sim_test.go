package backtest_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/activities"
	"github.com/salve-sre/salve/internal/backtest"
	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/internal/safety"
	"github.com/salve-sre/salve/runbooks"
)

var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

func at(minutes int) time.Time { return t0.Add(time.Duration(minutes) * time.Minute) }

// book parses a runbook triggered by alertname Down, with its incident key
// the alert's namespace and param ns from it.
func book(t testing.TB, name, triggerExtra, safetyYAML string) *runbooks.Runbook {
	t.Helper()
	reg, err := activities.NewRegistry()
	require.NoError(t, err)
	rb, err := runbooks.Parse(name+".yaml", []byte(`apiVersion: salve/v1
kind: Runbook
metadata: {name: `+name+`}
spec:
  trigger:
    matchers: ['alertname="Down"']
    incidentKey: '{{ .Labels.namespace }}'
`+triggerExtra+`
  params:
    ns: {fromLabel: namespace, required: true}
  safety: `+safetyYAML+`
  steps:
    - {name: act, action: http.request, with: {url: "http://x"}}
`), reg)
	require.NoError(t, err)
	return rb
}

func set(t testing.TB, rbs ...*runbooks.Runbook) *runbooks.Set {
	t.Helper()
	s, err := runbooks.NewSet(rbs...)
	require.NoError(t, err)
	return s
}

// down is an occurrence of alert Down in namespace ns (pod tells alerts of
// one namespace apart) from minute start to minute end (before start:
// still firing).
func down(ns, pod string, start, end int) backtest.Occurrence {
	o := backtest.Occurrence{Labels: map[string]string{"alertname": "Down", "namespace": ns, "pod": pod}, Start: at(start)}
	if end >= start {
		o.End = at(end)
	}
	return o
}

func run(t *testing.T, o backtest.Options, occs ...backtest.Occurrence) *backtest.Result {
	t.Helper()
	states := backtest.States(occs, 0, t0.Add(-time.Hour), t0.Add(72*time.Hour))
	res, err := backtest.Run(context.Background(), states, o)
	require.NoError(t, err)
	return res
}

func only(t *testing.T, res *backtest.Result, name string) backtest.RunbookResult {
	t.Helper()
	for _, r := range res.Runbooks {
		if r.Runbook == name {
			return r
		}
	}
	t.Fatalf("runbook %s not in the result", name)
	return backtest.RunbookResult{}
}

func TestCooldownJoinsAndRunEnds(t *testing.T) {
	rb := book(t, "restart", "", "{cooldown: 30m}")
	res := run(t, backtest.Options{Runbooks: set(t, rb)},
		down("shop", "p1", 0, 5),   // starts a run, which ends at minute 2 (modelled length)
		down("shop", "p2", 1, 6),   // same incident, run going: joins
		down("shop", "p3", 10, 12), // cooldown until minute 32: suppressed
		down("shop", "p4", 40, 45), // cooldown over: starts
		down("web", "p1", 11, 12),  // another incident: starts
		backtest.Occurrence{Labels: map[string]string{"alertname": "Other"}, Start: at(3), End: at(4)},
	)
	r := only(t, res, "restart")
	require.Equal(t, 3, r.Started)
	require.Equal(t, 1, r.Joined)
	require.Equal(t, map[string]int{safety.CheckCooldown: 1}, r.SuppressedBy)
	require.Equal(t, 1, r.Suppressed)
	require.Equal(t, 2, r.Incidents)
	require.Equal(t, 1, r.PeakConcurrent)
	require.Equal(t, 2, res.NoMatch, "Other's firing and resolved states match no runbook")
	require.Equal(t, 12, res.AlertStates)
	// Decisions carry the simulated time.
	require.Equal(t, at(0), res.Decisions[0].Time)
	require.Equal(t, backtest.OutcomeStarted, res.Decisions[0].Outcome)
	var cooled []time.Time
	for _, d := range res.Decisions {
		if d.Check == safety.CheckCooldown {
			cooled = append(cooled, d.Time)
		}
	}
	require.Equal(t, []time.Time{at(10)}, cooled)
}

func TestRateDailyAndConcurrencyLimits(t *testing.T) {
	for _, tc := range []struct {
		name, safety string
		occs         []backtest.Occurrence
		started      int
		check        string
		suppressed   int
	}{
		{"per hour", "{maxRunsPerHour: 2}", []backtest.Occurrence{
			down("a", "p", 0, 1), down("b", "p", 5, 6), down("c", "p", 10, 11), // third in the hour: refused
			down("d", "p", 61, 62), // the first start left the hour
		}, 3, safety.CheckRate, 1},
		{"per day", "{maxRunsPerDay: 1}", []backtest.Occurrence{
			down("a", "p", 0, 1), down("b", "p", 120, 121), down("c", "p", 24*60+1, 24*60+2),
		}, 2, safety.CheckDailyRate, 1},
		{"concurrent", "{maxConcurrent: 1}", []backtest.Occurrence{
			down("a", "p", 0, 10), down("b", "p", 1, 10), // a's run is going until minute 2
			down("c", "p", 3, 10),
		}, 2, safety.CheckConcurrency, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := only(t, run(t, backtest.Options{Runbooks: set(t, book(t, "rb", "", tc.safety))}, tc.occs...), "rb")
			require.Equal(t, tc.started, r.Started)
			require.Equal(t, map[string]int{tc.check: tc.suppressed}, r.SuppressedBy)
		})
	}
}

func TestGlobalLimitAndDefaultsFromConfig(t *testing.T) {
	o := backtest.Options{
		Runbooks: set(t, book(t, "one", "", "{}"), book(t, "two", "", "{}")),
		Safety:   safety.Config{MaxConcurrentRuns: 1, Defaults: safety.Defaults{Cooldown: runbooks.Duration(time.Hour)}},
	}
	res := run(t, o, down("a", "p", 0, 1), down("a", "q", 30, 31))
	// At minute 0 both runbooks match: one starts, the other meets the
	// global limit. At minute 30 the default cooldown refuses the first;
	// the second is free to start.
	total := map[string]int{}
	started := 0
	for _, r := range res.Runbooks {
		started += r.Started
		for k, v := range r.SuppressedBy {
			total[k] += v
		}
	}
	require.Equal(t, 2, started)
	require.Equal(t, map[string]int{safety.CheckGlobalConcurrency: 1, safety.CheckCooldown: 1}, total)
	require.Equal(t, 1, res.PeakConcurrent)
}

func TestBlastRadiusAndTargetLock(t *testing.T) {
	blast := book(t, "blast", "", `{target: "{{ .Params.ns }}", blastRadius: {maxTargets: 2, window: 1h}}`)
	res := run(t, backtest.Options{Runbooks: set(t, blast)},
		down("a", "p", 0, 1), down("b", "p", 5, 6), down("c", "p", 10, 11), down("a", "q", 20, 21), down("c", "q", 65, 66))
	r := only(t, res, "blast")
	require.Equal(t, 4, r.Started)
	require.Equal(t, map[string]int{safety.CheckBlastRadius: 1}, r.SuppressedBy)
	require.Equal(t, 3, r.Targets)

	lockA := book(t, "locka", "", `{target: "{{ .Params.ns }}", targetLock: {onBusy: suppress}}`)
	lockB := book(t, "lockb", "", `{target: "{{ .Params.ns }}", targetLock: {onBusy: suppress}}`)
	res = run(t, backtest.Options{Runbooks: set(t, lockA, lockB)}, down("a", "p", 0, 1))
	require.Equal(t, 1, only(t, res, "locka").Started)
	require.Equal(t, map[string]int{safety.CheckTargetLocked: 1}, only(t, res, "lockb").SuppressedBy)
}

func TestMaintenanceWindowAndSilences(t *testing.T) {
	rb := book(t, "rb", "", "{respectSilences: true}")
	o := backtest.Options{
		Runbooks: set(t, rb),
		Safety:   safety.Config{MaintenanceWindows: []safety.MaintenanceWindow{{Name: "upgrade", Start: at(100), End: at(200)}}},
		Silences: []safety.Silence{silence(at(50), at(60), "namespace", "b")},
	}
	res := run(t, o, down("a", "p", 0, 1), down("b", "p", 55, 56), down("b", "q", 61, 62), down("c", "p", 150, 151))
	r := only(t, res, "rb")
	require.Equal(t, 3, r.Started)
	require.Equal(t, 1, r.StartedDryRun, "the maintenance window makes c's run a dry-run plan")
	require.Equal(t, map[string]int{safety.CheckSilenced: 1}, r.SuppressedBy, "b is silenced from minute 50 to 60 only")
}

func silence(from, to time.Time, name, value string) safety.Silence {
	s := safety.Silence{ID: "s1", CreatedBy: "ops", StartsAt: from, EndsAt: to}
	s.Matchers = append(s.Matchers, struct {
		Name    string `json:"name"`
		Value   string `json:"value"`
		IsRegex bool   `json:"isRegex"`
		IsEqual *bool  `json:"isEqual"`
	}{Name: name, Value: value})
	return s
}

// Under onResolved: cancel a run ends when its alert resolves, so its
// cooldown starts then; under the default (ignore) it runs its length.
func TestResolutionEndsRunsThatStopOnIt(t *testing.T) {
	occs := []backtest.Occurrence{down("a", "p", 0, 5), down("a", "q", 40, 41)}
	o := backtest.Options{RunDuration: 2 * time.Hour}
	o.Runbooks = set(t, book(t, "rb", "    onResolved: cancel", "{cooldown: 30m}"))
	r := only(t, run(t, o, occs...), "rb")
	require.Equal(t, 2, r.Started, "ended at minute 5, cooled down until 35")

	o.Runbooks = set(t, book(t, "rb", "", "{cooldown: 30m}"))
	r = only(t, run(t, o, occs...), "rb")
	require.Equal(t, 1, r.Started)
	require.Equal(t, 1, r.Joined, "the first run is still going at minute 40 (it lasts 2h)")
}

func TestRepeatsAndRange(t *testing.T) {
	occs := []backtest.Occurrence{down("a", "p", 0, 130), down("b", "p", -30, -5)}
	states := backtest.States(occs, time.Hour, t0, at(600))
	var got []string
	for _, s := range states {
		got = append(got, s.Status+"@"+s.ReceivedAt.Format("15:04"))
		require.Equal(t, domain.AlertEventID(s.Fingerprint, s.Status, at(0)), s.ID)
	}
	require.Equal(t, []string{"firing@09:00", "firing@10:00", "firing@11:00", "resolved@11:10"}, got,
		"repeats every hour while firing; b ended before the range")
	require.Equal(t, backtest.Fingerprint(occs[0].Labels), states[0].Fingerprint)
}

// A cancelled context stops a replay; too many states are refused.
func TestRunStopsWhenCancelled(t *testing.T) {
	set, err := runbooks.NewSet(book(t, "restart", "", `{cooldown: 30m}`))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	states := backtest.States([]backtest.Occurrence{{Labels: map[string]string{"alertname": "Down", "namespace": "a"}, Start: t0}}, 0, t0, t0.Add(time.Hour))
	_, err = backtest.Run(ctx, states, backtest.Options{Runbooks: set})
	require.ErrorIs(t, err, context.Canceled)
}
