package dashboard_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/internal/api"
	"github.com/salve-sre/salve/internal/dashboard"
	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/internal/runs"
	"github.com/salve-sre/salve/internal/stats"
)

func postLogin(fx *fixture, form url.Values, mod func(*http.Request)) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/ui/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if mod != nil {
		mod(req)
	}
	rec := httptest.NewRecorder()
	fx.h.ServeHTTP(rec, req)
	return rec
}

func sessionCookie(t *testing.T, rec *httptest.ResponseRecorder) *http.Cookie {
	t.Helper()
	for _, c := range rec.Result().Cookies() {
		if c.Name == api.SessionCookie {
			return c
		}
	}
	return nil
}

func TestLogin(t *testing.T) {
	fx := newFixture(t)

	t.Run("the form", func(t *testing.T) {
		rec := fx.get(t, "/ui/login?next=/ui/runs", "")
		require.Equal(t, http.StatusOK, rec.Code)
		body := rec.Body.String()
		require.Contains(t, body, `<form method="post" action="/ui/login"`)
		require.Contains(t, body, `name="next" value="/ui/runs"`)
		require.Contains(t, body, `type="password" id="token" name="token"`)
	})

	t.Run("a bad token shows the form again with an error and sets no cookie", func(t *testing.T) {
		rec := postLogin(fx, url.Values{"token": {"salve_not-a-real-token"}, "next": {"/ui/runs"}}, nil)
		require.Equal(t, http.StatusUnauthorized, rec.Code)
		require.Contains(t, rec.Body.String(), `id="login-error"`)
		require.Contains(t, rec.Body.String(), "That token is not valid")
		require.Contains(t, rec.Body.String(), `name="next" value="/ui/runs"`)
		require.Nil(t, sessionCookie(t, rec))
		require.Contains(t, fx.recorder.actions(), domain.ActionAuthDenied, "a failed sign-in is audited")
		require.NotContains(t, fx.logs.String(), "salve_not-a-real-token")
	})

	t.Run("an empty token asks for one", func(t *testing.T) {
		rec := postLogin(fx, url.Values{"token": {""}}, nil)
		require.Equal(t, http.StatusUnauthorized, rec.Code)
		require.Contains(t, rec.Body.String(), "Paste an API token.")
	})

	t.Run("a good token sets an HttpOnly SameSite=Strict session cookie and redirects to next", func(t *testing.T) {
		rec := postLogin(fx, url.Values{"token": {fx.tok.operator}, "next": {"/ui/runs?status=failed"}}, nil)
		require.Equal(t, http.StatusSeeOther, rec.Code, rec.Body.String())
		require.Equal(t, "/ui/runs?status=failed", rec.Header().Get("Location"))
		c := sessionCookie(t, rec)
		require.NotNil(t, c)
		require.NotContains(t, c.Value, fx.tok.operator, "the cookie holds a session ID, never the token")
		require.Len(t, c.Value, 43, "256 random bits")
		require.True(t, c.HttpOnly)
		require.Equal(t, http.SameSiteStrictMode, c.SameSite)
		require.Equal(t, "/", c.Path)
		require.Equal(t, 12*3600, c.MaxAge)
		require.False(t, c.Secure, "plain HTTP: a Secure cookie would never come back")
		require.NotContains(t, fx.logs.String(), fx.tok.operator, "the token is never logged")
		require.Contains(t, fx.logs.String(), "subject=olga")
	})

	t.Run("over TLS the cookie is Secure", func(t *testing.T) {
		rec := postLogin(fx, url.Values{"token": {fx.tok.viewer}}, func(r *http.Request) { r.TLS = &tls.ConnectionState{} })
		require.Equal(t, http.StatusSeeOther, rec.Code)
		require.Equal(t, "/ui/", rec.Header().Get("Location"))
		require.True(t, sessionCookie(t, rec).Secure)
	})

	t.Run("behind a TLS proxy the cookie is Secure only if the proxy is trusted", func(t *testing.T) {
		viaProxy := func(r *http.Request) { r.RemoteAddr = "10.1.2.3:5555"; r.Header.Set("X-Forwarded-Proto", "https") }
		rec := postLogin(fx, url.Values{"token": {fx.tok.viewer}}, viaProxy)
		require.Equal(t, http.StatusSeeOther, rec.Code)
		require.False(t, sessionCookie(t, rec).Secure, "anyone can send X-Forwarded-Proto")
		fx.srv.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
		defer func() { fx.srv.TrustedProxies = nil }()
		rec = postLogin(fx, url.Values{"token": {fx.tok.viewer}}, viaProxy)
		require.True(t, sessionCookie(t, rec).Secure)
	})

	t.Run("an https public URL makes the cookie Secure", func(t *testing.T) {
		fx.srv.PublicURL = "https://salve.example.com"
		defer func() { fx.srv.PublicURL = "" }()
		rec := postLogin(fx, url.Values{"token": {fx.tok.viewer}}, nil)
		require.True(t, sessionCookie(t, rec).Secure)
	})

	t.Run("next never leaves the dashboard", func(t *testing.T) {
		for _, next := range []string{
			"https://evil.example/ui/", "//evil.example/ui/", "/\\evil.example", "http:evil.example", "/v1/runs", "/ui/../v1/runs",
			"/ui/%2e%2e/v1/runs", "javascript:alert(1)", "/ui/login", "\t//evil.example", "/uix",
		} {
			rec := postLogin(fx, url.Values{"token": {fx.tok.viewer}, "next": {next}}, nil)
			require.Equal(t, http.StatusSeeOther, rec.Code, next)
			require.Equal(t, "/ui/", rec.Header().Get("Location"), "next=%q", next)
		}
		rec := fx.get(t, "/ui/login?next="+url.QueryEscape("https://evil.example/"), "")
		require.Contains(t, rec.Body.String(), `name="next" value="/ui/"`)
	})

	t.Run("a sign-in form posted from another site is refused", func(t *testing.T) {
		rec := postLogin(fx, url.Values{"token": {fx.tok.viewer}}, func(r *http.Request) { r.Header.Set("Sec-Fetch-Site", "cross-site") })
		require.Equal(t, http.StatusForbidden, rec.Code)
		require.Nil(t, sessionCookie(t, rec))
		rec = postLogin(fx, url.Values{"token": {fx.tok.viewer}}, func(r *http.Request) { r.Header.Set("Origin", "https://evil.example") })
		require.Equal(t, http.StatusForbidden, rec.Code)
		rec = postLogin(fx, url.Values{"token": {fx.tok.viewer}}, func(r *http.Request) {
			r.Header.Set("Origin", "http://"+r.Host)
			r.Header.Set("Sec-Fetch-Site", "same-origin")
		})
		require.Equal(t, http.StatusSeeOther, rec.Code)
	})

	t.Run("signed in, the login page goes to next", func(t *testing.T) {
		rec := fx.get(t, "/ui/login?next=/ui/audit", fx.tok.viewer)
		require.Equal(t, http.StatusSeeOther, rec.Code)
		require.Equal(t, "/ui/audit", rec.Header().Get("Location"))
	})

	t.Run("guessing is rate-limited per address", func(t *testing.T) {
		fx := newFixture(t)
		from := func(r *http.Request) { r.RemoteAddr = "192.0.2.7:4242" }
		for range 10 {
			require.Equal(t, http.StatusUnauthorized, postLogin(fx, url.Values{"token": {"guess"}}, from).Code)
		}
		rec := postLogin(fx, url.Values{"token": {fx.tok.operator}}, from)
		require.Equal(t, http.StatusTooManyRequests, rec.Code)
		require.Nil(t, sessionCookie(t, rec))
		// Others are not locked out.
		require.Equal(t, http.StatusSeeOther, postLogin(fx, url.Values{"token": {fx.tok.operator}}, nil).Code)
		// The audit log got one record, not ten: at most one a second.
		n := 0
		for _, a := range fx.recorder.actions() {
			if a == domain.ActionAuthDenied {
				n++
			}
		}
		require.Equal(t, 1, n)
	})
}

// Signing out ends the session on the server: the old cookie, replayed,
// no longer opens any page or API call.
func TestLogout(t *testing.T) {
	fx := newFixture(t)
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		id := fx.session(t, fx.tok.operator)
		withCookie := func(method, path string) *httptest.ResponseRecorder {
			req := httptest.NewRequest(method, path, nil)
			req.AddCookie(&http.Cookie{Name: api.SessionCookie, Value: id})
			rec := httptest.NewRecorder()
			fx.h.ServeHTTP(rec, req)
			return rec
		}
		require.Equal(t, http.StatusOK, withCookie(http.MethodGet, "/ui/runs").Code)
		rec := withCookie(method, "/ui/logout")
		require.Equal(t, http.StatusSeeOther, rec.Code)
		require.Equal(t, "/ui/login", rec.Header().Get("Location"))
		c := sessionCookie(t, rec)
		require.NotNil(t, c)
		require.Empty(t, c.Value)
		require.Less(t, c.MaxAge, 0)

		rec = withCookie(http.MethodGet, "/ui/runs")
		require.Equal(t, http.StatusSeeOther, rec.Code, "the old cookie is dead")
		req := httptest.NewRequest(http.MethodGet, "/v1/runs", nil)
		req.AddCookie(&http.Cookie{Name: api.SessionCookie, Value: id})
		apiRec := httptest.NewRecorder()
		fx.srv.Handler().ServeHTTP(apiRec, req)
		require.Equal(t, http.StatusUnauthorized, apiRec.Code, "for the API too")
	}
}

func TestSignedOutPagesRedirectToLogin(t *testing.T) {
	fx := newFixture(t)
	for _, path := range []string{
		"/ui/", "/ui/?window=30d", "/ui/runs?status=failed", "/ui/runs/" + url.PathEscape(wfWaiting), "/ui/approvals", "/ui/runbooks",
		"/ui/runbooks/restart-crashlooping", "/ui/audit", "/ui/incidents/shop%2Fapi", "/ui/nope",
	} {
		for _, tok := range []string{"", "salve_revoked-or-unknown"} {
			rec := fx.get(t, path, tok)
			require.Equal(t, http.StatusSeeOther, rec.Code, path)
			loc, err := url.Parse(rec.Header().Get("Location"))
			require.NoError(t, err)
			require.Equal(t, "/ui/login", loc.Path)
			require.Equal(t, path, loc.Query().Get("next"))
			if tok != "" {
				c := sessionCookie(t, rec)
				require.NotNil(t, c, "an invalid session cookie is cleared")
				require.Less(t, c.MaxAge, 0)
			}
		}
	}
}

func TestSecurityHeaders(t *testing.T) {
	fx := newFixture(t)
	for _, tc := range []struct{ path, token string }{
		{"/ui/login", ""}, {"/ui/", ""}, {"/ui/", fx.tok.operator}, {"/ui/runs", fx.tok.viewer}, {"/ui/static/app.css", ""},
		{"/ui/static/app.js", ""}, {"/ui/runbooks/nope", fx.tok.viewer},
	} {
		rec := fx.get(t, tc.path, tc.token)
		h := rec.Header()
		require.Equal(t, "default-src 'self'; img-src 'self' data:; style-src 'self'", h.Get("Content-Security-Policy"), tc.path)
		require.Equal(t, "DENY", h.Get("X-Frame-Options"), tc.path)
		require.Equal(t, "nosniff", h.Get("X-Content-Type-Options"), tc.path)
		require.Equal(t, "same-origin", h.Get("Referrer-Policy"), tc.path)
	}
}

func TestStaticAssets(t *testing.T) {
	fx := newFixture(t)
	page := fx.get(t, "/ui/login", "").Body.String()
	for _, name := range []string{"app.css", "app.js"} {
		i := strings.Index(page, "/ui/static/"+name+"?v=")
		require.GreaterOrEqual(t, i, 0, "%s is linked with its version", name)
		link := page[i:]
		link = link[:strings.IndexByte(link, '"')]
		rec := fx.get(t, strings.ReplaceAll(link, "&amp;", "&"), "")
		require.Equal(t, http.StatusOK, rec.Code)
		require.Contains(t, rec.Header().Get("Cache-Control"), "immutable")
		require.NotEmpty(t, rec.Header().Get("ETag"))
		rec = fx.get(t, "/ui/static/"+name, "")
		require.Equal(t, "no-cache", rec.Header().Get("Cache-Control"))
	}
	require.Equal(t, "text/css; charset=utf-8", fx.get(t, "/ui/static/app.css", "").Header().Get("Content-Type"))
	require.Equal(t, "text/javascript; charset=utf-8", fx.get(t, "/ui/static/app.js", "").Header().Get("Content-Type"))
	require.Equal(t, http.StatusNotFound, fx.get(t, "/ui/static/nope.js", "").Code)
	// No inline script or style anywhere: the CSP would block it.
	for _, path := range []string{"/ui/", "/ui/runs/" + url.PathEscape(wfWaiting), "/ui/runbooks/restart-crashlooping", "/ui/approvals", "/ui/audit"} {
		body := fx.get(t, path, fx.tok.admin).Body.String()
		require.NotContains(t, body, "<style", path)
		require.NotContains(t, body, " style=", path)
		require.NotContains(t, body, " onclick=", path)
		require.Equal(t, 1, strings.Count(body, "<script"), path)
	}
}

// page asserts a page renders with code and contains every want.
func page(t *testing.T, fx *fixture, path, token string, code int, want ...string) string {
	t.Helper()
	rec := fx.get(t, path, token)
	body := rec.Body.String()
	require.Equal(t, code, rec.Code, "%s: %s", path, body)
	require.Equal(t, "text/html; charset=utf-8", rec.Header().Get("Content-Type"))
	for _, w := range want {
		require.Contains(t, body, w, path)
	}
	return body
}

func TestPagesForAnOperator(t *testing.T) {
	fx := newFixture(t)
	op := fx.tok.operator
	escWaiting := url.PathEscape(wfWaiting)

	t.Run("header names the subject and role", func(t *testing.T) {
		page(t, fx, "/ui/runs", op, 200, `<span id="who-subject">olga</span>`, `id="who-role">operator</span>`, `action="/ui/logout"`)
	})

	t.Run("overview", func(t *testing.T) {
		body := page(t, fx, "/ui/", op, 200,
			`<span id="toil-saved-hours" data-seconds="1800">0.5</span> h`,
			`id="success-rate">75%`, `id="automation-rate">40%`, `id="coverage">50%`,
			`<span id="mttr-automated">1m 30s</span> / <span id="mttr-manual">45m 00s</span>`, `id="alert-to-action">1.5s`,
			`<a href="/ui/approvals" id="pending-approvals">2</a>`, `no runbook declares one`,
			`Toil saved per day (hours)`, `Runs and failed runs per day`, `<svg viewBox="0 0 640 220"`, `<rect class="bar"`, `<polyline class="series s-runs"`,
			`id="toil-by-runbook"`, `href="/ui/runbooks/restart-crashlooping">restart-crashlooping</a>`, `id="toil-by-team"`,
			`id="top-failing"`, `id="noisiest-alerts"`, `<td>KubeDeploymentCrashLooping</td><td class="num">4</td><td class="num">2</td><td class="num">1h 00m</td>`,
			`<td>DiskFull</td><td class="num">1</td><td class="num">0</td><td class="num">n/a</td>`,
			`href="/ui/?window=7d" class="active"`)
		bars := func(days int) int {
			now := time.Now()
			return len(testReport(now.Add(-time.Duration(days)*24*time.Hour), now).Days) + 2 // and one in each toil table
		}
		require.Equal(t, bars(7), strings.Count(body, `<rect class="bar" x=`), "one bar per day of the window")
		body = page(t, fx, "/ui/?window=30d", op, 200, `href="/ui/?window=30d" class="active"`, "4 runs, 1 failed, 5 alerts")
		require.Equal(t, bars(30), strings.Count(body, `<rect class="bar" x=`))
		page(t, fx, "/ui/?window=bogus", op, 200, `href="/ui/?window=7d" class="active"`)
	})

	t.Run("overview shows what is unwell", func(t *testing.T) {
		fx := newFixture(t)
		fx.srv.Checks = []api.Check{
			{Name: "nats", Check: func(context.Context) error { return nil }},
			{Name: "backlog", Check: func(context.Context) error { return nil },
				Warn: func(context.Context) string {
					return "recorder is behind: 12 accepted audit events not yet recorded, the oldest 2m0s old"
				}},
			{Name: "worker", Check: func(context.Context) error { return errors.New("no worker polls the task queue") }},
		}
		body := page(t, fx, "/ui/", fx.tok.operator, 200,
			`<p class="msg msg-warn" data-check="backlog" role="status">backlog: recorder is behind: 12 accepted audit events not yet recorded, the oldest 2m0s old</p>`,
			`<p class="msg msg-error" data-check="worker" role="status">worker: no worker polls the task queue</p>`)
		require.NotContains(t, body, `data-check="nats"`, "a healthy check without warning is not shown")
	})

	t.Run("overview without stats says so", func(t *testing.T) {
		fx := newFixture(t)
		op := fx.tok.operator
		fx.srv.Stats = nil
		page(t, fx, "/ui/", op, 200, `id="stats-error"`, "Statistics are not available on this server")
		fx.srv.Stats = func(context.Context, time.Time, time.Time) (stats.Report, error) { return stats.Report{}, errStats }
		body := page(t, fx, "/ui/", op, 200, `id="stats-error"`, "Cannot compute the figures: audit store: database is locked")
		require.NotContains(t, body, "toil-saved-hours")
	})

	t.Run("runs list with filters and pages", func(t *testing.T) {
		body := page(t, fx, "/ui/runs?runbook=restart-crashlooping&status=running&since=2h", op, 200,
			`href="/ui/runs/`+escWaiting+`?runId=`+runWait+`"`, `<span class="st st-running">running</span>`,
			`<option value="restart-crashlooping" selected>`, `<option value="running" selected>`, `value="2h"`, `id="next-page"`)
		f := fx.runs.filters[len(fx.runs.filters)-1]
		require.Equal(t, "restart-crashlooping", f.Runbook)
		require.Equal(t, "running", f.Status)
		require.WithinDuration(t, time.Now().Add(-2*time.Hour), f.Since, time.Minute)
		i := strings.Index(body, `href="/ui/runs?`)
		next := body[i+6:]
		next = strings.ReplaceAll(next[:strings.IndexByte(next, '"')], "&amp;", "&")
		require.Contains(t, next, "pageToken=")
		body = page(t, fx, next, op, 200, "shop/done", "« first page")
		require.Equal(t, "page-2", string(fx.runs.tokens[len(fx.runs.tokens)-1]))
		require.NotContains(t, body, `id="next-page"`)
		page(t, fx, "/ui/runs?since=yesterday", op, 400, "since &#34;yesterday&#34;: want a duration")
		page(t, fx, "/ui/runs?incidentKey=x", op, 400, "incidentKey needs runbook too")
		page(t, fx, "/ui/runs?pageToken=***", op, 400, "The page token is not one from a previous page")
	})

	t.Run("run detail", func(t *testing.T) {
		body := page(t, fx, "/ui/runs/"+escWaiting+"?runId="+runWait, op, 200,
			`data-run="salve/restart-crashlooping/shop/api"`, `data-run-id="`+runWait+`"`, `data-running="true"`, `data-after="7"`,
			`href="http://127.0.0.1:8233/namespaces/default/workflows/salve%2Frestart-crashlooping%2Fshop%2Fapi/`+runWait+`/history"`,
			`href="/ui/incidents/shop%2Fapi"`, "alert KubeDeploymentCrashLooping",
			`<tr class="step" data-step="before">`, `<code>kubernetes.get</code>`, `<span class="st st-ok">succeeded</span>`, `<svg class="gantt"`,
			`&#34;replicas&#34;: 3`, `<span class="st st-running">waiting_approval</span>`,
			"Waiting for approval of step <code>restart</code>", `data-action="decide" data-run="salve/restart-crashlooping/shop/api" data-run-id="`+runWait+`" data-step="restart"`,
			`value="approve"`, `value="reject"`, `name="reason"`, `data-action="cancel"`,
			`id="decisions"`, "looked at the dashboards",
			`id="lease-table"`, leaseHash, "salve-shop", "credential.issued", "credential.revoked",
			`id="run-audit"`, "trigger.matched", "live updates need JavaScript",
			`<dt>Approval required</dt><dd id="approval-reason">SLO shop-availability: slow burn (burn rate 1h 4.00, 1d 3.33; 52.4% of the budget left)`)
		require.NotContains(t, body, "from another run", "records of other runs of the incident are left out")
		// The unescaped form of the ID works too, like in the API.
		page(t, fx, "/ui/runs/"+wfWaiting, op, 200, `data-run="salve/restart-crashlooping/shop/api"`)

		body = page(t, fx, "/ui/runs/"+url.PathEscape(wfFailed), op, 200, `data-running="false"`, "launched by olga", "pods crash-loop after the deploy",
			"rollout of deployment shop/api did not finish in 5m0s", "On failure", "tell_owners", `id="run-error"`, "This run used no issued credentials.")
		require.NotContains(t, body, `data-action="cancel"`, "a finished run cannot be cancelled")
		require.NotContains(t, body, `data-action="decide"`)
	})

	t.Run("approvals inbox", func(t *testing.T) {
		body := page(t, fx, "/ui/approvals", op, 200, `id="approvals-table"`,
			`<tr class="approval" data-run="salve/restart-crashlooping/shop/api">`, `<code>restart</code>`,
			`data-action="decide" data-run="salve/restart-crashlooping/shop/api" data-run-id="`+runWait+`" data-step="restart"`,
			"then fail", "then continue",
			// olga launched shop/mine: she may not approve it herself.
			"olga launched this run and may not decide its approval (runbook restart-crashlooping does not set access.allowSelfApproval).")
		require.Equal(t, 1, strings.Count(body, `data-action="decide"`))
		fx.runs.pending = []runs.PendingApproval{}
		page(t, fx, "/ui/approvals", op, 200, `id="no-approvals"`)
	})

	t.Run("runbook list", func(t *testing.T) {
		page(t, fx, "/ui/runbooks", op, 200, `href="/ui/runbooks/restart-crashlooping"`, "Rollout-restart a crash-looping Deployment",
			`<code class="matcher">alertname=&#34;KubeDeploymentCrashLooping&#34;</code>`, "manual only", "platform")
	})

	t.Run("runbook detail with a launch form generated from its params", func(t *testing.T) {
		body := page(t, fx, "/ui/runbooks/restart-crashlooping", op, 200,
			`id="runbook-description">Rollout-restart`, "owned by <strong>platform</strong>",
			`<code class="matcher">severity=~&#34;warning|critical&#34;</code>`,
			`<dt>cooldown</dt><dd>30m0s</dd>`, `<dt>max runs per hour</dt><dd>3</dd>`, "3 failures within 1h0m0s (not enforced in this version)",
			`<dt>approvers</dt><dd>bob, group:sre</dd>`, `<dt>kubernetes</dt><dd>Vault role salve-{{ .Params.env }}, TTL 10m0s</dd>`,
			`id="rb-runs">2</div>`, `id="rb-success">50%</div>`, `id="rb-toil">0.5 h</div>`,
			`id="launch-form"`, `data-runbook="restart-crashlooping"`,
			// enum → select with the default chosen
			`<select id="param-env" data-param="env">`, `<option value="staging" selected>staging</option>`, `<option value="production">production</option>`,
			// bool → checkbox
			`<input type="checkbox" id="param-force" data-param="force">`,
			// int → number with bounds and default
			`<input type="number" step="1" id="param-replicas" data-param="replicas" value="3" min="1" max="20">`,
			// duration → text with a pattern
			`<input type="text" id="param-verifyFor" data-param="verifyFor" value="2m" pattern=`,
			// required strings are marked
			`<label for="param-namespace">namespace <span class="req" title="required">*</span>`,
			`<input type="text" id="param-namespace" data-param="namespace" value="" required`, "must match [a-z0-9-]&#43;",
			`id="launch-incident" name="incidentKey"`, `id="launch-reason" name="reason"`,
			`id="preview-button"`, `id="launch-button"`, `<div id="plan" class="plan" hidden>`,
			`id="recent-runs"`, "<strong>tell_owners</strong>", "required, 2h0m0s")
		require.Less(t, strings.Index(body, `id="param-deployment"`), strings.Index(body, `id="param-env"`), "required params come first")
		page(t, fx, "/ui/runbooks/failover-db", op, 200, "Only ada may launch this runbook.")
		page(t, fx, "/ui/runbooks/failover-db", fx.tok.admin, 200, `id="launch-form"`)
	})

	t.Run("audit log with verification and paging", func(t *testing.T) {
		body := page(t, fx, "/ui/audit", op, 200, `id="audit-verify" data-ok="true"`, "Chain verified: OK", "8 records checked",
			`value="24h"`, "alert.accepted", "credential.issued")
		require.NotContains(t, body, `id="next-page"`)
		page(t, fx, "/ui/audit?action=step.succeeded&since=", op, 200, "step.succeeded")
		body = page(t, fx, "/ui/audit?action=step.succeeded&since=", op, 200)
		require.NotContains(t, body, "<code>trigger.matched</code>")
		body = page(t, fx, "/ui/audit?since=&after=6", op, 200, "after record #6", "« first page")
		require.NotContains(t, body, "<code>alert.accepted</code>")
		page(t, fx, "/ui/audit?since=tomorrow", op, 400, "want a duration")
		page(t, fx, "/ui/audit?after=-1", op, 400, "after must be a sequence number")

		fx.audit.broken = true
		page(t, fx, "/ui/audit", op, 200, `id="audit-verify" data-ok="false"`, "Chain BROKEN at record #3", "row 3: hash does not match its event")
		fx.audit.broken = false
	})

	t.Run("audit paging past a full page", func(t *testing.T) {
		fx := newFixture(t)
		op := fx.tok.operator
		base := fx.audit.recs[0]
		for i := len(fx.audit.recs); i < 150; i++ {
			r := base
			r.Seq = int64(i + 1)
			fx.audit.recs = append(fx.audit.recs, r)
		}
		body := page(t, fx, "/ui/audit?since=", op, 200, `id="next-page"`)
		require.Contains(t, body, `href="/ui/audit?after=100&amp;since="`)
		body = page(t, fx, "/ui/audit?after=100&since=", op, 200, ">150</td>")
		require.NotContains(t, body, `id="next-page"`)
	})

	t.Run("incident timeline", func(t *testing.T) {
		page(t, fx, "/ui/incidents/shop%2Fapi", op, 200, "Incident shop/api", `id="timeline"`,
			"alert KubeDeploymentCrashLooping fired", "runbook restart-crashlooping matched; run started",
			`href="/ui/runs/salve%2Frestart-crashlooping%2Fshop%2Fapi"`)
		// A run's workflow ID names its incident too.
		page(t, fx, "/ui/incidents/"+escWaiting, op, 200, "Incident shop/api")
	})
}

func TestNotFound(t *testing.T) {
	fx := newFixture(t)
	for _, tc := range []struct{ path, want string }{
		{"/ui/runbooks/nope", "No runbook &#34;nope&#34; is loaded (loaded: failover-db, hostile, restart-crashlooping)."},
		{"/ui/runs/" + url.PathEscape("salve/restart-crashlooping/nope"), "There is no run &#34;salve/restart-crashlooping/nope&#34;."},
		{"/ui/incidents/nope", "The audit log has no records of incident &#34;nope&#34;."},
		{"/ui/nope", "There is no dashboard page at /ui/nope."},
	} {
		page(t, fx, tc.path, fx.tok.viewer, http.StatusNotFound, `id="error-message"`, tc.want)
	}
}

func TestViewersSeeNoActions(t *testing.T) {
	fx := newFixture(t)
	for _, tc := range []struct{ path, operator string }{
		{"/ui/runs/" + url.PathEscape(wfWaiting), fx.tok.operator}, {"/ui/approvals", fx.tok.operator},
		{"/ui/runbooks/restart-crashlooping", fx.tok.operator}, {"/ui/runbooks/failover-db", fx.tok.admin},
	} {
		viewer := page(t, fx, tc.path, fx.tok.viewer, 200, `id="who-role">viewer</span>`)
		for _, no := range []string{"data-action=", "<textarea", `value="approve"`, "launch-form", "Cancel run"} {
			require.NotContains(t, viewer, no, "%s shows a viewer %s", tc.path, no)
		}
		operator := page(t, fx, tc.path, tc.operator, 200)
		require.Contains(t, operator, "data-action=", "%s shows an operator its actions", tc.path)
	}
	// Someone the runbook does not name as approver sees why instead of a form.
	page(t, fx, "/ui/approvals", fx.tok.admin, 200, "ada is not an approver of runbook restart-crashlooping (access.approvers: bob, group:sre).")
	// Viewers still read everything.
	page(t, fx, "/ui/runs/"+url.PathEscape(wfWaiting), fx.tok.viewer, 200, "Waiting for approval of step <code>restart</code>", leaseHash)
	page(t, fx, "/ui/runbooks/restart-crashlooping", fx.tok.viewer, 200, `id="params-table"`)
}

func TestUntrustedTextIsEscaped(t *testing.T) {
	fx := newFixture(t)
	for _, path := range []string{
		"/ui/runbooks", "/ui/runbooks/hostile", "/ui/runs/" + url.PathEscape(wfHostile), "/ui/audit?since=", "/ui/incidents/x%3Cy%3E",
	} {
		body := page(t, fx, path, fx.tok.admin, 200)
		require.Equal(t, 1, strings.Count(body, "<script"), "%s: only the page's own script tag", path)
		require.NotContains(t, body, "<img src=x", path)
		require.NotContains(t, body, `"><script`, path)
		require.Contains(t, body, "&lt;", path)
	}
	page(t, fx, "/ui/runbooks/hostile", fx.tok.admin, 200,
		`&lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;`,
		`owned by <strong>&lt;b&gt;team&lt;/b&gt;</strong>`,
		`value="&#34;&gt;&lt;script&gt;alert(4)&lt;/script&gt;"`)
	page(t, fx, "/ui/runs/"+url.PathEscape(wfHostile), fx.tok.admin, 200, `data-run="salve/hostile/x&lt;y&gt;"`, `href="/ui/incidents/x%3Cy%3E"`)
}

func TestNewNeedsTheAPI(t *testing.T) {
	_, err := dashboard.New(dashboard.Options{})
	require.Error(t, err)
}

// An open circuit breaker is named on the overview; a partial pending
// count says so.
func TestOverviewShowsOpenBreakers(t *testing.T) {
	fx := newFixture(t)
	fx.srv.Stats = func(_ context.Context, from, to time.Time) (stats.Report, error) {
		r := testReport(from, to)
		r.CircuitBreakers = []stats.Breaker{{Runbook: "flaky", Open: true, OpenSince: time.Date(2026, 11, 24, 9, 30, 0, 0, time.UTC), RecentFailures: 3},
			{Runbook: "steady"}}
		r.PendingApprovalsError = "no answer yet: 1 of 4 running runs did not answer"
		return r, nil
	}
	page(t, fx, "/ui/", fx.tok.operator, 200, `2 declared</div>`, `<a href="/ui/runbooks/flaky">flaky</a>: OPEN since 2026-11-24 09:30Z (3 failures)`,
		`at least: no answer yet: 1 of 4 running runs did not answer`)
}
