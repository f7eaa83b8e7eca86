package testenv

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

// VaultProxy sits between Salve and a real Vault. It records the
// credentials Vault issues (so leak tests know what to search for) and can
// make Vault unreachable for a while (503 to every request) without losing
// the dev server's in-memory state, as stopping it would.
type VaultProxy struct {
	URL  string
	Down atomic.Bool

	mu      sync.Mutex
	tokens  []string
	issues  int
	revokes int
}

// NewVaultProxy proxies to v.
func NewVaultProxy(t testing.TB, v *VaultServer) *VaultProxy {
	t.Helper()
	target, err := url.Parse(v.Addr)
	require.NoError(t, err)
	p := &VaultProxy{}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ModifyResponse = func(resp *http.Response) error {
		path := resp.Request.URL.Path
		if os.Getenv("SALVE_DEBUG_PROXY") != "" {
			fmt.Fprintf(os.Stderr, "vaultproxy: %s %s -> %d\n", resp.Request.Method, path, resp.StatusCode)
		}
		if strings.Contains(path, "/creds/") && resp.StatusCode == http.StatusOK {
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				return err
			}
			resp.Body = io.NopCloser(bytes.NewReader(body))
			var sec struct {
				Data map[string]any `json:"data"`
			}
			if json.Unmarshal(body, &sec) == nil {
				if tok, ok := sec.Data["service_account_token"].(string); ok {
					p.mu.Lock()
					p.tokens = append(p.tokens, tok)
					p.issues++
					p.mu.Unlock()
				}
			}
		}
		if strings.HasSuffix(path, "/sys/leases/revoke") && resp.StatusCode < 300 {
			p.mu.Lock()
			p.revokes++
			p.mu.Unlock()
		}
		return nil
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.Down.Load() {
			http.Error(w, `{"errors":["vault unreachable (test outage)"]}`, http.StatusServiceUnavailable)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	p.URL = srv.URL
	return p
}

// Tokens returns the service-account tokens Vault issued so far.
func (p *VaultProxy) Tokens() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.tokens...)
}

// Counts returns how many credentials were issued and leases revoked.
func (p *VaultProxy) Counts() (issued, revoked int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.issues, p.revokes
}

// SetupKubernetesEngine mounts Vault's Kubernetes secrets engine against k
// and creates role (generated-role mode) for namespace with rules (YAML).
func SetupKubernetesEngine(t testing.TB, v *VaultServer, k *KubeCluster, role, namespace, rules string) {
	t.Helper()
	if status, _ := v.Do(t, http.MethodGet, "kubernetes/config", nil); status != http.StatusOK {
		v.MustDo(t, http.MethodPost, "sys/mounts/kubernetes", map[string]any{"type": "kubernetes"})
		v.MustDo(t, http.MethodPost, "kubernetes/config", map[string]any{
			"kubernetes_host":      k.Host,
			"kubernetes_ca_cert":   string(k.CACertPEM),
			"service_account_jwt":  k.AdminToken,
			"disable_local_ca_jwt": true,
		})
	}
	v.MustDo(t, http.MethodPost, "kubernetes/roles/"+role, map[string]any{
		"allowed_kubernetes_namespaces": []string{namespace},
		"kubernetes_role_type":          "Role",
		"generated_role_rules":          rules,
		"token_default_ttl":             "10m", // the API server's minimum
		"token_max_ttl":                 "1h",
	})
}

// SalveStepRules are the Kubernetes RBAC rules Salve's kubernetes.* steps
// need on one namespace (the Vault role for a namespace grants these).
const SalveStepRules = `rules:
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets", "replicasets"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["apps"]
  resources: ["deployments/scale", "statefulsets/scale"]
  verbs: ["get", "update", "patch"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "delete"]
`
