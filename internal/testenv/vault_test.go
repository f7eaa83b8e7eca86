package testenv_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/internal/testenv"
)

// TestVault proves the dev server is a working Vault: KV v2 at secret/,
// policies and short-lived child tokens that are revoked, AppRole logins
// and a file audit device. (This build has no transit engine: see
// internal/tools/vault.)
func TestVault(t *testing.T) {
	v := testenv.Vault(t)

	// A file audit device, enabled first so it sees everything below.
	auditLog := filepath.Join(t.TempDir(), "audit.log")
	v.MustDo(t, http.MethodPut, "sys/audit/file", map[string]any{
		"type": "file", "options": map[string]string{"file_path": auditLog},
	})

	// KV v2 at secret/, as `vault server -dev` mounts it.
	mounts := v.MustDo(t, http.MethodGet, "sys/mounts", nil)
	secretMount := dig(t, mounts, "data", "secret/")
	assert.Equal(t, "kv", dig(t, secretMount, "type"))
	assert.Equal(t, "2", dig(t, secretMount, "options", "version"))
	v.MustDo(t, http.MethodPut, "secret/data/app", map[string]any{"data": map[string]any{"password": "s3cret"}})
	v.MustDo(t, http.MethodPut, "secret/data/other", map[string]any{"data": map[string]any{"password": "hidden"}})
	got := v.MustDo(t, http.MethodGet, "secret/data/app", nil)
	assert.Equal(t, "s3cret", dig(t, got, "data", "data", "password"))
	assert.EqualValues(t, 1, dig(t, got, "data", "metadata", "version"))

	// A policy and a child token with a TTL that can read only its path.
	v.MustDo(t, http.MethodPut, "sys/policies/acl/app-read", map[string]any{
		"policy": `path "secret/data/app" { capabilities = ["read"] }`,
	})
	created := v.MustDo(t, http.MethodPost, "auth/token/create", map[string]any{
		"policies": []string{"app-read"}, "ttl": "2m", "no_default_policy": true,
	})
	child := dig(t, created, "auth", "client_token").(string)
	assert.EqualValues(t, 120, dig(t, created, "auth", "lease_duration"))
	status, self := v.DoToken(t, child, http.MethodGet, "auth/token/lookup-self", nil)
	require.Equal(t, http.StatusForbidden, status, "no default policy, so no lookup-self: %v", self)
	status, got = v.DoToken(t, child, http.MethodGet, "secret/data/app", nil)
	require.Equal(t, http.StatusOK, status, "%v", got)
	assert.Equal(t, "s3cret", dig(t, got, "data", "data", "password"))
	status, _ = v.DoToken(t, child, http.MethodGet, "secret/data/other", nil)
	assert.Equal(t, http.StatusForbidden, status)
	status, _ = v.DoToken(t, child, http.MethodPut, "secret/data/app", map[string]any{"data": map[string]any{"x": "y"}})
	assert.Equal(t, http.StatusForbidden, status)
	lookup := v.MustDo(t, http.MethodPost, "auth/token/lookup", map[string]any{"token": child})
	ttl := dig(t, lookup, "data", "ttl").(float64)
	assert.True(t, ttl > 0 && ttl <= 120, "ttl %v", ttl)
	v.MustDo(t, http.MethodPost, "auth/token/revoke", map[string]any{"token": child})
	status, _ = v.DoToken(t, child, http.MethodGet, "secret/data/app", nil)
	assert.Equal(t, http.StatusForbidden, status, "a revoked token is refused")

	// AppRole: a role, its role_id and a secret_id, a login, a token.
	v.MustDo(t, http.MethodPost, "sys/auth/approle", map[string]any{"type": "approle"})
	v.MustDo(t, http.MethodPost, "auth/approle/role/salve", map[string]any{
		"token_policies": []string{"app-read"}, "token_ttl": "5m", "secret_id_ttl": "10m",
	})
	roleID := dig(t, v.MustDo(t, http.MethodGet, "auth/approle/role/salve/role-id", nil), "data", "role_id").(string)
	secretID := dig(t, v.MustDo(t, http.MethodPost, "auth/approle/role/salve/secret-id", nil), "data", "secret_id").(string)
	status, login := v.DoToken(t, "", http.MethodPost, "auth/approle/login", map[string]any{"role_id": roleID, "secret_id": secretID})
	require.Equal(t, http.StatusOK, status, "%v", login)
	appToken := dig(t, login, "auth", "client_token").(string)
	assert.Contains(t, dig(t, login, "auth", "token_policies"), "app-read")
	assert.EqualValues(t, 300, dig(t, login, "auth", "lease_duration"))
	status, got = v.DoToken(t, appToken, http.MethodGet, "secret/data/app", nil)
	require.Equal(t, http.StatusOK, status, "%v", got)
	assert.Equal(t, "s3cret", dig(t, got, "data", "data", "password"))
	// A wrong secret_id is refused. Vault 1.14.0 answers 500, not 400: after
	// its user-lockout bookkeeping, vault/request_handling.go returns the
	// error without the response that would have made it a 400.
	status, refused := v.DoToken(t, "", http.MethodPost, "auth/approle/login", map[string]any{"role_id": roleID, "secret_id": "wrong"})
	assert.Equal(t, http.StatusInternalServerError, status)
	assert.Equal(t, []any{"invalid secret id"}, refused["errors"])

	audit, err := os.ReadFile(auditLog)
	require.NoError(t, err)
	assert.Contains(t, string(audit), `"path":"auth/approle/login"`)
	assert.Contains(t, string(audit), `"path":"secret/data/app"`)
}

// TestVaultKubernetes proves the Kubernetes secrets engine works against
// the real test control plane: it issues a leased ServiceAccount token
// with a generated Role and RoleBinding that allow exactly what the Vault
// role says in one namespace, and revoking the lease deletes them, after
// which the token is refused.
func TestVaultKubernetes(t *testing.T) {
	k := testenv.Kube(t)
	v := testenv.Vault(t)

	deployment := func(name string) map[string]any {
		labels := map[string]string{"app": name}
		return map[string]any{
			"apiVersion": "apps/v1",
			"kind":       "Deployment",
			"metadata":   map[string]any{"name": name},
			"spec": map[string]any{
				"replicas": 1,
				"selector": map[string]any{"matchLabels": labels},
				"template": map[string]any{
					"metadata": map[string]any{"labels": labels},
					"spec": map[string]any{
						"containers": []any{map[string]any{"name": name, "image": "registry.invalid/" + name + ":1"}},
					},
				},
			},
		}
	}
	for _, ns := range []string{"apps", "other"} {
		k.MustDo(t, http.MethodPost, "/api/v1/namespaces", map[string]any{
			"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": ns},
		}, nil)
		k.MustDo(t, http.MethodPost, "/apis/apps/v1/namespaces/"+ns+"/deployments", deployment("web"), nil)
	}

	v.MustDo(t, http.MethodPost, "sys/mounts/kubernetes", map[string]any{"type": "kubernetes"})
	v.MustDo(t, http.MethodPost, "kubernetes/config", map[string]any{
		"kubernetes_host":      k.Host,
		"kubernetes_ca_cert":   string(k.CACertPEM),
		"service_account_jwt":  k.AdminToken,
		"disable_local_ca_jwt": true,
	})
	v.MustDo(t, http.MethodPost, "kubernetes/roles/scaler", map[string]any{
		"allowed_kubernetes_namespaces": []string{"apps"},
		"kubernetes_role_type":          "Role",
		"generated_role_rules": `rules:
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list"]
- apiGroups: ["apps"]
  resources: ["deployments/scale"]
  verbs: ["get", "update", "patch"]
`,
		"token_default_ttl": "10m", // the API server's minimum
		"token_max_ttl":     "1h",
	})

	// Not an allowed namespace: refused, and nothing is created.
	status, refused := v.Do(t, http.MethodPost, "kubernetes/creds/scaler", map[string]any{"kubernetes_namespace": "other"})
	assert.Equal(t, http.StatusBadRequest, status, "%v", refused)
	assert.Contains(t, fmt.Sprint(refused["errors"]), "not present in role's allowed_kubernetes_namespaces")
	var accounts struct {
		Items []struct{ Metadata struct{ Name string } }
	}
	k.MustDo(t, http.MethodGet, "/api/v1/namespaces/other/serviceaccounts", nil, &accounts)
	for _, sa := range accounts.Items {
		assert.Equal(t, "default", sa.Metadata.Name)
	}

	creds := v.MustDo(t, http.MethodPost, "kubernetes/creds/scaler", map[string]any{"kubernetes_namespace": "apps"})
	leaseID := dig(t, creds, "lease_id").(string)
	assert.EqualValues(t, 600, dig(t, creds, "lease_duration"))
	token := dig(t, creds, "data", "service_account_token").(string)
	saName := dig(t, creds, "data", "service_account_name").(string)
	assert.Equal(t, "apps", dig(t, creds, "data", "service_account_namespace"))
	require.NotEmpty(t, token)

	// The generated ServiceAccount, Role and RoleBinding share one name.
	generated := []string{
		"/api/v1/namespaces/apps/serviceaccounts/" + saName,
		"/apis/rbac.authorization.k8s.io/v1/namespaces/apps/roles/" + saName,
		"/apis/rbac.authorization.k8s.io/v1/namespaces/apps/rolebindings/" + saName,
	}
	for _, path := range generated {
		k.MustDo(t, http.MethodGet, path, nil, nil)
	}

	kubeAs := func(method, path string, body []byte) int {
		t.Helper()
		var r io.Reader
		if body != nil {
			r = bytes.NewReader(body)
		}
		req, err := http.NewRequest(method, k.Host+path, r)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Accept", "application/json")
		if method == http.MethodPatch {
			req.Header.Set("Content-Type", "application/merge-patch+json")
		}
		resp, err := k.HTTPClient().Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	assert.Equal(t, http.StatusOK, kubeAs(http.MethodGet, "/apis/apps/v1/namespaces/apps/deployments", nil))
	assert.Equal(t, http.StatusOK, kubeAs(http.MethodGet, "/apis/apps/v1/namespaces/apps/deployments/web", nil))
	assert.Equal(t, http.StatusOK, kubeAs(http.MethodPatch, "/apis/apps/v1/namespaces/apps/deployments/web/scale",
		[]byte(`{"spec":{"replicas":2}}`)))
	var scaled struct{ Spec struct{ Replicas int } }
	k.MustDo(t, http.MethodGet, "/apis/apps/v1/namespaces/apps/deployments/web", nil, &scaled)
	assert.Equal(t, 2, scaled.Spec.Replicas)
	// Nothing else: not the Deployment itself, not pods, not another namespace.
	assert.Equal(t, http.StatusForbidden, kubeAs(http.MethodDelete, "/apis/apps/v1/namespaces/apps/deployments/web", nil))
	assert.Equal(t, http.StatusForbidden, kubeAs(http.MethodGet, "/api/v1/namespaces/apps/pods", nil))
	assert.Equal(t, http.StatusForbidden, kubeAs(http.MethodGet, "/apis/apps/v1/namespaces/other/deployments", nil))
	assert.Equal(t, http.StatusForbidden, kubeAs(http.MethodPatch, "/apis/apps/v1/namespaces/other/deployments/web/scale",
		[]byte(`{"spec":{"replicas":2}}`)))

	// Revoking the lease deletes the ServiceAccount, Role and RoleBinding;
	// the token is then refused (the API server caches a successful token
	// review for up to 10 s).
	revokedAt := time.Now()
	status, out := v.Do(t, http.MethodPut, "sys/leases/revoke", map[string]any{"lease_id": leaseID})
	require.Equal(t, http.StatusNoContent, status, "%v", out)
	require.Eventually(t, func() bool {
		for _, path := range generated {
			if code, _ := k.Do(t.Context(), http.MethodGet, path, nil, nil); code != http.StatusNotFound {
				return false
			}
		}
		return true
	}, 30*time.Second, 200*time.Millisecond, "the generated objects are deleted")
	require.Eventually(t, func() bool {
		return kubeAs(http.MethodGet, "/apis/apps/v1/namespaces/apps/deployments", nil) == http.StatusUnauthorized
	}, 30*time.Second, 250*time.Millisecond, "the revoked token is refused")
	t.Logf("token refused %s after the lease was revoked", time.Since(revokedAt).Round(100*time.Millisecond))
	status, _ = v.Do(t, http.MethodPut, "sys/leases/lookup", map[string]any{"lease_id": leaseID})
	assert.Equal(t, http.StatusBadRequest, status, "the lease is gone")
}

// dig walks nested JSON objects by key and fails the test if one is missing.
func dig(t *testing.T, v any, keys ...string) any {
	t.Helper()
	for i, key := range keys {
		m, ok := v.(map[string]any)
		require.True(t, ok, "%v is not an object at %v", v, keys[:i])
		v, ok = m[key]
		require.True(t, ok, "no %q in %v", fmt.Sprint(keys[:i+1]), m)
	}
	return v
}
