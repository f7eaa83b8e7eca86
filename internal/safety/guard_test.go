package safety_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/activities"
	"github.com/salve-sre/salve/internal/devnats"
	"github.com/salve-sre/salve/internal/safety"
	"github.com/salve-sre/salve/runbooks"
)

func openGuard(t *testing.T) (*safety.Guard, func() *safety.Guard) {
	t.Helper()
	if onMemoryStore {
		store := safety.NewMemoryStore()
		open := func() *safety.Guard { return safety.NewGuard(store, nil) }
		return open(), open
	}
	ns, err := devnats.Start(devnats.Options{StoreDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(ns.Stop)
	open := func() *safety.Guard {
		nc, err := nats.Connect(ns.URL())
		require.NoError(t, err)
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		require.NoError(t, err)
		g, err := safety.Open(context.Background(), js, 1)
		require.NoError(t, err)
		return g
	}
	return open(), open
}

func runbook(t *testing.T, safetyYAML string) *runbooks.Runbook {
	t.Helper()
	reg, err := activities.NewRegistry()
	require.NoError(t, err)
	rb, err := runbooks.Parse("g.yaml", []byte(`apiVersion: salve/v1
kind: Runbook
metadata: {name: guarded}
spec:
  safety: `+safetyYAML+`
  steps:
    - {name: act, action: http.request, with: {url: "http://x"}}
`), reg)
	require.NoError(t, err)
	return rb
}

func TestCooldown(t *testing.T) {
	g, _ := openGuard(t)
	ctx := context.Background()
	rb := runbook(t, "{cooldown: 30m}")
	a, err := g.Admit(ctx, rb, nil, "shop/api", "salve/guarded/shop/api")
	require.NoError(t, err)
	require.True(t, a.Allowed)
	require.NoError(t, g.Finished(ctx, "guarded", "salve/guarded/shop/api", "succeeded", time.Now()))
	a, err = g.Admit(ctx, rb, nil, "shop/api", "salve/guarded/shop/api")
	require.NoError(t, err)
	require.False(t, a.Allowed)
	require.Equal(t, safety.CheckCooldown, a.Check)
	require.Contains(t, a.Reason, `incident "shop/api" finished recently: cooldown 30m0s`)
	// Another incident of the same runbook is not cooled down.
	a, err = g.Admit(ctx, rb, nil, "shop/web", "salve/guarded/shop/web")
	require.NoError(t, err)
	require.True(t, a.Allowed)
	// A cooldown that has passed allows again.
	require.NoError(t, g.Finished(ctx, "guarded", "salve/guarded/shop/web", "succeeded", time.Now().Add(-time.Hour)))
	a, err = g.Admit(ctx, rb, nil, "shop/web", "salve/guarded/shop/web")
	require.NoError(t, err)
	require.True(t, a.Allowed)
}

func TestRateAndConcurrency(t *testing.T) {
	g, _ := openGuard(t)
	ctx := context.Background()
	rb := runbook(t, "{maxRunsPerHour: 3, maxConcurrent: 2}")
	for i, want := range []bool{true, true, false} {
		a, err := g.Admit(ctx, rb, nil, "k", "wf"+string(rune('a'+i)))
		require.NoError(t, err)
		require.Equal(t, want, a.Allowed, i)
		if !want {
			require.Equal(t, safety.CheckConcurrency, a.Check)
		}
	}
	// A redelivered alert of an admitted run is admitted again, not twice.
	a, err := g.Admit(ctx, rb, nil, "k", "wfa")
	require.NoError(t, err)
	require.True(t, a.Allowed)
	st, err := g.State(ctx, "guarded")
	require.NoError(t, err)
	require.Equal(t, 2, st.Active)
	require.Equal(t, 2, st.Starts)
	// Releasing a join frees its place and its start.
	require.NoError(t, g.Release(ctx, "guarded", "wfb"))
	require.NoError(t, g.Finished(ctx, "guarded", "wfa", "succeeded", time.Now()))
	a, err = g.Admit(ctx, rb, nil, "k", "wfd")
	require.NoError(t, err)
	require.True(t, a.Allowed)
	a, err = g.Admit(ctx, rb, nil, "k", "wfe")
	require.NoError(t, err)
	require.True(t, a.Allowed)
	a, err = g.Admit(ctx, rb, nil, "k", "wff")
	require.NoError(t, err)
	require.False(t, a.Allowed)
	require.Equal(t, safety.CheckRate, a.Check, "3 starts in the hour: wfa, wfd, wfe")
}

func TestCircuitBreaker(t *testing.T) {
	g, reopen := openGuard(t)
	ctx := context.Background()
	rb := runbook(t, "{circuitBreaker: {failures: 2, window: 1h}}")
	for _, id := range []string{"w1", "w2"} {
		a, err := g.Admit(ctx, rb, nil, id, id)
		require.NoError(t, err)
		require.True(t, a.Allowed)
		require.False(t, a.DryRun)
		require.NoError(t, g.Finished(ctx, "guarded", id, "failed", time.Now()))
		// Finishing twice (a retried activity) counts once.
		require.NoError(t, g.Finished(ctx, "guarded", id, "failed", time.Now()))
	}
	// The state lives in JetStream: another process (replica) sees it.
	g2 := reopen()
	a, err := g2.Admit(ctx, rb, nil, "w3", "w3")
	require.NoError(t, err)
	require.True(t, a.Allowed)
	require.True(t, a.DryRun, "an open breaker turns runs into dry-run plans")
	require.Equal(t, safety.CheckBreakerOpen, a.Check)
	st, err := g.State(ctx, "guarded")
	require.NoError(t, err)
	require.True(t, st.Open)
	require.Equal(t, 2, st.Failures)

	was, err := g.Reset(ctx, "guarded")
	require.NoError(t, err)
	require.True(t, was)
	a, err = g.Admit(ctx, rb, nil, "w4", "w4")
	require.NoError(t, err)
	require.False(t, a.DryRun)
}

// Replicas admitting at once never exceed a limit: compare-and-set.
func TestConcurrentAdmissionsRespectTheLimit(t *testing.T) {
	_, open := openGuard(t)
	ctx := context.Background()
	rb := runbook(t, "{maxConcurrent: 5}")
	guards := []*safety.Guard{open(), open(), open(), open()}
	var mu sync.Mutex
	admitted := 0
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, err := guards[i%len(guards)].Admit(ctx, rb, nil, "k", "wf-"+string(rune('A'+i)))
			require.NoError(t, err)
			if a.Allowed {
				mu.Lock()
				admitted++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	require.Equal(t, 5, admitted)
}

// A guard keeps its own copy of a runbook's state between admissions; a
// refusal must never rest on that copy when another replica has changed
// the state since: here replica B frees a place that replica A's copy
// still counts as taken.
func TestRefusalIsDecidedOnTheCurrentState(t *testing.T) {
	_, open := openGuard(t)
	ctx := context.Background()
	rb := runbook(t, "{maxConcurrent: 2}")
	a, b := open(), open()
	for _, id := range []string{"wf1", "wf2"} {
		adm, err := a.Admit(ctx, rb, nil, id, id)
		require.NoError(t, err)
		require.True(t, adm.Allowed)
	}
	adm, err := a.Admit(ctx, rb, nil, "wf3", "wf3")
	require.NoError(t, err)
	require.False(t, adm.Allowed, "two runs going: the third is refused")

	require.NoError(t, b.Finished(ctx, "guarded", "wf1", "succeeded", time.Now()))
	adm, err = a.Admit(ctx, rb, nil, "wf3", "wf3")
	require.NoError(t, err)
	require.True(t, adm.Allowed, "replica B freed a place; replica A must see it")

	// And a write based on a stale copy loses its compare-and-set and is
	// redone: B admits wf4 (the limit is reached again), then A's next
	// admission must be refused although A's copy shows a free place.
	require.NoError(t, a.Finished(ctx, "guarded", "wf2", "succeeded", time.Now()))
	adm, err = b.Admit(ctx, rb, nil, "wf4", "wf4")
	require.NoError(t, err)
	require.True(t, adm.Allowed)
	adm, err = a.Admit(ctx, rb, nil, "wf5", "wf5")
	require.NoError(t, err)
	require.False(t, adm.Allowed, "wf3 and wf4 are going")
	st, err := a.State(ctx, "guarded")
	require.NoError(t, err)
	require.Equal(t, 2, st.Active)
}
