package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/salve-sre/salve/activities/kube"
	"github.com/salve-sre/salve/internal/app"
	"github.com/salve-sre/salve/internal/audit"
	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/internal/runs"
	"github.com/salve-sre/salve/internal/trust"
	"github.com/salve-sre/salve/runbooks"
	"github.com/salve-sre/salve/workflows"
)

const shadowRunbookName = "shadow-restart"

// writeShadowRunbook writes the shipped restart-crashlooping runbook as a
// new, untrusted one in shadow mode, for its own alert.
func writeShadowRunbook(t *testing.T, dir string) {
	t.Helper()
	src, err := os.ReadFile("../../runbooks/restart-crashlooping.yaml")
	require.NoError(t, err)
	s := strings.Replace(string(src), "name: restart-crashlooping", "name: "+shadowRunbookName, 1)
	s = strings.Replace(s, `alertname="KubeDeploymentCrashLooping"`, `alertname="CanaryCrashLooping"`, 1)
	s = strings.Replace(s, "  safety:\n", "  safety:\n    mode: shadow\n    shadowWindow: 5m\n", 1)
	require.Contains(t, s, "mode: shadow")
	require.NoError(t, os.WriteFile(filepath.Join(dir, shadowRunbookName+".yaml"), []byte(s), 0o600))
}

// shadowToApprove walks a new runbook up the trust ladder against a real
// control plane and Prometheus: its first shadow run's alert resolves on
// its own, promotion is refused (audited); in its second a person
// restarts the deployment as the runbook would have, and promotion is
// allowed (audited); the file change it answers with, applied and
// reloaded, puts the runbook on the approve rung. The shadow runs never
// touch their deployments.
func shadowToApprove(t *testing.T, c kubernetes.Interface, d *app.Process, dir string) {
	ctx := context.Background()
	createDeployment(t, c, "canary1", "web", 1)
	createDeployment(t, c, "canary2", "web", 1)
	alert := func(status, ns string) string {
		return fmt.Sprintf(`{"version":"4","groupKey":"g","status":%q,"receiver":"salve","externalURL":"http://am",
"alerts":[{"status":%q,"fingerprint":%q,"labels":{"alertname":"CanaryCrashLooping","severity":"critical","namespace":%q,"deployment":"web"},
"annotations":{"salve_verify_for":"3s","salve_verify_within":"60s"},"startsAt":"2026-12-07T09:00:00Z","endsAt":"0001-01-01T00:00:00Z"}]}`,
			status, status, fingerprintOf(ns+"-web"), ns)
	}
	// shadowRun fires the alert, lets during act once the run has read its
	// target and verified, resolves the alert, and returns the finished
	// run's evidence.
	shadowRun := func(t *testing.T, ns, history string, during func()) *workflows.Evidence {
		t.Helper()
		wfID := domain.ShadowWorkflowID(shadowRunbookName, ns+"/web")
		require.Equal(t, http.StatusOK, postWebhook(t, d.URL, d.WebhookToken, alert("firing", ns)))
		require.Eventually(t, func() bool {
			det, code := getRun(t, d.URL, wfID)
			if code != http.StatusOK || det.Run == nil {
				return false
			}
			for _, s := range det.Run.Steps {
				if s.Name == "verify" && s.State == workflows.StepStateSucceeded {
					return true
				}
			}
			return false
		}, 2*time.Minute, 200*time.Millisecond, "the shadow run never verified")
		if during != nil {
			during()
		}
		require.Equal(t, http.StatusOK, postWebhook(t, d.URL, d.WebhookToken, alert("resolved", ns)))
		det := waitRunStatus(t, d.URL, wfID, runs.StatusSucceeded, 2*time.Minute)
		saveHistory(t, d.TemporalAddr, wfID, det.RunID, history)
		require.True(t, det.Run.Shadow)
		require.NotNil(t, det.Run.Evidence)
		var states []string
		for _, s := range det.Run.Steps {
			states = append(states, s.Name+":"+s.State)
		}
		require.Equal(t, []string{"before:succeeded", "restart:succeeded", "verify:succeeded"}, states)
		require.Equal(t, true, det.Run.Steps[1].Output["dryRun"], "the restart was planned, not run")

		// The audit log has the plan and the evidence (once the recorder
		// has stored them), and no restart.
		var planned, started, evidence int
		require.Eventually(t, func() bool {
			planned, started, evidence = 0, 0, 0
			for _, r := range auditEvents(t, d.URL, "workflowId="+wfID) {
				switch {
				case r.Event.Action == domain.ActionStepPlanned && r.Event.Step == "restart":
					planned++
				case r.Event.Action == domain.ActionStepStarted && r.Event.Step == "restart":
					started++
				case r.Event.Action == domain.ActionShadowEvidence:
					evidence++
					require.Equal(t, det.Run.Evidence.Verdict, r.Event.Outcome)
				}
			}
			return evidence == 1
		}, 30*time.Second, 100*time.Millisecond, "the evidence never reached the audit store")
		require.Equal(t, 1, planned)
		require.Zero(t, started, "a shadow run never starts a mutating step")
		require.Equal(t, 1, evidence)
		return det.Run.Evidence
	}
	promote := func(t *testing.T, to string) (int, map[string]any) {
		t.Helper()
		return call(t, http.MethodPost, d.URL+"/v1/runbooks/"+shadowRunbookName+"/promote", d.AdminToken, map[string]any{"to": to})
	}
	var ev trust.EvidenceAnswer
	evidenceURL := d.URL + "/v1/runbooks/" + shadowRunbookName + "/evidence"

	// 1. The alert resolves by itself: the runbook would have acted for
	// nothing, and the deployment was left alone.
	e := shadowRun(t, "canary1", "shadow-resolved", nil)
	require.Equal(t, workflows.VerdictResolvedOnItsOwn, e.Verdict, e.Summary)
	require.True(t, e.Resolved)
	require.Empty(t, e.Changes)
	require.Equal(t, "canary1/web", e.Planned[0].Target)
	require.Equal(t, "passed", e.Verify)
	dep, err := c.AppsV1().Deployments("canary1").Get(ctx, "web", metav1.GetOptions{})
	require.NoError(t, err)
	require.Empty(t, dep.Spec.Template.Annotations[kube.AnnotationRestartedAt], "the shadow run did not restart it")
	require.EqualValues(t, 1, dep.Generation, "the shadow run changed nothing")

	// One run compared, in which the runbook would have acted for
	// nothing: refused, audited.
	code, body := promote(t, trust.RungApprove)
	require.Equal(t, http.StatusConflict, code, "%v", body)
	require.Contains(t, body["error"], "1 runs compared with what happened instead, 2 needed")
	require.Contains(t, body["error"], "the runbook was right in 0% of 1 compared, 50% needed")
	refused := eventually(t, d.URL, "action="+domain.ActionPromotionRefused)
	require.Equal(t, shadowRunbookName, refused[0].Event.Runbook)
	require.Equal(t, "dev-admin", refused[0].Event.Actor.Name, "the admin who asked")

	// 2. A person rolls the deployment while the shadow run watches:
	// kubectl rollout restart, as the runbook would have.
	e = shadowRun(t, "canary2", "shadow-agreed", func() {
		patch := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{%q:%q}}}}}`, kube.AnnotationRestartedAt, time.Now().UTC().Format(time.RFC3339))
		_, err := c.AppsV1().Deployments("canary2").Patch(ctx, "web", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{})
		require.NoError(t, err)
	})
	require.Equal(t, workflows.VerdictAgreed, e.Verdict, e.Summary)
	require.Len(t, e.Changes, 1)
	require.Equal(t, workflows.ChangeRestarted, e.Changes[0].Change)

	getJSON(t, evidenceURL, &ev)
	require.Equal(t, trust.RungShadow, ev.Summary.Rung)
	require.Equal(t, 2, ev.Summary.ShadowRuns)
	require.Equal(t, 1, ev.Summary.Agreed)
	require.Equal(t, 1, ev.Summary.ResolvedOnItsOwn)
	require.True(t, ev.Allowed, ev.Missing)
	require.Equal(t, trust.RungApprove, ev.Next)

	// Above the threshold: promoted, audited with the evidence.
	code, body = promote(t, trust.RungApprove)
	require.Equal(t, http.StatusOK, code, "%v", body)
	require.Equal(t, trust.RungShadow, body["from"])
	promoted := eventually(t, d.URL, "action="+domain.ActionRunbookPromoted)
	require.Equal(t, trust.RungApprove, promoted[0].Event.Outcome)
	require.Equal(t, "0.500", promoted[0].Event.Detail["agreement"])
	require.Equal(t, "2", promoted[0].Event.Detail["evidenceRuns"])

	// The change reaches the runbook through its file, as a person (or
	// `salve runbook promote --write`) makes it, and a reload.
	path := filepath.Join(dir, shadowRunbookName+".yaml")
	src, err := os.ReadFile(path)
	require.NoError(t, err)
	out, err := runbooks.SetRung(src, trust.RungApprove)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, out, 0o600))
	code, body = call(t, http.MethodPost, d.URL+"/v1/runbooks/reload", d.AdminToken, nil)
	require.Equal(t, http.StatusOK, code, "%v", body)
	getJSON(t, evidenceURL, &ev)
	require.Equal(t, trust.RungApprove, ev.Summary.Rung, "%s", mustJSON(ev))
	require.Equal(t, trust.RungEnforce, ev.Next)
}

// eventually waits for exactly one audit record matching query.
func eventually(t *testing.T, base, query string) []audit.Record {
	t.Helper()
	var recs []audit.Record
	require.Eventually(t, func() bool {
		recs = auditEvents(t, base, query)
		return len(recs) > 0
	}, 30*time.Second, 100*time.Millisecond, "no audit record for %s", query)
	require.Len(t, recs, 1)
	return recs
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
