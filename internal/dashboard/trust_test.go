package dashboard_test

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/salve-sre/salve/internal/audit"
	"github.com/salve-sre/salve/internal/domain"
	"github.com/stretchr/testify/require"
)

// The backtest page replays the stored alerts through the loaded
// runbooks. Four crash loops of one deployment start 10 minutes apart
// and resolve after 1: the first starts a run, which lasts the modelled 2
// minutes (onResolved: ignore); its 30m cooldown then suppresses the
// other three (at 10, 20 and 30 minutes, before 32).
func TestBacktestPage(t *testing.T) {
	fx := newFixture(t)
	start := time.Now().UTC().Add(-3 * time.Hour).Truncate(time.Minute)
	labels := map[string]string{"alertname": "KubeDeploymentCrashLooping", "severity": "critical", "namespace": "shop", "deployment": "cart"}
	for i := range 4 {
		at := start.Add(time.Duration(i) * 10 * time.Minute)
		fx.audit.alerts = append(fx.audit.alerts, audit.AlertState{Fingerprint: "00000000000000a" + string(rune('0'+i)), Alertname: "KubeDeploymentCrashLooping",
			Labels: labels, StartsAt: at, ReceivedAt: at, ResolvedAt: at.Add(time.Minute)})
	}
	page(t, fx, "/ui/backtest?since=6h&runbook=restart-crashlooping", fx.tok.viewer, 200,
		`id="backtest-summary">8 alert states`, `<svg viewBox="0 0 640 220"`, `per hour`,
		`<td><a href="/ui/runbooks/restart-crashlooping">restart-crashlooping</a></td><td>1</td><td>0</td><td>3</td><td>cooldown 3</td>`)
	page(t, fx, "/ui/backtest?since=soon", fx.tok.viewer, 400, `msg-error`)
	page(t, fx, "/ui/backtest?runbook=nope", fx.tok.viewer, 404, `No runbook &#34;nope&#34; is loaded.`)
}

// A runbook's page shows its trust ladder: rung, shadow verdicts,
// agreement and whether it may be promoted.
func TestRunbookTrustPanel(t *testing.T) {
	fx := newFixture(t)
	rb, ok := fx.srv.Runbooks.Current().Get("restart-crashlooping")
	require.True(t, ok)
	for i, verdict := range []string{"agreed", "resolved_on_its_own"} {
		fx.audit.recs = append(fx.audit.recs, audit.Record{Seq: int64(500 + i), Event: domain.AuditEvent{
			Action: domain.ActionShadowEvidence, Runbook: "restart-crashlooping", RunbookHash: rb.Hash, Outcome: verdict, Time: time.Now().Add(-time.Hour),
			Actor:      domain.Actor{Kind: domain.ActorAlert, Name: "KubeDeploymentCrashLooping"},
			WorkflowID: "salve/restart-crashlooping/shop/cart", Detail: map[string]string{"wouldAct": "true", "summary": "it " + verdict}}})
	}
	page(t, fx, "/ui/runbooks/restart-crashlooping", fx.tok.viewer, 200,
		`id="trust-rung">enforce</strong>`, `id="trust-shadow">2 (2 would have acted): 1 agreed with a person`, `id="trust-agreement">50% of 2 compared`,
		`it resolved_on_its_own`, `href="/ui/backtest?runbook=restart-crashlooping&amp;since=7d"`)
}

// A "since" far in the past replays and draws at most the longest window
// (31 days: daily points), not two thousand years of them.
func TestBacktestPageClampsTheWindow(t *testing.T) {
	fx := newFixture(t)
	body := page(t, fx, "/ui/backtest?since=0001-01-01T00:00:00Z", fx.tok.viewer, 200, `per day`)
	require.LessOrEqual(t, strings.Count(body, "<circle"), 3*32, "at most 32 days of points per line")
}

// A shadow run's page says it acted on nothing, what it would have done
// and what happened instead.
func TestShadowRunPage(t *testing.T) {
	fx := newFixture(t)
	page(t, fx, "/ui/runs/"+url.PathEscape(wfShadow), fx.tok.viewer, 200,
		`Shadow run: it acts on nothing`, `id="shadow-verdict"`, `Would have acted; a person restarted shop/web meanwhile.`,
		`<code>restart</code> kubernetes.restart on <code>shop/web</code>`, `approval of the whole run`,
		`resolved 9m0s after the run started`, `<code>shop/web</code> was restarted`, `passed without the action`)
}
