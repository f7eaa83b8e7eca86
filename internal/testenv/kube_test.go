package testenv_test

import (
	"context"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/internal/testenv"
)

// TestKube proves the control plane is a working cluster: a Deployment's
// pods are scheduled onto kwok's nodes and become available, scaling
// works, and ServiceAccount tokens are issued and accepted.
func TestKube(t *testing.T) {
	k := testenv.Kube(t)
	require.FileExists(t, k.KubeconfigPath)
	require.Len(t, k.Nodes, 2)

	const deployments = "/apis/apps/v1/namespaces/default/deployments"
	labels := map[string]string{"app": "web"}
	k.MustDo(t, http.MethodPost, deployments, map[string]any{
		"apiVersion": "apps/v1",
		"kind":       "Deployment",
		"metadata":   map[string]any{"name": "web"},
		"spec": map[string]any{
			"replicas": 2,
			"selector": map[string]any{"matchLabels": labels},
			"template": map[string]any{
				"metadata": map[string]any{"labels": labels},
				"spec": map[string]any{
					"containers": []any{map[string]any{"name": "web", "image": "registry.invalid/web:1"}},
				},
			},
		},
	}, nil)
	waitAvailable(t, k, deployments+"/web", 2)

	k.MustDo(t, http.MethodPatch, deployments+"/web/scale", map[string]any{"spec": map[string]any{"replicas": 3}}, nil)
	waitAvailable(t, k, deployments+"/web", 3)

	var pods struct {
		Items []struct {
			Spec   struct{ NodeName string }
			Status struct{ Phase string }
		}
	}
	k.MustDo(t, http.MethodGet, "/api/v1/namespaces/default/pods?labelSelector=app%3Dweb", nil, &pods)
	require.Len(t, pods.Items, 3)
	for _, p := range pods.Items {
		assert.Contains(t, k.Nodes, p.Spec.NodeName)
		assert.Equal(t, "Running", p.Status.Phase)
	}

	// The controller-manager publishes the CA to every namespace, and a
	// ServiceAccount token authenticates (RBAC then denies it: 403, not 401).
	k.MustDo(t, http.MethodGet, "/api/v1/namespaces/default/configmaps/kube-root-ca.crt", nil, nil)
	var tr struct{ Status struct{ Token string } }
	k.MustDo(t, http.MethodPost, "/api/v1/namespaces/default/serviceaccounts/default/token",
		map[string]any{"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": map[string]any{}}, &tr)
	require.NotEmpty(t, tr.Status.Token)
	req, err := http.NewRequest(http.MethodGet, k.Host+"/api/v1/namespaces/default/pods", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+tr.Status.Token)
	resp, err := k.HTTPClient().Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)

	kubeconfig, err := os.ReadFile(k.KubeconfigPath)
	require.NoError(t, err)
	assert.Contains(t, string(kubeconfig), k.Host)
}

// waitAvailable waits until the Deployment at path has rolled out want
// available replicas.
func waitAvailable(t *testing.T, k *testenv.KubeCluster, path string, want int) {
	t.Helper()
	var last any
	ok := assert.Eventually(t, func() bool {
		var d struct {
			Metadata struct{ Generation int64 }
			Status   struct {
				ObservedGeneration                           int64
				Replicas, UpdatedReplicas, AvailableReplicas int
			}
		}
		if _, err := k.Do(context.Background(), http.MethodGet, path, nil, &d); err != nil {
			last = err
			return false
		}
		last = d.Status
		s := d.Status
		return s.ObservedGeneration >= d.Metadata.Generation &&
			s.Replicas == want && s.UpdatedReplicas == want && s.AvailableReplicas == want
	}, 2*time.Minute, 250*time.Millisecond)
	require.True(t, ok, "%s never had %d available replicas; last status %+v", path, want, last)
}
