package app_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/salve-sre/salve/internal/app"
	"github.com/salve-sre/salve/internal/runs"
)

const scaleRunbook = `apiVersion: salve/v1
kind: Runbook
metadata: {name: scale}
spec:
  trigger:
    matchers: ['alertname="Saturated"']
    incidentKey: '{{ .Labels.instance }}'
  params:
    deployment: {fromAnnotation: deployment, required: true, type: k8sName}
  steps:
    - {name: scale, action: kubernetes.scale, with: {namespace: default, name: '{{ .Params.deployment }}', delta: 1, max: 5}}
    - {name: rollout, action: kubernetes.wait_rollout, with: {namespace: default, name: '{{ .Params.deployment }}'}, timeout: 2m}
`

// `salve dev --with-kube` starts a local cluster, prints it in the banner,
// and kubernetes.* steps act on it; Close stops it.
func TestDevWithKube(t *testing.T) {
	rbDir := t.TempDir()
	writeRunbook(t, rbDir, "scale", scaleRunbook)
	dataDir := t.TempDir()
	var banner bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	d, err := app.Start(ctx, app.Config{
		DataDir:      dataDir,
		Listen:       "127.0.0.1:0",
		WebhookToken: "test-token-6f1c0d9e7a3b42c8a6e1f0d4b7c9e2a1",
		RunbooksDir:  rbDir,
		WithKube:     true,
		TemporalPort: -1,
		NATSPort:     -1,
		DisableUI:    true,
		Version:      "test",
		Log:          slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo})),
		Out:          &banner,
	})
	require.NoError(t, err)
	registerDev(d)
	closed := false
	t.Cleanup(func() {
		if !closed {
			d.Close()
		}
	})
	require.Equal(t, filepath.Join(dataDir, "kube", "kubeconfig"), d.Kubeconfig)
	require.Contains(t, banner.String(), "  Kubernetes    "+d.KubeHost+"  (local test cluster; KUBECONFIG="+d.Kubeconfig+" kubectl get pods -A)\n")

	cfg, err := clientcmd.BuildConfigFromFlags("", d.Kubeconfig)
	require.NoError(t, err)
	kc, err := kubernetes.NewForConfig(cfg)
	require.NoError(t, err)
	labels := map[string]string{"app": "web"}
	replicas := int32(1)
	_, err = kc.AppsV1().Deployments("default").Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "registry.invalid/web:1"}}},
			},
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err)

	alert := webhook("firing", "Saturated", "web", "beef", time.Now().Add(-time.Minute), map[string]string{"deployment": "web"})
	require.Equal(t, 200, postWebhook(t, d.URL, d.WebhookToken, alert))
	det := waitRunStatus(t, d.URL, "salve/scale/web", runs.StatusSucceeded, 2*time.Minute)
	require.NotNil(t, det.Run, det.RunError)
	dep, err := kc.AppsV1().Deployments("default").Get(ctx, "web", metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, int32(2), *dep.Spec.Replicas)
	require.Equal(t, int32(2), dep.Status.AvailableReplicas)

	// Close stops the cluster: nothing answers on its port any more.
	d.Close()
	closed = true
	_, err = kc.Discovery().ServerVersion()
	require.Error(t, err)
	_, err = os.Stat(filepath.Join(dataDir, "kube", "etcd.log"))
	require.NoError(t, err, "the processes' logs are kept in the data dir")
}
