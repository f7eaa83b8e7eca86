package app_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/internal/api"
	"github.com/salve-sre/salve/internal/app"
)

// TestDevServesTheDashboard checks the wiring of the web dashboard in
// `salve dev`: / leads to it, its pages need a session, a session made
// with the dev admin token works on the pages and on the API (with the
// CSRF header for POSTs), and the API keeps its own answers beside it.
// The dashboard's behaviour in a browser is tested in internal/dashboard.
func TestDevServesTheDashboard(t *testing.T) {
	var banner bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	d, err := app.Start(ctx, app.Config{
		DataDir: t.TempDir(), Listen: "127.0.0.1:0", WebhookToken: "test-token-6f1c0d9e7a3b42c8a6e1f0d4b7c9e2a1", RunbooksDir: t.TempDir(),
		TemporalPort: -1, NATSPort: -1, UIPort: -1, DisableUI: true, Version: "test", Out: &banner,
		Log: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	cancel()
	require.NoError(t, err)
	t.Cleanup(d.Close)
	require.Contains(t, banner.String(), "Dashboard     "+d.URL+"/ui/\n")

	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	send := func(method, path, body string, hdr map[string]string, cookie *http.Cookie) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest(method, d.URL+path, strings.NewReader(body))
		require.NoError(t, err)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		if cookie != nil {
			req.AddCookie(cookie)
		}
		resp, err := noFollow.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}

	resp, _ := send("GET", "/", "", nil, nil)
	require.Equal(t, http.StatusFound, resp.StatusCode)
	require.Equal(t, "/ui/", resp.Header.Get("Location"))

	resp, _ = send("GET", "/ui/runs", "", nil, nil)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Equal(t, "/ui/login?next=%2Fui%2Fruns", resp.Header.Get("Location"))

	resp, body := send("GET", "/ui/login", "", nil, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, body, `action="/ui/login"`)
	require.Equal(t, "default-src 'self'; img-src 'self' data:; style-src 'self'", resp.Header.Get("Content-Security-Policy"))

	resp, _ = send("POST", "/ui/login", url.Values{"token": {d.AdminToken}, "next": {"/ui/runbooks"}}.Encode(),
		map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, nil)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Equal(t, "/ui/runbooks", resp.Header.Get("Location"))
	var session *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == api.SessionCookie {
			session = c
		}
	}
	require.NotNil(t, session)
	require.True(t, session.HttpOnly)

	resp, body = send("GET", "/ui/", "", nil, session)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, body, `id="toil-saved-hours" data-seconds="0"`, "the dev stats are wired")
	resp, body = send("GET", "/ui/audit", "", nil, session)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, body, "Chain verified: OK")

	// The same session works on the API; a POST needs the CSRF header.
	resp, _ = send("GET", "/v1/runs", "", nil, session)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	resp, _ = send("POST", "/v1/runbooks/reload", "", nil, session)
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	resp, _ = send("POST", "/v1/runbooks/reload", "", map[string]string{api.CSRFHeader: "1"}, session)
	require.Equal(t, http.StatusOK, resp.StatusCode)

	// The API answers beside the dashboard as before.
	resp, _ = send("GET", "/healthz", "", nil, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	resp, body = send("GET", "/nope", "", nil, nil)
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	require.Contains(t, body, "no such endpoint")
}
