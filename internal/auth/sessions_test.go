package auth_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/internal/auth"
	"github.com/salve-sre/salve/internal/testenv"
)

// Sessions live in JetStream, shared by every API replica: what one
// replica creates another finds, a sign-out on one ends it everywhere, an
// expired session is gone, and the bucket holds no usable cookie values.
func TestSessionsInJetStream(t *testing.T) {
	_, js := testenv.NATS(t)
	ctx := context.Background()
	a, err := auth.OpenSessions(ctx, js, 1)
	require.NoError(t, err)
	b, err := auth.OpenSessions(ctx, js, 1) // another replica
	require.NoError(t, err)

	tok, hash, err := auth.NewToken()
	require.NoError(t, err)
	authn, err := auth.New([]auth.TokenConfig{{Subject: "olga", Role: "operator", SHA256: hash}})
	require.NoError(t, err)

	id, err := a.Create(ctx, auth.Session{TokenSHA256: auth.HashToken(tok), Subject: "olga", Expires: time.Now().Add(time.Hour)})
	require.NoError(t, err)
	require.NotContains(t, id, tok)
	s, err := b.Get(ctx, id)
	require.NoError(t, err)
	p, err := authn.ByHash(s.TokenSHA256)
	require.NoError(t, err)
	require.Equal(t, "olga", p.Subject)

	kv, err := js.KeyValue(ctx, auth.SessionsBucket)
	require.NoError(t, err)
	keys, err := kv.Keys(ctx)
	require.NoError(t, err)
	require.Len(t, keys, 1)
	require.NotEqual(t, id, keys[0], "the bucket keys are hashes, not cookie values")

	require.NoError(t, b.Delete(ctx, id))
	_, err = a.Get(ctx, id)
	require.ErrorIs(t, err, auth.ErrNoSession, "signed out on one replica, out on all")
	require.NoError(t, a.Delete(ctx, id), "ending an ended session is no error")

	old, err := a.Create(ctx, auth.Session{TokenSHA256: auth.HashToken(tok), Expires: time.Now().Add(-time.Second)})
	require.NoError(t, err)
	_, err = a.Get(ctx, old)
	require.ErrorIs(t, err, auth.ErrNoSession, "expired")
	_, err = a.Get(ctx, "made-up")
	require.ErrorIs(t, err, auth.ErrNoSession)

	// A session dies with its token: removed from the config, ByHash fails.
	_, hash2, err := auth.NewToken()
	require.NoError(t, err)
	other, err := auth.New([]auth.TokenConfig{{Subject: "val", Role: "viewer", SHA256: hash2}})
	require.NoError(t, err)
	_, err = other.ByHash(s.TokenSHA256)
	require.ErrorIs(t, err, auth.ErrBadToken)
}
