package snapshot_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/activities"
	"github.com/salve-sre/salve/internal/snapshot"
	"github.com/salve-sre/salve/internal/testenv"
	"github.com/salve-sre/salve/runbooks"
)

const rbYAML = `apiVersion: salve/v1
kind: Runbook
metadata: {name: s}
spec:
  params:
    n: {type: int, default: "3"}
  steps:
    - {name: a, action: http.request, with: {url: 'http://x.internal/a', expectStatus: [200, 204]}}
`

func parse(t *testing.T, doc string) *runbooks.Runbook {
	reg, err := activities.NewRegistry()
	require.NoError(t, err)
	rb, err := runbooks.Parse("s.yaml", []byte(doc), reg)
	require.NoError(t, err)
	return rb
}

func TestSignVerify(t *testing.T) {
	k := snapshot.Random()
	rb := parse(t, rbYAML)
	sig, err := k.Sign(*rb)
	require.NoError(t, err)
	require.NoError(t, k.Verify(*rb, sig))

	// Any change to the steps fails, and so does another key or no
	// signature.
	forged := parse(t, rbYAML)
	forged.Spec.Steps[0].With["url"] = "http://attacker.example/a"
	require.ErrorIs(t, k.Verify(*forged, sig), snapshot.ErrForged)
	require.ErrorIs(t, snapshot.Random().Verify(*rb, sig), snapshot.ErrForged)
	require.ErrorIs(t, k.Verify(*rb, ""), snapshot.ErrForged)
	require.ErrorIs(t, k.Verify(*rb, "zz"), snapshot.ErrForged)

	_, err = snapshot.NewKey([]byte("short"))
	require.Error(t, err)
}

// Processes that share NATS get the same generated key; a configured key
// wins.
func TestLoadSharesTheGeneratedKey(t *testing.T) {
	_, js := testenv.NATS(t)
	ctx := context.Background()
	a, err := snapshot.Load(ctx, js, "", 1)
	require.NoError(t, err)
	b, err := snapshot.Load(ctx, js, "", 1)
	require.NoError(t, err)
	rb := parse(t, rbYAML)
	sig, err := a.Sign(*rb)
	require.NoError(t, err)
	require.NoError(t, b.Verify(*rb, sig))

	c, err := snapshot.Load(ctx, js, "a-configured-key-of-at-least-32-bytes!!", 1)
	require.NoError(t, err)
	require.ErrorIs(t, c.Verify(*rb, sig), snapshot.ErrForged)
}
