package auth_test

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/internal/auth"
)

func TestAuthenticate(t *testing.T) {
	tokA, hashA, err := auth.NewToken()
	require.NoError(t, err)
	tokB, hashB, err := auth.NewToken()
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(tokA, auth.TokenPrefix))
	require.NotEqual(t, tokA, tokB)
	require.Equal(t, hashA, auth.HashToken(tokA))
	require.NotContains(t, hashA, tokA[len(auth.TokenPrefix):], "the hash does not contain the token")

	a, err := auth.New([]auth.TokenConfig{
		{Subject: "alice", Role: "operator", Groups: []string{"sre"}, SHA256: hashA},
		{Subject: "vera", Role: "viewer", SHA256: strings.ToUpper(hashB)},
	})
	require.NoError(t, err)

	for _, tc := range []struct {
		header string
		want   string
		err    error
	}{
		{"Bearer " + tokA, "alice", nil},
		{"bearer " + tokB, "vera", nil},
		{"Bearer  " + tokA + " ", "alice", nil},
		{"", "", auth.ErrNoToken},
		{"Basic " + tokA, "", auth.ErrNoToken},
		{"Bearer ", "", auth.ErrNoToken},
		{"Bearer " + tokA + "x", "", auth.ErrBadToken},
		{"Bearer " + hashA, "", auth.ErrBadToken}, // the stored hash is not a token
	} {
		r := httptest.NewRequest("GET", "/", nil)
		if tc.header != "" {
			r.Header.Set("Authorization", tc.header)
		}
		p, err := a.Authenticate(r)
		require.ErrorIs(t, err, tc.err, tc.header)
		require.Equal(t, tc.want, p.Subject, tc.header)
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Authorization", "Bearer "+tokA)
	p, _ := a.Authenticate(r)
	require.Equal(t, auth.RoleOperator, p.Role)
	require.Equal(t, []string{"sre"}, p.Groups)
	require.True(t, p.Can(auth.RoleViewer))
	require.True(t, p.Can(auth.RoleOperator))
	require.False(t, p.Can(auth.RoleAdmin))
}

func TestConfigErrors(t *testing.T) {
	_, hash, _ := auth.NewToken()
	_, err := auth.New([]auth.TokenConfig{
		{Subject: "", Role: "operator", SHA256: hash},
		{Subject: "bob", Role: "superuser", SHA256: "salve_abc"},
		{Subject: "carol", Role: "admin", SHA256: hash},
	})
	require.Error(t, err)
	msg := err.Error()
	require.Contains(t, msg, "auth.tokens[0].subject: required")
	require.Contains(t, msg, `auth.tokens[1] (bob).role: unknown role "superuser": want one of viewer, operator, admin`)
	require.Contains(t, msg, "auth.tokens[1] (bob).sha256: want the 64 hex digits")
	require.Contains(t, msg, "auth.tokens[2] (carol).sha256: the same token as auth.tokens[0]")
}

func TestRoles(t *testing.T) {
	for _, name := range auth.RoleNames {
		r, err := auth.ParseRole(name)
		require.NoError(t, err)
		require.Equal(t, name, r.String())
	}
	require.Less(t, auth.RoleViewer, auth.RoleOperator)
	require.Less(t, auth.RoleOperator, auth.RoleAdmin)
}

func TestCheckWebhookToken(t *testing.T) {
	for _, weak := range []string{"", "tok", "test-token", "storm", strings.Repeat("a", 100), strings.Repeat("abc123", 20), "0123456789abcdef0123456789ab"} {
		err := auth.CheckWebhookToken(weak)
		require.Error(t, err, "%q", weak)
		require.Contains(t, err.Error(), "openssl rand -hex 32")
	}
	tok, _, err := auth.NewToken()
	require.NoError(t, err)
	for _, strong := range []string{tok, "3f9c2a7e5b1d4c8f9a0e6b2d7c1f4a8e", "Xk9#mP2$vL7@qR4!wN8&zT5"} {
		require.NoError(t, auth.CheckWebhookToken(strong), strong)
	}
}
