package dashboard_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/internal/app"
	"github.com/salve-sre/salve/internal/auth"
	"github.com/salve-sre/salve/internal/runs"
	"github.com/salve-sre/salve/internal/stats"
)

// Runbooks of the browser test: one that alerts run to success and that
// saves 15 minutes each time, one that waits for a person, and one that
// people launch with params of every type.
const (
	diskCleanupRunbook = `apiVersion: salve/v1
kind: Runbook
metadata:
  name: disk-cleanup
  owner: team-storage
  description: Remove rotated logs when a disk fills up.
spec:
  trigger:
    matchers: ['alertname="DiskFull"']
    incidentKey: '{{ .Labels.instance }}'
  params:
    target: {fromAnnotation: target, required: true, pattern: 'http://127\.0\.0\.1:[0-9]+'}
  toil: {manualMinutes: 15}
  steps:
    - {name: clean, action: http.request, with: {url: '{{ .Params.target }}/clean', method: POST}}
`
	guardedRestartRunbook = `apiVersion: salve/v1
kind: Runbook
metadata:
  name: guarded-restart
  owner: team-web
  description: Restart the web tier after a person agrees.
spec:
  trigger:
    matchers: ['alertname="WebStuck"']
    incidentKey: '{{ .Labels.instance }}'
  params:
    target: {fromAnnotation: target, required: true, pattern: 'http://127\.0\.0\.1:[0-9]+'}
  steps:
    - {name: diagnose, action: http.request, with: {url: '{{ .Params.target }}/diagnose'}}
    - name: restart
      action: http.request
      with: {url: '{{ .Params.target }}/restart', method: POST}
      approval: {required: true, timeout: 10m}
`
	scaleServiceRunbook = `apiVersion: salve/v1
kind: Runbook
metadata:
  name: scale-service
  owner: team-web
  description: Scale a service to a number of replicas and check its health.
spec:
  params:
    target: {required: true, description: base URL of the service, pattern: 'http://127\.0\.0\.1:[0-9]+'}
    replicas: {type: int, min: 1, max: 10, default: "2"}
    strategy: {type: enum, values: [rolling, recreate], default: rolling}
    drain: {type: bool, default: "false"}
    settle: {type: duration, default: 30s, max: 5m}
  steps:
    - name: scale
      action: http.request
      with: {url: '{{ .Params.target }}/scale?replicas={{ .Params.replicas }}&strategy={{ .Params.strategy }}&drain={{ .Params.drain }}', method: POST}
    - {name: settle, action: sleep, with: {duration: 2s}}
    - {name: verify, action: http.request, with: {url: '{{ .Params.target }}/health'}}
`
	slowDrainRunbook = `apiVersion: salve/v1
kind: Runbook
metadata: {name: slow-drain, owner: team-web}
spec:
  params:
    target: {required: true, pattern: 'http://127\.0\.0\.1:[0-9]+'}
  steps:
    - {name: drain, action: http.request, with: {url: '{{ .Params.target }}/drain', method: POST}}
    - {name: wait, action: sleep, with: {duration: 1h}}
  onFailure:
    - {name: undrain, action: http.request, with: {url: '{{ .Params.target }}/undrain', method: POST}}
`
)

// chromium finds the browser. A missing browser fails the test: only
// SALVE_SKIP_BROWSER=1 skips it.
func chromium(t *testing.T) string {
	t.Helper()
	if os.Getenv("SALVE_SKIP_BROWSER") == "1" {
		t.Skip("SALVE_SKIP_BROWSER=1: not running the browser test")
	}
	for _, c := range []string{os.Getenv("SALVE_CHROMIUM"), "/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"} {
		if c == "" {
			continue
		}
		if p, err := exec.LookPath(c); err == nil {
			return p
		}
	}
	t.Fatal("no Chromium found (install Debian's chromium, set SALVE_CHROMIUM, or set SALVE_SKIP_BROWSER=1 to skip this test)")
	return ""
}

func artifactsDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("SALVE_TEST_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "salve-test-artifacts", "dashboard")
	}
	require.NoError(t, os.MkdirAll(dir, 0o755))
	return dir
}

type recordingTarget struct {
	*httptest.Server
	mu   sync.Mutex
	hits []string
}

func (rt *recordingTarget) requests() []string {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return append([]string{}, rt.hits...)
}

func alertWebhook(alertname, instance, fingerprint, target string, startsAt time.Time) string {
	return fmt.Sprintf(`{"version":"4","groupKey":"g","status":"firing","receiver":"salve","externalURL":"http://am",
"alerts":[{"status":"firing","labels":{"alertname":%q,"instance":%q},"annotations":{"target":%q},
"startsAt":%q,"endsAt":"0001-01-01T00:00:00Z","fingerprint":%q}]}`, alertname, instance, target, startsAt.UTC().Format(time.RFC3339Nano), fingerprint)
}

// apiCall sends a request to the dev server's API with a bearer token.
func apiCall(t *testing.T, method, u, token string, body any, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(t, err)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, u, rd)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		require.NoError(t, json.Unmarshal(raw, out), "%s", raw)
	}
	return resp.StatusCode
}

type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestDashboardInABrowser drives the dashboard of a real `salve dev`
// (embedded NATS and Temporal, a real worker) in headless Chromium:
// sign in, read the toil figure, approve a waiting run, plan and launch a
// runbook from its generated form, and read the audit log. It saves a
// full-page screenshot of each page.
func TestDashboardInABrowser(t *testing.T) {
	browser := chromium(t)
	shots := artifactsDir(t)

	tg := &recordingTarget{}
	tg.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tg.mu.Lock()
		tg.hits = append(tg.hits, r.Method+" "+r.URL.RequestURI())
		tg.mu.Unlock()
		_, _ = io.WriteString(w, `{"ok":true}`)
	}))
	t.Cleanup(tg.Close)

	rbDir := t.TempDir()
	for name, src := range map[string]string{"disk-cleanup": diskCleanupRunbook, "guarded-restart": guardedRestartRunbook, "scale-service": scaleServiceRunbook, "slow-drain": slowDrainRunbook} {
		require.NoError(t, os.WriteFile(filepath.Join(rbDir, name+".yaml"), []byte(src), 0o600))
	}
	operator, opHash, err := auth.NewToken()
	require.NoError(t, err)
	admin, adminHash, err := auth.NewToken()
	require.NoError(t, err)
	cfgPath := filepath.Join(t.TempDir(), "salve.yaml")
	require.NoError(t, os.WriteFile(cfgPath, []byte(fmt.Sprintf(`auth:
  tokens:
    - {subject: alice, role: operator, groups: [sre], sha256: %s}
    - {subject: root, role: admin, sha256: %s}
`, opHash, adminHash)), 0o600))

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	d, err := app.Start(ctx, app.Config{
		DataDir: t.TempDir(), Listen: "127.0.0.1:0", WebhookToken: "test-token-6f1c0d9e7a3b42c8a6e1f0d4b7c9e2a1", RunbooksDir: rbDir, ConfigFile: cfgPath,
		TemporalPort: -1, NATSPort: -1, UIPort: -1, DisableUI: true, Version: "test",
		Log: slog.New(slog.NewTextHandler(logWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	cancel()
	require.NoError(t, err)
	t.Cleanup(d.Close)
	base := d.URL

	// "/" leads to the dashboard; the API still answers beside it.
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Get(base + "/")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusFound, resp.StatusCode)
	require.Equal(t, "/ui/", resp.Header.Get("Location"))

	// Two alerts that automation fixes (2 × 15 min), one that waits.
	now := time.Now().Add(-30 * time.Second)
	for _, body := range []string{
		alertWebhook("DiskFull", "db-1", "00000000000000a1", tg.URL, now),
		alertWebhook("DiskFull", "db-2", "00000000000000a2", tg.URL, now),
		alertWebhook("WebStuck", "web-1", "00000000000000b1", tg.URL, now),
	} {
		req, err := http.NewRequest(http.MethodPost, base+"/v1/alertmanager", strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer test-token-6f1c0d9e7a3b42c8a6e1f0d4b7c9e2a1")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
	}
	runStatus := func(id string) string {
		var det runs.Detail
		if apiCall(t, "GET", base+"/v1/runs/"+url.PathEscape(id), admin, nil, &det) != http.StatusOK {
			return ""
		}
		return det.Status
	}
	for _, id := range []string{"salve/disk-cleanup/db-1", "salve/disk-cleanup/db-2"} {
		require.Eventually(t, func() bool { return runStatus(id) == runs.StatusSucceeded }, time.Minute, 200*time.Millisecond, id)
	}
	const guarded = "salve/guarded-restart/web-1"
	require.Eventually(t, func() bool {
		var body struct {
			Approvals []runs.PendingApproval `json:"approvals"`
		}
		return apiCall(t, "GET", base+"/v1/approvals", admin, nil, &body) == http.StatusOK && len(body.Approvals) == 1 && body.Approvals[0].WorkflowID == guarded
	}, time.Minute, 200*time.Millisecond, "the guarded run waits for approval")
	// The figures the overview must show: 30 minutes saved.
	require.Eventually(t, func() bool {
		var rep stats.Report
		return apiCall(t, "GET", base+"/v1/stats?since=7d", admin, nil, &rep) == http.StatusOK && rep.ToilSavedSeconds == 1800
	}, 30*time.Second, 200*time.Millisecond, "stats count the two automated runs")

	// The browser.
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900))...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx, chromedp.WithErrorf(t.Logf))
	defer cancelBrowser()
	bctx, cancelTimeout := context.WithTimeout(bctx, 3*time.Minute)
	defer cancelTimeout()

	// Every script error, CSP violation or failed request fails the test.
	var (
		problemsMu sync.Mutex
		problems   []string
	)
	require.NoError(t, chromedp.Listen(bctx, func(ev any) {
		var p string
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			p = "exception: " + ev.ExceptionDetails.Text
			if ex := ev.ExceptionDetails.Exception; ex != nil {
				p += " " + ex.Description
			}
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError {
				p = "console.error"
				for _, a := range ev.Args {
					p += " " + string(a.Value) + a.Description
				}
			}
		case *log.EventEntryAdded:
			if ev.Entry.Level == log.EntryLevelError {
				p = fmt.Sprintf("%s: %s (%s)", ev.Entry.Source, ev.Entry.Text, ev.Entry.URL)
			}
		}
		if p != "" {
			problemsMu.Lock()
			problems = append(problems, p)
			problemsMu.Unlock()
		}
	}))
	noProblems := func(where string) {
		t.Helper()
		problemsMu.Lock()
		defer problemsMu.Unlock()
		require.Empty(t, problems, "browser errors on %s", where)
	}
	screenshot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
		require.NoError(t, err)
		path := filepath.Join(shots, name+".png")
		require.NoError(t, os.WriteFile(path, png, 0o644))
		t.Logf("screenshot: %s", path)
	}
	do := func(actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		ctx, cancel := context.WithTimeout(bctx, time.Minute)
		defer cancel()
		require.NoError(t, chromedp.Do(ctx, actions...))
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS(sel)))
		require.NoError(t, err, sel)
		return s
	}
	waitText := func(sel, want string) {
		t.Helper()
		var last string
		require.Eventually(t, func() bool {
			s, err := chromedp.Run(bctx, chromedp.Evaluate[string](fmt.Sprintf(`(document.querySelector(%q) || {}).textContent || ""`, sel)))
			last = s
			return err == nil && strings.Contains(s, want)
		}, time.Minute, 200*time.Millisecond, "%s never showed %q; last: %q", sel, want, last)
	}

	t.Run("sign in", func(t *testing.T) {
		do(chromedp.Navigate(base + "/ui/?window=7d"))
		do(chromedp.WaitVisible(chromedp.ID("token")))
		loc, err := chromedp.Run(bctx, chromedp.Location())
		require.NoError(t, err)
		require.Equal(t, base+"/ui/login?next=%2Fui%2F%3Fwindow%3D7d", loc)
		do(chromedp.SendKeys(chromedp.ID("token"), "not-a-token"), chromedp.Click(chromedp.ID("login-submit")))
		do(chromedp.WaitVisible(chromedp.ID("login-error")))
		problemsMu.Lock()
		problems = nil // the 401 of the wrong token is expected
		problemsMu.Unlock()
		do(chromedp.SendKeys(chromedp.ID("token"), operator), chromedp.Click(chromedp.ID("login-submit")))
		do(chromedp.WaitVisible(chromedp.ID("toil-saved-hours")))
		require.Equal(t, "alice", text("#who-subject"))
		role, err := chromedp.Run(bctx, chromedp.TextContent(chromedp.ID("who-role")))
		require.NoError(t, err)
		require.Equal(t, "operator", role)
		// The cookie is HTTP-only: scripts cannot read it.
		cookies, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.cookie`))
		require.NoError(t, err)
		require.NotContains(t, cookies, "salve_session")
	})

	t.Run("overview shows the toil the runs saved", func(t *testing.T) {
		loc, err := chromedp.Run(bctx, chromedp.Location())
		require.NoError(t, err)
		require.Equal(t, base+"/ui/?window=7d", loc)
		secs, err := chromedp.Run(bctx, chromedp.AttributeValue(chromedp.ID("toil-saved-hours"), "data-seconds"))
		require.NoError(t, err)
		require.Equal(t, "1800", secs.Value, "2 runs × 15 manual minutes")
		require.Equal(t, "0.5", text("#toil-saved-hours"))
		require.Equal(t, "1", text("#pending-approvals"))
		require.Contains(t, text("#toil-by-runbook"), "disk-cleanup")
		require.Contains(t, text("#circuit-breakers"), "no runbook declares one")
		charts, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll('figure.chart svg').length`))
		require.NoError(t, err)
		require.Equal(t, 2, charts)
		screenshot("overview")
		noProblems("the overview")
	})

	t.Run("a waiting run shows what it waits for", func(t *testing.T) {
		do(chromedp.Navigate(base + "/ui/runs/" + url.PathEscape(guarded)))
		do(chromedp.WaitVisible(chromedp.CSS(`form[data-action="decide"]`)))
		require.Contains(t, text("#approval"), "Waiting for approval of step restart")
		require.Contains(t, text(`tr[data-step="diagnose"] .step-state`), "succeeded")
		require.Contains(t, text(`tr[data-step="restart"] .step-state`), "waiting_approval")
		waitText("#live-status", "live")
		screenshot("run-waiting-approval")
		noProblems("a waiting run")
	})

	t.Run("approve the waiting run from the inbox", func(t *testing.T) {
		do(chromedp.Navigate(base + "/ui/approvals"))
		row := `tr.approval[data-run="` + guarded + `"]`
		do(chromedp.WaitVisible(chromedp.CSS(row)))
		require.Contains(t, text(row), "guarded-restart")
		require.Contains(t, text(row), "restart")
		screenshot("approvals")
		// No reason: the browser's own check stops the form.
		do(chromedp.Click(chromedp.CSS(row + ` button[value="approve"]`)))
		do(chromedp.SendKeys(chromedp.CSS(row+` textarea[name="reason"]`), "checked the error rate dashboards"),
			chromedp.Click(chromedp.CSS(row+` button[value="approve"]`)))
		waitText(row+" [data-msg]", "Recorded: approved by alice.")
		require.Eventually(t, func() bool { return runStatus(guarded) == runs.StatusSucceeded }, time.Minute, 200*time.Millisecond)
		var det runs.Detail
		require.Equal(t, http.StatusOK, apiCall(t, "GET", base+"/v1/runs/"+url.PathEscape(guarded), admin, nil, &det))
		require.NotNil(t, det.Run)
		require.Len(t, det.Run.Approvals, 1)
		require.Equal(t, "alice", det.Run.Approvals[0].By)
		require.Equal(t, "checked the error rate dashboards", det.Run.Approvals[0].Reason)
		require.Contains(t, tg.requests(), "POST /restart")
		noProblems("the approvals inbox")
	})

	var launchedURL string
	t.Run("plan and launch a runbook from its generated form", func(t *testing.T) {
		do(chromedp.Navigate(base + "/ui/runbooks/scale-service"))
		do(chromedp.WaitVisible(chromedp.ID("launch-form")))
		// The form was generated from the params, defaults filled in.
		for id, want := range map[string]string{"param-replicas": "2", "param-strategy": "rolling", "param-settle": "30s", "param-target": ""} {
			v, err := chromedp.Run(bctx, chromedp.Value(chromedp.ID(id)))
			require.NoError(t, err)
			require.Equal(t, want, v, id)
		}
		kinds, err := chromedp.Run(bctx, chromedp.Evaluate[[]string](`["param-target","param-replicas","param-strategy","param-drain","param-settle"].map(id => { const e = document.getElementById(id); return e.tagName.toLowerCase() + ":" + (e.type || "") + ":" + e.required })`))
		require.NoError(t, err)
		require.Equal(t, []string{"input:text:true", "input:number:false", "select:select-one:false", "input:checkbox:false", "input:text:false"}, kinds)

		// A bad value is refused by the API, and its words are shown.
		do(chromedp.SendKeys(chromedp.ID("param-target"), tg.URL),
			chromedp.SetValue(chromedp.ID("param-settle"), "9m"),
			chromedp.Click(chromedp.ID("preview-button")))
		waitText("#launch-msg", `parameter "settle"`)
		waitText("#launch-msg", "above the maximum 5m")
		problemsMu.Lock()
		problems = nil // the 400 is the point
		problemsMu.Unlock()

		do(chromedp.SetValue(chromedp.ID("param-settle"), "45s"),
			chromedp.SetValue(chromedp.ID("param-replicas"), "4"),
			chromedp.SetValue(chromedp.ID("param-strategy"), "recreate"),
			chromedp.Click(chromedp.ID("param-drain")),
			chromedp.SendKeys(chromedp.ID("launch-incident"), "web-scale-1"),
			chromedp.SendKeys(chromedp.ID("launch-reason"), "traffic spike expected at 18:00"),
			chromedp.Click(chromedp.ID("preview-button")))
		do(chromedp.WaitVisible(chromedp.ID("plan-steps")))
		plan := text("#plan")
		require.Contains(t, plan, "Plan (dry run)")
		require.Contains(t, plan, tg.URL+"/scale?replicas=4&strategy=recreate&drain=true")
		require.Contains(t, plan, "web-scale-1")
		require.Contains(t, plan, "mutating")
		require.NotContains(t, strings.Join(tg.requests(), "\n"), "/scale", "a dry run calls nothing")
		screenshot("runbook-launch-plan")

		do(chromedp.Click(chromedp.ID("launch-button")))
		require.Eventually(t, func() bool {
			loc, err := chromedp.Run(bctx, chromedp.Location())
			launchedURL = loc
			return err == nil && strings.HasPrefix(loc, base+"/ui/runs/salve%2Fscale-service%2Fweb-scale-1?runId=")
		}, 30*time.Second, 100*time.Millisecond, "the launch goes to the run's page; at %s", launchedURL)
		do(chromedp.WaitVisible(chromedp.ID("run-root")))
		// The page follows the run live until it ends.
		waitText("#run-status", "succeeded")
		waitText(`tr[data-step="verify"] .step-state`, "succeeded")
		require.Contains(t, tg.requests(), "POST /scale?replicas=4&strategy=recreate&drain=true")
		require.Contains(t, text("#run-head"), "launched by alice")
		require.Contains(t, text("#run-head"), "traffic spike expected at 18:00")
		// The run's end reaches the audit store just after Temporal reports
		// it; the live page shows it once recorded.
		waitText("#run-audit", "run.finished")
		screenshot("run-detail")
		noProblems("the runbook and run pages")
	})

	t.Run("cancel a run from its page", func(t *testing.T) {
		var res runs.LaunchResult
		require.Equal(t, http.StatusAccepted, apiCall(t, "POST", base+"/v1/runbooks/slow-drain/launch", operator,
			map[string]any{"params": map[string]string{"target": tg.URL}, "incidentKey": "lb-1", "reason": "maintenance"}, &res))
		require.Eventually(t, func() bool { return slices.Contains(tg.requests(), "POST /drain") }, 30*time.Second, 100*time.Millisecond)
		do(chromedp.Navigate(base + "/ui/runs/" + url.PathEscape(res.WorkflowID) + "?runId=" + url.QueryEscape(res.RunID)))
		do(chromedp.WaitVisible(chromedp.ID("cancel-reason")))
		waitText("#live-status", "live")
		do(chromedp.SendKeys(chromedp.ID("cancel-reason"), "maintenance moved to tomorrow"),
			chromedp.Click(chromedp.CSS(`#cancel button`)))
		waitText("#cancel [data-msg]", "Cancel requested")
		// The live page shows the end: cancelled, compensated, no cancel form.
		waitText("#run-status", "cancelled")
		waitText("#steps", "undrain")
		do(chromedp.WaitNotPresent(chromedp.ID("cancel-reason")))
		// The answer to the person's cancel outlives the live refreshes
		// that replaced its form (one racing it made it vanish unread).
		require.Contains(t, text("#cancel [data-msg]"), "Cancel requested")
		require.Contains(t, tg.requests(), "POST /undrain")
		require.Equal(t, runs.StatusCancelled, runStatus(res.WorkflowID))
		noProblems("the cancelled run")
	})

	t.Run("runs list", func(t *testing.T) {
		do(chromedp.Navigate(base + "/ui/runs"))
		do(chromedp.WaitVisible(chromedp.ID("runs-table")))
		n, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll('#runs-table tbody tr').length`))
		require.NoError(t, err)
		require.Equal(t, 5, n)
		do(chromedp.SetValue(chromedp.ID("filter-status"), "cancelled"), chromedp.Submit(chromedp.ID("filter-status")))
		require.Eventually(t, func() bool {
			n, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll('#runs-table tbody tr').length`))
			return err == nil && n == 1
		}, 10*time.Second, 100*time.Millisecond)
		require.Contains(t, text("#runs-table"), "slow-drain")
		screenshot("runs")
		noProblems("the runs list")
	})

	t.Run("audit log with its chain verified", func(t *testing.T) {
		// The recorder appends what the API published a moment ago (the
		// cancel just before) on its own schedule: reload until it has.
		want := []string{"run.launched", "run.planned", "approval.granted", "alert.accepted", "run.cancel_requested"}
		missing := want
		for deadline := time.Now().Add(15 * time.Second); len(missing) > 0 && time.Now().Before(deadline); time.Sleep(300 * time.Millisecond) {
			do(chromedp.Navigate(base + "/ui/audit?since=1h"))
			do(chromedp.WaitVisible(chromedp.ID("audit-verify")))
			page := text("main")
			missing = slices.DeleteFunc(slices.Clone(want), func(a string) bool { return strings.Contains(page, a) })
		}
		require.Empty(t, missing, "the audit log never showed these actions")
		ok, err := chromedp.Run(bctx, chromedp.AttributeValue(chromedp.ID("audit-verify"), "data-ok"))
		require.NoError(t, err)
		require.Equal(t, "true", ok.Value, text("#audit-verify"))
		screenshot("audit")
		noProblems("the audit log")
	})

	t.Run("incident timeline", func(t *testing.T) {
		do(chromedp.Navigate(base + "/ui/incidents/web-1"))
		do(chromedp.WaitVisible(chromedp.ID("timeline")))
		tl := text("#timeline")
		require.Contains(t, tl, "alert WebStuck fired")
		require.Contains(t, tl, "runbook guarded-restart matched")
		screenshot("incident")
		noProblems("the incident timeline")
	})

	t.Run("sign out, and the old cookie no longer works", func(t *testing.T) {
		res, err := chromedp.Run(bctx, func(ctx context.Context, target *chromedp.Target) (network.GetCookiesResult, error) {
			return cdp.Call(ctx, target, network.GetCookies, network.GetCookiesParams{URLs: []string{base + "/ui/"}})
		})
		require.NoError(t, err)
		var old string
		for _, c := range res.Cookies {
			if c.Name == "salve_session" {
				old = c.Value
			}
		}
		require.NotEmpty(t, old)
		do(chromedp.Navigate(base+"/ui/runs"), chromedp.WaitVisible(`button.link`), chromedp.Click(`button.link`))
		do(chromedp.WaitVisible(chromedp.ID("token")))
		// Replayed from elsewhere, the old cookie opens nothing.
		req, err := http.NewRequest(http.MethodGet, base+"/v1/runs", nil)
		require.NoError(t, err)
		req.AddCookie(&http.Cookie{Name: "salve_session", Value: old})
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
		do(chromedp.Navigate(base + "/ui/runs"))
		do(chromedp.WaitVisible(chromedp.ID("token")))
		problemsMu.Lock()
		problems = nil // the 401 of the replayed cookie is expected
		problemsMu.Unlock()
	})
}
