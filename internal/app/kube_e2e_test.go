package app_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
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

// The whole path with real parts: an Alertmanager webhook reaches Salve,
// the shipped restart-crashlooping runbook restarts the Deployment on a
// real control plane, verification queries a real Prometheus, the run
// succeeds, and the Deployment was restarted exactly once.
func TestRestartCrashloopingEndToEnd(t *testing.T) {
	k := testenv.Kube(t)
	cfg, err := clientcmd.BuildConfigFromFlags("", k.KubeconfigPath)
	require.NoError(t, err)
	c, err := kubernetes.NewForConfig(cfg)
	require.NoError(t, err)
	ctx := context.Background()
	createDeployment(t, c, "shop", "cart", 2)

	// What kube-state-metrics would export: the container restart counter,
	// steady since the restart, so the verification holds.
	metrics := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, `# TYPE kube_pod_container_status_restarts_total counter`)
		fmt.Fprintln(w, `kube_pod_container_status_restarts_total{namespace="shop",pod="cart-7d9f8-abcde",container="app"} 7`)
	}))
	t.Cleanup(metrics.Close)
	prom := testenv.StartPrometheus(t, strings.TrimPrefix(metrics.URL, "http://"))
	prom.WaitTargetsUp(t)

	dir := t.TempDir()
	rb, err := os.ReadFile("../../runbooks/restart-crashlooping.yaml")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "restart-crashlooping.yaml"), rb, 0o600))
	dctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	d, err := app.StartDev(dctx, app.DevConfig{
		DataDir: t.TempDir(), Listen: "127.0.0.1:0", WebhookToken: "test-token", RunbooksDir: dir,
		TemporalPort: -1, NATSPort: -1, UIPort: -1, Version: "test",
		Kubeconfig: k.KubeconfigPath, PrometheusURL: prom.URL,
		Log: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	require.NoError(t, err)
	t.Cleanup(d.Close)

	startsAt := time.Now().Add(-5 * time.Minute).UTC().Format(time.RFC3339)
	body := fmt.Sprintf(`{"version":"4","groupKey":"g","status":"firing","receiver":"salve","externalURL":"http://am",
"alerts":[{"status":"firing","fingerprint":"c0ffee",
"labels":{"alertname":"KubeDeploymentCrashLooping","severity":"critical","namespace":"shop","deployment":"cart"},
"annotations":{"salve_verify_for":"3s","salve_verify_within":"60s"},
"startsAt":%q,"endsAt":"0001-01-01T00:00:00Z"}]}`, startsAt)
	require.Equal(t, http.StatusOK, postWebhook(t, d.URL, d.WebhookToken, body))
	// Alertmanager's retry of the same notification changes nothing.
	require.Equal(t, http.StatusOK, postWebhook(t, d.URL, d.WebhookToken, body))

	const wfID = "salve/restart-crashlooping/shop/cart"
	det := waitRunStatus(t, d.URL, wfID, runs.StatusSucceeded, 3*time.Minute)
	require.NotNil(t, det.Run)
	var states []string
	for _, s := range det.Run.Steps {
		states = append(states, s.Name+":"+s.State)
	}
	require.Equal(t, []string{"before:succeeded", "restart:succeeded", "verify:succeeded"}, states)

	dep, err := c.AppsV1().Deployments("shop").Get(ctx, "cart", metav1.GetOptions{})
	require.NoError(t, err)
	require.NotEmpty(t, dep.Spec.Template.Annotations[kube.AnnotationRestartedAt], "the pods were restarted")
	require.True(t, strings.HasPrefix(dep.Annotations[kube.AnnotationAction], wfID+"/restart restart at="), dep.Annotations[kube.AnnotationAction])
	rs, err := c.AppsV1().ReplicaSets("shop").List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	require.Len(t, rs.Items, 2, "restarted once: the original ReplicaSet and one new one")

	var started int
	for _, r := range auditEvents(t, d.URL, "workflowId="+wfID) {
		if r.Event.Action == "step.started" && r.Event.Step == "restart" {
			started++
		}
	}
	require.Equal(t, 1, started, "the restart step started once")
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
