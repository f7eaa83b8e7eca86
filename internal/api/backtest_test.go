package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/internal/audit"
	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/internal/trust"
)

// A server-side backtest checks the silences people set in the
// configured Alertmanager, at each alert's time: an alert inside a
// silence is suppressed (silenced), one after it starts a run.
func TestServerBacktestHonoursSilences(t *testing.T) {
	fx := newFixture(t)
	now := time.Now().UTC().Truncate(time.Second)
	silenceStart, silenceEnd := now.Add(-5*time.Hour), now.Add(-3*time.Hour)
	am := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		require.Equal(t, "/api/v2/silences", r.URL.Path)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `[{"id":"s1","createdBy":"alice","comment":"node drain","startsAt":%q,"endsAt":%q,
"matchers":[{"name":"namespace","value":"shop","isRegex":false,"isEqual":true}],"status":{"state":"expired"}}]`,
			silenceStart.Format(time.RFC3339), silenceEnd.Format(time.RFC3339))
	}))
	t.Cleanup(am.Close)
	fx.srv.SafetyConfig.Alertmanager.URL = am.URL
	fx.srv.SafetyConfig.Alertmanager.CheckSilences = true
	labels := map[string]string{"alertname": "KubeDeploymentCrashLooping", "severity": "critical", "namespace": "shop", "deployment": "api"}
	in, after := now.Add(-4*time.Hour), now.Add(-2*time.Hour)
	fx.audit.alerts = []audit.AlertState{
		{Fingerprint: "00000000000000b1", Alertname: "KubeDeploymentCrashLooping", Labels: labels, StartsAt: in, ReceivedAt: in, ResolvedAt: in.Add(time.Minute)},
		{Fingerprint: "00000000000000b2", Alertname: "KubeDeploymentCrashLooping", Labels: labels, StartsAt: after, ReceivedAt: after, ResolvedAt: after.Add(time.Minute)},
	}
	rec := fx.do(request{method: http.MethodGet, path: "/v1/runbooks/restart-crashlooping/evidence?backtest=6h", token: fx.tok.viewer})
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	var ans trust.EvidenceAnswer
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &ans))
	require.NotNil(t, ans.Backtest)
	require.Equal(t, 1, ans.Backtest.Started, "%+v", ans.Backtest)
	require.Equal(t, map[string]int{"silenced": 1}, ans.Backtest.By)
}

// Evidence is read whole, page by page: the store answers 10,000 records
// at a time, oldest first, and the newest must count too.
func TestEvidenceReadsEveryPage(t *testing.T) {
	fx := newFixture(t)
	rb := shadowMode(t, fx, "restart-crashlooping")
	base := int64(len(fx.audit.recs))
	for i := range 10005 {
		fx.audit.recs = append(fx.audit.recs, audit.Record{Seq: base + int64(i) + 1, Event: domain.AuditEvent{
			Action: domain.ActionShadowEvidence, Runbook: rb.Name(), RunbookHash: rb.Hash, Outcome: "resolved_on_its_own",
			Time: time.Now().Add(-time.Hour), Actor: domain.Actor{Kind: domain.ActorAlert, Name: "KubeDeploymentCrashLooping"},
			Detail: map[string]string{"wouldAct": "true"}}})
	}
	rec := fx.do(request{method: http.MethodGet, path: "/v1/runbooks/restart-crashlooping/evidence", token: fx.tok.viewer})
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	var ans trust.EvidenceAnswer
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &ans))
	require.Equal(t, 10005, ans.Summary.ShadowRuns)
}
