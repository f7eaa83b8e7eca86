package safety_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/internal/safety"
)

// A shadow runbook's runs take no place from real runs — no target, no
// global concurrency — but meet the checks a real run would meet, and
// keep their own cooldowns and limits, which promotion leaves behind.
func TestShadowAdmissionsTakeNothingFromRealRuns(t *testing.T) {
	g, _ := openGuard(t)
	g.Configure(safety.Config{MaxConcurrentRuns: 2})
	ctx := context.Background()
	shadow := targeted(t, "restart", `{mode: shadow, target: "prod/{{ .Params.ns }}", cooldown: 30m}`)
	real := targeted(t, "scale", `{target: "prod/{{ .Params.ns }}"}`)

	// The shadow run is admitted and holds nothing.
	a, err := g.Admit(ctx, shadow, alertIn("shop"), "shop", "wf-shadow")
	require.NoError(t, err)
	require.True(t, a.Allowed)
	require.Equal(t, "prod/shop", a.Target)
	holder, err := g.TargetHolder(ctx, "prod/shop")
	require.NoError(t, err)
	require.Nil(t, holder, "a shadow run takes no target")

	// A real run on the same target takes it at once, and the global
	// limit of 2 still has room for another real run.
	a, err = g.Admit(ctx, real, alertIn("shop"), "shop", "wf-real-1")
	require.NoError(t, err)
	require.True(t, a.Allowed)
	require.False(t, a.WaitForTarget)
	a, err = g.Admit(ctx, real, alertIn("cart"), "cart", "wf-real-2")
	require.NoError(t, err)
	require.True(t, a.Allowed)

	// Now a second shadow incident meets what a real run would: the global
	// limit is reached.
	a, err = g.Admit(ctx, shadow, alertIn("cart"), "cart", "wf-shadow-2")
	require.NoError(t, err)
	require.False(t, a.Allowed)
	require.Equal(t, safety.CheckGlobalConcurrency, a.Check)

	// With room again, it learns the target is held, and would wait.
	require.NoError(t, g.Finished(ctx, "scale", "wf-real-1", "succeeded", time.Now()))
	a, err = g.Admit(ctx, shadow, alertIn("cart"), "cart", "wf-shadow-2")
	require.NoError(t, err)
	require.True(t, a.Allowed)
	require.Equal(t, safety.CheckTargetLocked, a.Check)
	require.Contains(t, a.Reason, "a real run would wait")
	require.False(t, a.WaitForTarget, "a shadow run never waits: it acts on nothing")

	// The shadow run's finish starts its cooldown in the shadow space only.
	require.NoError(t, g.Finished(ctx, "restart", "wf-shadow", "succeeded", time.Now()))
	a, err = g.Admit(ctx, shadow, alertIn("shop"), "shop", "wf-shadow-3")
	require.NoError(t, err)
	require.False(t, a.Allowed)
	require.Equal(t, safety.CheckCooldown, a.Check)
	// Promoted (the same runbook in enforce mode), it starts clean.
	promoted := targeted(t, "restart", `{target: "prod/{{ .Params.ns }}", cooldown: 30m}`)
	require.NoError(t, g.Finished(ctx, "scale", "wf-real-2", "succeeded", time.Now()))
	a, err = g.Admit(ctx, promoted, alertIn("shop"), "shop", "wf-promoted")
	require.NoError(t, err)
	require.True(t, a.Allowed, "%+v", a)
	st, err := g.State(ctx, "restart")
	require.NoError(t, err)
	require.Equal(t, 1, st.Active, "the shadow runs left no active places behind in the real state")
}

// A shadow run and a real run of one incident (a runbook demoted or
// promoted while a run goes on) have IDs of their own, and nothing the
// shadow run's admission, redelivery, release or finish does frees what
// the real run holds — nor takes back the shadow run's own place.
func TestShadowAndRealRunsOfOneIncidentKeepApart(t *testing.T) {
	g, _ := openGuard(t)
	g.Configure(safety.Config{MaxConcurrentRuns: 5})
	ctx := context.Background()
	real := targeted(t, "restart", `{target: "prod/{{ .Params.ns }}", maxConcurrent: 1}`)
	shadow := targeted(t, "restart", `{mode: shadow, target: "prod/{{ .Params.ns }}", maxConcurrent: 1, targetLock: {onBusy: suppress}}`)
	realID, shadowID := real.WorkflowID("shop"), shadow.WorkflowID("shop")
	require.NotEqual(t, realID, shadowID)

	a, err := g.Admit(ctx, shadow, alertIn("shop"), "shop", shadowID)
	require.NoError(t, err)
	require.True(t, a.Allowed)
	a, err = g.Admit(ctx, real, alertIn("shop"), "shop", realID)
	require.NoError(t, err)
	require.True(t, a.Allowed, "the shadow run took neither the target nor a place")
	require.False(t, a.WaitForTarget)

	// The shadow alert redelivered, now that a real run holds the target
	// (which a new shadow admission would be refused for): the same
	// admission, and the shadow run keeps its place.
	again, err := g.Admit(ctx, shadow, alertIn("shop"), "shop", shadowID)
	require.NoError(t, err)
	require.True(t, again.Allowed)
	require.False(t, again.Reserved)
	other, err := g.Admit(ctx, shadow, alertIn("cart"), "cart", shadow.WorkflowID("cart"))
	require.NoError(t, err)
	require.False(t, other.Allowed, "the shadow run still counts against its own maxConcurrent")
	require.Equal(t, safety.CheckConcurrency, other.Check)

	// The shadow run's release and finish leave the real run's holdings.
	require.NoError(t, g.Release(ctx, "restart", shadowID))
	require.NoError(t, g.Finished(ctx, "restart", shadowID, "succeeded", time.Now()))
	holder, err := g.TargetHolder(ctx, "prod/shop")
	require.NoError(t, err)
	require.NotNil(t, holder)
	require.Equal(t, realID, holder.WorkflowID, "the real run still holds its target")
	st, err := g.State(ctx, "restart")
	require.NoError(t, err)
	require.Equal(t, 1, st.Active, "the real run still holds its place")
}
