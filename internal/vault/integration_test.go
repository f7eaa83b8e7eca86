package vault_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/salve-sre/salve/activities/kube"
	"github.com/salve-sre/salve/activities/step"
	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/internal/testenv"
	"github.com/salve-sre/salve/internal/tracing"
	"github.com/salve-sre/salve/internal/tracing/tracingtest"
	"github.com/salve-sre/salve/internal/vault"
)

type auditLog struct {
	mu  sync.Mutex
	evs []domain.AuditEvent
}

func (a *auditLog) Record(_ context.Context, ev domain.AuditEvent) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.evs = append(a.evs, ev)
	return nil
}

func (a *auditLog) count(action string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, ev := range a.evs {
		if ev.Action == action {
			n++
		}
	}
	return n
}

func adminClient(t *testing.T, k *testenv.KubeCluster) kubernetes.Interface {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", k.KubeconfigPath)
	require.NoError(t, err)
	c, err := kubernetes.NewForConfig(cfg)
	require.NoError(t, err)
	return c
}

func createDeployment(t *testing.T, c kubernetes.Interface, ns string) {
	t.Helper()
	ctx := context.Background()
	_, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	require.NoError(t, err)
	one := int32(1)
	labels := map[string]string{"app": "web"}
	_, err = c.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{Replicas: &one, Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "registry.example/web:1"}}}}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
}

// tokenClient acts with a captured service-account token, as an attacker
// who stole it would.
func tokenClient(t *testing.T, k *testenv.KubeCluster, token string) kubernetes.Interface {
	t.Helper()
	c, err := kubernetes.NewForConfig(&rest.Config{Host: k.Host, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{CAData: k.CACertPEM}})
	require.NoError(t, err)
	return c
}

// Against a real Vault and a real control plane: a scale step acts with a
// token Vault issued for its namespace alone; the token cannot touch
// another namespace; when the step ends the lease is revoked and the API
// server refuses the token.
func TestPerStepKubernetesCredentials(t *testing.T) {
	k := testenv.Kube(t)
	v := testenv.Vault(t)
	proxy := testenv.NewVaultProxy(t, v)
	admin := adminClient(t, k)
	createDeployment(t, admin, "shop")
	createDeployment(t, admin, "other")
	testenv.SetupKubernetesEngine(t, v, k, "salve-shop", "shop", testenv.SalveStepRules)

	ctx := context.Background()
	vc, err := vault.New(ctx, vault.Config{Addr: proxy.URL, Token: v.RootToken}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(vc.Close)
	cluster, _, err := vault.ClustersFromKubeconfig(k.KubeconfigPath)
	require.NoError(t, err)
	audit := &auditLog{}
	counters := &vault.LeaseCounters{}
	creds := &vault.KubeCredentials{Vault: vc, Cluster: cluster, Audit: audit, Metrics: counters}
	scale := kube.Specs(kube.Options{Clients: creds})[0]
	require.Equal(t, kube.KindScale, scale.Kind)

	req := step.Request{
		WorkflowID: "salve/scale/shop", RunID: "r1", Runbook: "scale", Step: "scale", Kind: kube.KindScale,
		IdempotencyKey: "salve/scale/shop/scale",
		Params:         map[string]any{"namespace": "shop", "name": "web", "replicas": 3},
		Credentials:    map[string]step.CredentialRef{"kubernetes": {Role: "salve-shop"}},
	}

	// While the step holds its credential, the token works in its own
	// namespace and is refused in another.
	var stolen kubernetes.Interface
	creds2 := &hookClients{inner: creds, during: func() {
		tokens := proxy.Tokens()
		require.Len(t, tokens, 1)
		stolen = tokenClient(t, k, tokens[0])
		_, err := stolen.AppsV1().Deployments("shop").Get(ctx, "web", metav1.GetOptions{})
		require.NoError(t, err, "the token works in its namespace")
		_, err = stolen.AppsV1().Deployments("other").Get(ctx, "web", metav1.GetOptions{})
		require.True(t, apierrors.IsForbidden(err), "another namespace is forbidden (403): %v", err)
		_, err = stolen.CoreV1().Secrets("shop").List(ctx, metav1.ListOptions{})
		require.True(t, apierrors.IsForbidden(err), "secrets are not in the role: %v", err)
	}}
	scale = kube.Specs(kube.Options{Clients: creds2})[0]
	spans := tracingtest.Record(t)
	sctx, stepSpan := tracing.Tracer().Start(ctx, "RunActivity:step.kubernetes.scale")
	out, err := scale.Executor.Execute(sctx, req)
	stepSpan.End()
	require.NoError(t, err)
	// The step's calls to Vault (the credential) and to the Kubernetes API
	// (the scale) are client spans of the step's span, naming the host.
	calls := map[string]int{}
	for _, s := range spans.GetSpans() {
		if s.Parent.SpanID() != stepSpan.SpanContext().SpanID() {
			continue
		}
		for _, a := range s.Attributes {
			if a.Key == "server.port" {
				calls[a.Value.Emit()]++
			}
		}
	}
	require.Positive(t, calls[portOf(t, proxy.URL)], "Vault calls traced: %v", calls)
	require.Positive(t, calls[portOf(t, cluster.Host)], "Kubernetes API calls traced: %v", calls)
	require.Equal(t, 3, out.Output["replicas"])
	d, err := admin.AppsV1().Deployments("shop").Get(ctx, "web", metav1.GetOptions{})
	require.NoError(t, err)
	require.EqualValues(t, 3, *d.Spec.Replicas)

	// The step ended: the lease is revoked and the token is refused (401;
	// the API server may cache a token review for a few seconds).
	issued, revoked := proxy.Counts()
	require.Equal(t, 1, issued)
	require.Equal(t, 1, revoked)
	require.Eventually(t, func() bool {
		_, err := stolen.AppsV1().Deployments("shop").Get(ctx, "web", metav1.GetOptions{})
		return apierrors.IsUnauthorized(err)
	}, 30*time.Second, 250*time.Millisecond, "the revoked token is refused with 401")
	require.Equal(t, 1, audit.count(domain.ActionCredentialIssued))
	require.Equal(t, 1, audit.count(domain.ActionCredentialRevoked))
	for _, ev := range audit.evs {
		require.NotContains(t, ev.Detail["lease"], "kubernetes/creds", "only a hash of the lease is audited")
		require.Equal(t, "salve-shop", ev.Detail["role"])
		require.Equal(t, "shop", ev.Detail["namespace"])
	}
	require.Equal(t, []vault.LeaseCount{{Role: "salve-shop", Issued: 1, Revoked: 1}}, counters.Snapshot())

	// Vault unreachable: the step does not act, and the error is one
	// Temporal retries (not permanent), naming the role.
	proxy.Down.Store(true)
	req.Params["replicas"] = 5
	req.IdempotencyKey = "salve/scale/shop/scale-2"
	_, err = scale.Executor.Execute(ctx, req)
	require.ErrorIs(t, err, vault.ErrVault)
	require.NotErrorIs(t, err, step.ErrPermanent)
	require.ErrorContains(t, err, `role "salve-shop"`)
	d, err = admin.AppsV1().Deployments("shop").Get(ctx, "web", metav1.GetOptions{})
	require.NoError(t, err)
	require.EqualValues(t, 3, *d.Spec.Replicas, "nothing acted while Vault was down")
	proxy.Down.Store(false)
	_, err = scale.Executor.Execute(ctx, req)
	require.NoError(t, err, "Vault is back: the retried attempt acts")
	issued, revoked = proxy.Counts()
	require.Equal(t, issued, revoked, "every issued credential was revoked")

	// A namespace the role does not allow, a role that does not exist and
	// a cluster that is not configured are permanent failures: retrying
	// cannot fix them.
	req.Params = map[string]any{"cluster": "elsewhere", "namespace": "shop", "name": "web", "replicas": 2}
	_, err = scale.Executor.Execute(ctx, req)
	require.ErrorIs(t, err, step.ErrPermanent)
	require.ErrorContains(t, err, `unknown cluster "elsewhere"`)
	req.Params = map[string]any{"namespace": "other", "name": "web", "replicas": 2}
	_, err = scale.Executor.Execute(ctx, req)
	require.ErrorIs(t, err, step.ErrPermanent)
	req.Params = map[string]any{"namespace": "shop", "name": "web", "replicas": 2}
	req.Credentials = map[string]step.CredentialRef{"kubernetes": {Role: "no-such-role"}}
	_, err = scale.Executor.Execute(ctx, req)
	require.ErrorIs(t, err, step.ErrPermanent)

	// Vault goes away while a step holds its credential: the revoke at
	// the step's end fails, is audited, and is kept in JetStream. Another
	// worker (this one may have died) revokes it once Vault is back.
	_, js := testenv.NATS(t)
	pending, err := vault.OpenRevokes(ctx, js, 1)
	require.NoError(t, err)
	creds.Pending = pending
	var held kubernetes.Interface
	failing := &hookClients{inner: creds, during: func() {
		tokens := proxy.Tokens()
		held = tokenClient(t, k, tokens[len(tokens)-1])
		proxy.Down.Store(true)
	}}
	req.Credentials = map[string]step.CredentialRef{"kubernetes": {Role: "salve-shop"}}
	req.IdempotencyKey = "salve/scale/shop/scale-3"
	_, err = kube.Specs(kube.Options{Clients: failing})[0].Executor.Execute(ctx, req)
	require.NoError(t, err, "the step acted before Vault went away")
	require.Equal(t, 1, audit.count(domain.ActionCredentialRevokeFailed))
	list, err := pending.List(ctx)
	require.NoError(t, err)
	require.Len(t, list, 1, "the lease is kept for a retry")
	_, err = held.AppsV1().Deployments("shop").Get(ctx, "web", metav1.GetOptions{})
	require.NoError(t, err, "not revoked yet: the token still works")

	proxy.Down.Store(false)
	revokedBefore := audit.count(domain.ActionCredentialRevoked)
	other := &vault.KubeCredentials{Vault: vc, Cluster: cluster, Audit: audit, Metrics: counters, Pending: pending}
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	go other.RetryRevokes(rctx, 100*time.Millisecond)
	require.Eventually(t, func() bool {
		l, err := pending.List(ctx)
		return err == nil && len(l) == 0
	}, 30*time.Second, 100*time.Millisecond, "another worker revoked the kept lease")
	require.Equal(t, revokedBefore+1, audit.count(domain.ActionCredentialRevoked))
	require.Eventually(t, func() bool {
		_, err := held.AppsV1().Deployments("shop").Get(ctx, "web", metav1.GetOptions{})
		return apierrors.IsUnauthorized(err)
	}, 30*time.Second, 250*time.Millisecond, "the revoked token is refused")
}

// hookClients runs during() while the step's credential is held.
type hookClients struct {
	inner  kube.Clients
	during func()
	once   sync.Once
}

func (h *hookClients) For(ctx context.Context, req step.Request, t kube.Target) (kubernetes.Interface, func(), error) {
	c, release, err := h.inner.For(ctx, req, t)
	if err != nil {
		return nil, nil, err
	}
	h.once.Do(h.during) // the first credential only
	return c, release, nil
}

// KV v2 secrets resolve for http.request secret headers, audited by
// reference; AppRole login works and its short-lived token is renewed and
// replaced by a new login when it reaches its max TTL.
func TestKVAndAppRoleRenewal(t *testing.T) {
	v := testenv.Vault(t)
	v.MustDo(t, http.MethodPut, "secret/data/pagerduty", map[string]any{"data": map[string]any{"token": "pd-s3cret"}})
	v.MustDo(t, http.MethodPut, "sys/policies/acl/salve", map[string]any{"policy": `path "secret/data/pagerduty" { capabilities = ["read"] }`})
	v.MustDo(t, http.MethodPost, "sys/auth/approle", map[string]any{"type": "approle"})
	v.MustDo(t, http.MethodPost, "auth/approle/role/salve", map[string]any{"token_policies": []string{"salve"}, "token_ttl": "3s", "token_max_ttl": "6s"})
	roleID := v.MustDo(t, http.MethodGet, "auth/approle/role/salve/role-id", nil)["data"].(map[string]any)["role_id"].(string)
	secretID := v.MustDo(t, http.MethodPost, "auth/approle/role/salve/secret-id", nil)["data"].(map[string]any)["secret_id"].(string)
	secretFile := filepath.Join(t.TempDir(), "secret-id")
	require.NoError(t, os.WriteFile(secretFile, []byte(secretID+"\n"), 0o600))

	ctx := context.Background()
	vc, err := vault.New(ctx, vault.Config{Addr: v.Addr, RoleID: roleID, SecretIDFile: secretFile}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(vc.Close)
	audit := &auditLog{}
	kv := &vault.KV{Vault: vc, Audit: audit}
	req := step.Request{WorkflowID: "w", RunID: "r", Step: "page"}

	first := vc.API().Token()
	// Keep reading for longer than the token's max TTL: renewal and
	// re-login keep Salve's access without a gap.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		got, err := kv.Resolve(ctx, req, "secret/pagerduty#token")
		require.NoError(t, err)
		require.Equal(t, "pd-s3cret", got)
		time.Sleep(500 * time.Millisecond)
	}
	require.NotEqual(t, first, vc.API().Token(), "a new login replaced the token at its max TTL")
	require.Positive(t, audit.count(domain.ActionCredentialIssued))
	for _, ev := range audit.evs {
		require.Equal(t, "secret/pagerduty#token", ev.Detail["ref"])
	}

	_, err = kv.Resolve(ctx, req, "secret/other#token")
	require.ErrorIs(t, err, step.ErrPermanent, "a secret the policy does not allow is not retried")
	_, err = kv.Resolve(ctx, req, "bad-ref")
	require.ErrorIs(t, err, step.ErrInvalidParams)

	// A bad login fails at startup with Vault's reason.
	require.NoError(t, os.WriteFile(secretFile, []byte("wrong"), 0o600))
	_, err = vault.New(ctx, vault.Config{Addr: v.Addr, RoleID: roleID, SecretIDFile: secretFile}, slog.New(slog.DiscardHandler))
	require.ErrorContains(t, err, "vault approle login")
	_, err = vault.New(ctx, vault.Config{Addr: v.Addr}, slog.New(slog.DiscardHandler))
	require.True(t, errors.Is(err, vault.ErrNotConfigured))
}

// Vault restarts (dev mode: in memory, so the operator sets it up again,
// as a restore would): Salve's token is unknown to the new server, and
// the next read logs in again and succeeds without restarting Salve.
func TestSurvivesVaultRestart(t *testing.T) {
	v := testenv.Vault(t)
	setup := func() {
		v.MustDo(t, http.MethodPut, "secret/data/app", map[string]any{"data": map[string]any{"token": "t0ken"}})
		v.MustDo(t, http.MethodPut, "sys/policies/acl/salve", map[string]any{"policy": `path "secret/data/app" { capabilities = ["read"] }`})
		v.MustDo(t, http.MethodPost, "sys/auth/approle", map[string]any{"type": "approle"})
		v.MustDo(t, http.MethodPost, "auth/approle/role/salve", map[string]any{"token_policies": []string{"salve"}, "token_ttl": "1h"})
		v.MustDo(t, http.MethodPost, "auth/approle/role/salve/role-id", map[string]any{"role_id": "salve-role"})
		v.MustDo(t, http.MethodPost, "auth/approle/role/salve/custom-secret-id", map[string]any{"secret_id": "salve-secret"})
	}
	setup()
	secretFile := filepath.Join(t.TempDir(), "secret-id")
	require.NoError(t, os.WriteFile(secretFile, []byte("salve-secret"), 0o600))
	ctx := context.Background()
	vc, err := vault.New(ctx, vault.Config{Addr: v.Addr, RoleID: "salve-role", SecretIDFile: secretFile}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(vc.Close)
	kv := &vault.KV{Vault: vc, Audit: &auditLog{}}
	req := step.Request{WorkflowID: "w", RunID: "r", Step: "s"}
	got, err := kv.Resolve(ctx, req, "secret/app#token")
	require.NoError(t, err)
	require.Equal(t, "t0ken", got)
	before := vc.API().Token()

	v.Restart(t)
	require.NoError(t, vc.Health(ctx), "the new server is up and unsealed")
	// Not set up yet: Salve cannot log in. The step fails, but as a
	// retryable error: the next attempt may succeed.
	_, err = kv.Resolve(ctx, req, "secret/app#token")
	require.ErrorIs(t, err, vault.ErrVault)
	require.NotErrorIs(t, err, step.ErrPermanent)
	require.ErrorContains(t, err, "logging in again failed")

	setup()
	got, err = kv.Resolve(ctx, req, "secret/app#token")
	require.NoError(t, err, "Salve logged in again by itself")
	require.Equal(t, "t0ken", got)
	require.NotEqual(t, before, vc.API().Token())
}

func portOf(t *testing.T, raw string) string {
	u, err := url.Parse(raw)
	require.NoError(t, err)
	return u.Port()
}
