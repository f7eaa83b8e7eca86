package safety_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/activities"
	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/internal/safety"
	"github.com/salve-sre/salve/internal/testenv"
	"github.com/salve-sre/salve/runbooks"
)

// targeted is a runbook named name that acts on the alert's namespace.
func targeted(t *testing.T, name, safetyYAML string) *runbooks.Runbook {
	t.Helper()
	reg, err := activities.NewRegistry()
	require.NoError(t, err)
	rb, err := runbooks.Parse(name+".yaml", []byte(`apiVersion: salve/v1
kind: Runbook
metadata: {name: `+name+`}
spec:
  params:
    ns: {fromLabel: namespace, required: true}
  safety: `+safetyYAML+`
  steps:
    - {name: act, action: http.request, with: {url: "http://x"}}
`), reg)
	require.NoError(t, err)
	return rb
}

func alertIn(ns string) *domain.AlertEvent {
	return &domain.AlertEvent{ID: "a-" + ns, Status: domain.StatusFiring, Fingerprint: "fp-" + ns,
		Labels: map[string]string{"alertname": "Down", "namespace": ns}}
}

// Two runbooks never act on one target at once: the second waits (the
// default) or is suppressed, and the holder's finish frees the target.
func TestTargetLock(t *testing.T) {
	g, _ := openGuard(t)
	ctx := context.Background()
	restart := targeted(t, "restart", `{target: "prod/{{ .Params.ns }}"}`)
	scale := targeted(t, "scale", `{target: "prod/{{ .Params.ns }}", targetLock: {onBusy: suppress}}`)
	rollback := targeted(t, "rollback", `{target: "prod/{{ .Params.ns }}", targetLock: {maxWait: 3m}}`)

	a, err := g.Admit(ctx, restart, alertIn("shop"), "shop", "wf-restart")
	require.NoError(t, err)
	require.True(t, a.Allowed)
	require.False(t, a.WaitForTarget)
	require.Equal(t, "prod/shop", a.Target)

	a, err = g.Admit(ctx, scale, alertIn("shop"), "shop", "wf-scale")
	require.NoError(t, err)
	require.False(t, a.Allowed, "onBusy: suppress")
	require.Equal(t, safety.CheckTargetLocked, a.Check)
	require.Contains(t, a.Reason, `target "prod/shop" is held by run wf-restart (runbook restart)`)
	st, err := g.State(ctx, "scale")
	require.NoError(t, err)
	require.Zero(t, st.Active, "a suppressed admission keeps no place")

	a, err = g.Admit(ctx, rollback, alertIn("shop"), "shop", "wf-rollback")
	require.NoError(t, err)
	require.True(t, a.Allowed)
	require.True(t, a.WaitForTarget, "the default policy waits")
	require.Equal(t, 3*time.Minute, a.TargetWait)
	// Another target is free.
	a, err = g.Admit(ctx, scale, alertIn("cart"), "cart", "wf-scale-cart")
	require.NoError(t, err)
	require.True(t, a.Allowed)
	require.False(t, a.WaitForTarget)

	ok, holder, err := g.AcquireTarget(ctx, "prod/shop", "rollback", "wf-rollback")
	require.NoError(t, err)
	require.False(t, ok)
	require.Equal(t, "wf-restart", holder.WorkflowID)
	require.NoError(t, g.Finished(ctx, "restart", "wf-restart", "succeeded", time.Now()))
	ok, _, err = g.AcquireTarget(ctx, "prod/shop", "rollback", "wf-rollback")
	require.NoError(t, err)
	require.True(t, ok, "the holder's finish frees the target")
	ok, _, err = g.AcquireTarget(ctx, "prod/shop", "rollback", "wf-rollback")
	require.NoError(t, err)
	require.True(t, ok, "taking a target twice (a retried activity) is harmless")
	a, err = g.Admit(ctx, scale, alertIn("shop"), "shop", "wf-scale-2")
	require.NoError(t, err)
	require.False(t, a.Allowed, "now the rollback holds it")
	require.NoError(t, g.Finished(ctx, "rollback", "wf-rollback", "failed", time.Now()))
	a, err = g.Admit(ctx, scale, alertIn("shop"), "shop", "wf-scale-3")
	require.NoError(t, err)
	require.True(t, a.Allowed)

	// A target that does not render is a suppression with the reason.
	a, err = g.Admit(ctx, scale, &domain.AlertEvent{ID: "x", Labels: map[string]string{"alertname": "Down"}}, "x", "wf-x")
	require.NoError(t, err)
	require.False(t, a.Allowed)
	require.Equal(t, safety.CheckNoTarget, a.Check)
	require.Contains(t, a.Reason, `missing required parameter "ns"`)
}

func TestBlastRadius(t *testing.T) {
	g, _ := openGuard(t)
	ctx := context.Background()
	refuse := targeted(t, "refuse", `{target: "{{ .Params.ns }}", blastRadius: {maxTargets: 2, window: 1h}}`)
	approve := targeted(t, "approve", `{target: "{{ .Params.ns }}", blastRadius: {maxTargets: 1, window: 1h, onExceed: approve}}`)
	for i, ns := range []string{"a", "b"} {
		a, err := g.Admit(ctx, refuse, alertIn(ns), ns, fmt.Sprint("r", i))
		require.NoError(t, err)
		require.True(t, a.Allowed)
		require.NoError(t, g.Finished(ctx, "refuse", fmt.Sprint("r", i), "succeeded", time.Now()))
	}
	a, err := g.Admit(ctx, refuse, alertIn("c"), "c", "r2")
	require.NoError(t, err)
	require.False(t, a.Allowed)
	require.Equal(t, safety.CheckBlastRadius, a.Check)
	require.Contains(t, a.Reason, `acted on 2 distinct targets in the last 1h0m0s (blastRadius.maxTargets 2); "c" would be one more`)
	// A target already counted is no new blast.
	a, err = g.Admit(ctx, refuse, alertIn("a"), "a", "r3")
	require.NoError(t, err)
	require.True(t, a.Allowed)
	st, err := g.State(ctx, "refuse")
	require.NoError(t, err)
	require.Equal(t, 2, st.Targets)

	a, err = g.Admit(ctx, approve, alertIn("a"), "a", "p0")
	require.NoError(t, err)
	require.True(t, a.Allowed)
	require.False(t, a.RequireApproval)
	a, err = g.Admit(ctx, approve, alertIn("b"), "b", "p1")
	require.NoError(t, err)
	require.True(t, a.Allowed, "onExceed: approve still starts the run")
	require.True(t, a.RequireApproval)
	require.Contains(t, a.Reason, "waits for a person's approval")
}

func TestGlobalLimitDefaultsAndDailyRate(t *testing.T) {
	g, _ := openGuard(t)
	ctx := context.Background()
	g.Configure(safety.Config{MaxConcurrentRuns: 2, Defaults: safety.Defaults{MaxRunsPerDay: 3}})
	one, two := runbook(t, "{}"), targeted(t, "other", "{}")
	a, err := g.Admit(ctx, one, nil, "k1", "g1")
	require.NoError(t, err)
	require.True(t, a.Allowed)
	a, err = g.Admit(ctx, two, alertIn("x"), "k2", "g2")
	require.NoError(t, err)
	require.True(t, a.Allowed)
	a, err = g.Admit(ctx, two, alertIn("y"), "k3", "g3")
	require.NoError(t, err)
	require.False(t, a.Allowed, "two runs going across runbooks")
	require.Equal(t, safety.CheckGlobalConcurrency, a.Check)
	st, err := g.State(ctx, "other")
	require.NoError(t, err)
	require.Equal(t, 1, st.Active, "the refused admission gave back its runbook place")
	// A redelivery of an admitted run is not refused by the global limit.
	a, err = g.Admit(ctx, one, nil, "k1", "g1")
	require.NoError(t, err)
	require.True(t, a.Allowed)

	require.NoError(t, g.Finished(ctx, "guarded", "g1", "succeeded", time.Now()))
	for i := range 2 {
		id := fmt.Sprint("d", i)
		a, err = g.Admit(ctx, one, nil, id, id)
		require.NoError(t, err)
		require.True(t, a.Allowed, i)
		require.NoError(t, g.Finished(ctx, "guarded", id, "succeeded", time.Now()))
	}
	a, err = g.Admit(ctx, one, nil, "d3", "d3")
	require.NoError(t, err)
	require.False(t, a.Allowed)
	require.Equal(t, safety.CheckDailyRate, a.Check, "the default maxRunsPerDay 3 applies to a runbook that sets none")
}

func TestMaintenanceWindow(t *testing.T) {
	g, _ := openGuard(t)
	ctx := context.Background()
	now := time.Now().UTC()
	g.Configure(safety.Config{MaintenanceWindows: []safety.MaintenanceWindow{
		{Name: "db upgrade", Start: now.Add(-time.Minute), End: now.Add(time.Hour), Runbooks: []string{"guarded"}},
		{Name: "later", Start: now.Add(time.Hour), End: now.Add(2 * time.Hour)},
	}})
	a, err := g.Admit(ctx, runbook(t, "{}"), nil, "k", "m1")
	require.NoError(t, err)
	require.True(t, a.Allowed)
	require.True(t, a.DryRun, "a run in a maintenance window changes nothing")
	require.Equal(t, safety.CheckMaintenance, a.Check)
	require.Contains(t, a.Reason, `maintenance window "db upgrade"`)
	a, err = g.Admit(ctx, targeted(t, "other", "{}"), alertIn("x"), "k", "m2")
	require.NoError(t, err)
	require.False(t, a.DryRun, "the window names only runbook guarded")

	bad := safety.Config{MaintenanceWindows: []safety.MaintenanceWindow{{Start: now, End: now.Add(-time.Hour)}}}
	err = bad.Validate()
	require.ErrorContains(t, err, "safety.maintenanceWindows[0].name is required")
	require.ErrorContains(t, err, "safety.maintenanceWindows[0].end must be after start")
}

type failingSilences struct{}

func (failingSilences) Matching(context.Context, map[string]string) (*safety.Silence, error) {
	return nil, errors.New("connection refused")
}

// Silences against a real Alertmanager: a matching active silence
// suppresses the run with who silenced it and why; others do not.
func TestAlertmanagerSilences(t *testing.T) {
	g, _ := openGuard(t)
	ctx := context.Background()
	am := testenv.StartAlertmanager(t, "http://127.0.0.1:1/unused", "unused")
	g.Silences = &safety.Alertmanager{URL: am.URL}
	out, err := exec.Command("amtool", "silence", "add", "--alertmanager.url="+am.URL, "--author=alice",
		"--comment=planned failover", "--duration=1h", `namespace=~"sh.p"`, "alertname=Down").CombinedOutput()
	require.NoError(t, err, "%s", out)

	rb := targeted(t, "silent", "{respectSilences: true}")
	a, err := g.Admit(ctx, rb, alertIn("shop"), "shop", "s1")
	require.NoError(t, err)
	require.False(t, a.Allowed)
	require.Equal(t, safety.CheckSilenced, a.Check)
	require.Contains(t, a.Reason, `by alice`)
	require.Contains(t, a.Reason, `"planned failover"`)
	a, err = g.Admit(ctx, rb, alertIn("cart"), "cart", "s2")
	require.NoError(t, err)
	require.True(t, a.Allowed, "the silence does not match namespace cart")
	// A runbook that does not respect silences acts (unless the config
	// checks them for all).
	a, err = g.Admit(ctx, targeted(t, "loud", "{}"), alertIn("shop"), "shop", "s3")
	require.NoError(t, err)
	require.True(t, a.Allowed)

	// Not knowing is an error (the alert is retried), never "not silenced".
	g.Silences = failingSilences{}
	_, err = g.Admit(ctx, rb, alertIn("shop"), "shop", "s4")
	require.ErrorContains(t, err, "check Alertmanager silences")
	g.Silences = &safety.Alertmanager{URL: am.URL + "/nope"}
	_, err = g.Admit(ctx, rb, alertIn("shop"), "shop", "s5")
	require.ErrorContains(t, err, fmt.Sprint(http.StatusNotFound))
}
