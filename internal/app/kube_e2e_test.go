package app_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/salve-sre/salve/activities/kube"
	"github.com/salve-sre/salve/internal/app"
	"github.com/salve-sre/salve/internal/runs"
	"github.com/salve-sre/salve/internal/testenv"
)

// The whole path with real parts, for each shipped Kubernetes runbook: an
// Alertmanager webhook reaches Salve, the runbook acts on a real control
// plane, verification queries a real Prometheus, and the run succeeds
// having acted exactly once.
func TestKubernetesRunbooksEndToEnd(t *testing.T) {
	k := testenv.Kube(t)
	cfg, err := clientcmd.BuildConfigFromFlags("", k.KubeconfigPath)
	require.NoError(t, err)
	c, err := kubernetes.NewForConfig(cfg)
	require.NoError(t, err)
	ctx := context.Background()

	// What kube-state-metrics, cAdvisor and the services would export,
	// healthy, so every verification holds: restarts steady, CPU at 10% of
	// requests, no 5xx.
	begin := time.Now()
	metrics := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := time.Since(begin).Seconds()
		fmt.Fprintf(w, "kube_pod_container_status_restarts_total{namespace=\"shop\",pod=\"cart-7d9f8-abcde\",container=\"app\"} 7\n")
		fmt.Fprintf(w, "container_cpu_usage_seconds_total{namespace=\"search\",pod=\"api-5c6d7-fghij\"} %g\n", 0.1*s)
		fmt.Fprintf(w, "kube_pod_container_resource_requests{resource=\"cpu\",namespace=\"search\",pod=\"api-5c6d7-fghij\"} 1\n")
		fmt.Fprintf(w, "http_requests_total{namespace=\"pay\",service=\"checkout\",code=\"200\"} %g\n", 10*s)
		fmt.Fprintf(w, "http_requests_total{namespace=\"pay\",service=\"checkout\",code=\"500\"} 3\n")
		for _, ns := range []string{"canary1", "canary2"} { // the shadow runbook's workloads
			fmt.Fprintf(w, "kube_pod_container_status_restarts_total{namespace=%q,pod=\"web-6b7c8-klmno\",container=\"app\"} 4\n", ns)
		}
	}))
	t.Cleanup(metrics.Close)
	prom := testenv.StartPrometheus(t, strings.TrimPrefix(metrics.URL, "http://"))
	prom.WaitTargetsUp(t)

	dir := t.TempDir()
	for _, name := range []string{"restart-crashlooping", "scale-out-on-saturation", "rollback-bad-rollout"} {
		rb, err := os.ReadFile("../../runbooks/" + name + ".yaml")
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, name+".yaml"), rb, 0o600))
	}
	writeShadowRunbook(t, dir)
	config := filepath.Join(t.TempDir(), "salve.yaml")
	require.NoError(t, os.WriteFile(config, []byte("trust: {minRuns: 2, minAgreement: 0.5}\n"), 0o600))
	dctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	d, err := app.Start(dctx, app.Config{
		DataDir: t.TempDir(), Listen: "127.0.0.1:0", WebhookToken: "test-token-6f1c0d9e7a3b42c8a6e1f0d4b7c9e2a1", RunbooksDir: dir,
		TemporalPort: -1, NATSPort: -1, UIPort: -1, Version: "test",
		Kubeconfig: k.KubeconfigPath, PrometheusURL: prom.URL, ConfigFile: config,
		Log: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	require.NoError(t, err)
	registerDev(d)
	t.Cleanup(d.Close)

	fire := func(t *testing.T, fingerprint, labels string) {
		t.Helper()
		body := fmt.Sprintf(`{"version":"4","groupKey":"g","status":"firing","receiver":"salve","externalURL":"http://am",
"alerts":[{"status":"firing","fingerprint":%q,"labels":%s,
"annotations":{"salve_verify_for":"3s","salve_verify_within":"60s"},
"startsAt":%q,"endsAt":"0001-01-01T00:00:00Z"}]}`, fingerprint, labels, time.Now().Add(-5*time.Minute).UTC().Format(time.RFC3339))
		require.Equal(t, http.StatusOK, postWebhook(t, d.URL, d.WebhookToken, body))
		// Alertmanager's retry of the same notification changes nothing.
		require.Equal(t, http.StatusOK, postWebhook(t, d.URL, d.WebhookToken, body))
	}
	succeeded := func(t *testing.T, wfID string, steps ...string) {
		t.Helper()
		det := waitRunStatus(t, d.URL, wfID, runs.StatusSucceeded, 3*time.Minute)
		require.NotNil(t, det.Run)
		var states []string
		for _, s := range det.Run.Steps {
			states = append(states, s.Name+":"+s.State)
		}
		require.Equal(t, steps, states)
		started := map[string]int{}
		for _, r := range auditEvents(t, d.URL, "workflowId="+wfID) {
			if r.Event.Action == "step.started" {
				started[r.Event.Step]++
			}
		}
		for _, s := range det.Run.Steps {
			if s.State == "succeeded" {
				require.Equal(t, 1, started[s.Name], "step %s started once", s.Name)
			}
		}
	}

	t.Run("restart-crashlooping", func(t *testing.T) {
		createDeployment(t, c, "shop", "cart", 2)
		fire(t, "0000000000c0ffee", `{"alertname":"KubeDeploymentCrashLooping","severity":"critical","namespace":"shop","deployment":"cart"}`)
		const wfID = "salve/restart-crashlooping/shop/cart"
		succeeded(t, wfID, "before:succeeded", "restart:succeeded", "verify:succeeded")
		dep, err := c.AppsV1().Deployments("shop").Get(ctx, "cart", metav1.GetOptions{})
		require.NoError(t, err)
		require.NotEmpty(t, dep.Spec.Template.Annotations[kube.AnnotationRestartedAt], "the pods were restarted")
		require.Regexp(t, "^"+regexp.QuoteMeta(wfID)+"/[^/]+/restart restart at=", dep.Annotations[kube.AnnotationAction])
		rs, err := c.AppsV1().ReplicaSets("shop").List(ctx, metav1.ListOptions{})
		require.NoError(t, err)
		require.Len(t, rs.Items, 2, "restarted once: the original ReplicaSet and one new one")
	})

	t.Run("scale-out-on-saturation", func(t *testing.T) {
		createDeployment(t, c, "search", "api", 2)
		fire(t, "000000000005ca1e", `{"alertname":"DeploymentCPUSaturated","namespace":"search","deployment":"api"}`)
		succeeded(t, "salve/scale-out-on-saturation/search/api", "scale:succeeded", "rollout:succeeded", "verify:succeeded")
		dep, err := c.AppsV1().Deployments("search").Get(ctx, "api", metav1.GetOptions{})
		require.NoError(t, err)
		require.EqualValues(t, 4, *dep.Spec.Replicas, "2 + the default step of 2, once")
		require.EqualValues(t, 4, dep.Status.AvailableReplicas)
	})

	t.Run("rollback-bad-rollout", func(t *testing.T) {
		createDeployment(t, c, "pay", "checkout", 1)
		dep, err := c.AppsV1().Deployments("pay").Get(ctx, "checkout", metav1.GetOptions{})
		require.NoError(t, err)
		dep.Spec.Template.Spec.Containers[0].Image = "registry.example/checkout:2.0-bad"
		_, err = c.AppsV1().Deployments("pay").Update(ctx, dep, metav1.UpdateOptions{})
		require.NoError(t, err)
		require.Eventually(t, func() bool {
			d, err := c.AppsV1().Deployments("pay").Get(ctx, "checkout", metav1.GetOptions{})
			return err == nil && d.Annotations["deployment.kubernetes.io/revision"] == "2" && d.Status.UpdatedReplicas == 1 && d.Status.AvailableReplicas == 1
		}, 90*time.Second, 200*time.Millisecond)
		fire(t, "000000000000badd", `{"alertname":"HighErrorRateAfterDeploy","namespace":"pay","deployment":"checkout"}`)
		succeeded(t, "salve/rollback-bad-rollout/pay/checkout", "before:succeeded", "rollback:succeeded", "verify:succeeded", "announce:skipped")
		dep, err = c.AppsV1().Deployments("pay").Get(ctx, "checkout", metav1.GetOptions{})
		require.NoError(t, err)
		require.Equal(t, "registry.example/checkout:1.0", dep.Spec.Template.Spec.Containers[0].Image, "back on the good image")
		require.Equal(t, "3", dep.Annotations["deployment.kubernetes.io/revision"], "rolled back once (revision 1 renumbered to 3)")
	})

	t.Run("shadow, evidence and promotion", func(t *testing.T) { shadowToApprove(t, c, d, dir) })
}

func createDeployment(t *testing.T, c kubernetes.Interface, ns, name string, replicas int32) {
	t.Helper()
	ctx := context.Background()
	_, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	require.NoError(t, err)
	require.Eventually(t, func() bool { // pods are refused until the default ServiceAccount exists
		_, err := c.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err == nil
	}, 30*time.Second, 100*time.Millisecond)
	labels := map[string]string{"app": name}
	_, err = c.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					Containers:                    []corev1.Container{{Name: "app", Image: "registry.example/" + name + ":1.0"}},
					TerminationGracePeriodSeconds: new(int64),
				},
			},
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		d, err := c.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		return err == nil && d.Status.AvailableReplicas == replicas
	}, 90*time.Second, 200*time.Millisecond, "deployment %s/%s never became available", ns, name)
}
