package vault

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/salve-sre/salve/activities/kube"
	"github.com/salve-sre/salve/activities/step"
	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/internal/tracing"
)

// Auditor records audit events durably.
type Auditor interface {
	Record(ctx context.Context, ev domain.AuditEvent) error
}

// Cluster is the Kubernetes API that issued tokens are for. Only its
// address and CA: Salve holds no standing Kubernetes credential.
type Cluster struct {
	Host   string
	CAData []byte
	// Mount is the Vault Kubernetes secrets engine configured for this
	// cluster; default KubeCredentials.Mount for the default cluster and
	// "<Mount>-<name>" for the others.
	Mount string
}

// MinKubernetesTTL is the shortest service-account token the API server
// accepts; shorter effective lives come from revoking at step end.
const MinKubernetesTTL = 10 * time.Minute

// KubeCredentials issues a service-account token per step attempt from
// Vault's Kubernetes secrets engine, limited to the step's namespace, and
// revokes its lease when the attempt ends. It implements kube.Clients.
type KubeCredentials struct {
	Vault *Client
	Mount string // secrets engine mount; default "kubernetes"
	Role  string // used when the runbook names none
	// Cluster is the default cluster; Clusters the others, by the name
	// steps give in their cluster parameter.
	Cluster  Cluster
	Clusters map[string]Cluster
	Audit    Auditor
	Log      *slog.Logger
	// Metrics counts leases; nil = not counted.
	Metrics *LeaseCounters
	// RevokeRetry is the first wait before retrying a failed revoke;
	// default 5s. Retries stop when the lease would have expired anyway.
	// Used only without Pending.
	RevokeRetry time.Duration
	// Pending, when set, keeps a lease whose revoke failed durably, for
	// RetryRevokes on any worker; nil retries it in this process's memory
	// only (lost if the process dies: the lease then ends at its TTL).
	Pending PendingRevokes
}

var _ kube.Clients = (*KubeCredentials)(nil)

// ErrVault is wrapped by errors that come from issuing a credential.
var ErrVault = errors.New("vault credential")

// For issues a credential for this attempt and returns a client that uses
// it. release revokes the lease; call it when the attempt ends.
func (k *KubeCredentials) For(ctx context.Context, req step.Request, t kube.Target) (kubernetes.Interface, func(), error) {
	namespace := t.Namespace
	cluster, mount := k.Cluster, orDefault(k.Mount, "kubernetes")
	if t.Cluster != "" {
		c, ok := k.Clusters[t.Cluster]
		if !ok {
			return nil, nil, fmt.Errorf("%w: %w: unknown cluster %q (configured: %s)", step.ErrPermanent, ErrVault, t.Cluster, strings.Join(sortedNames(k.Clusters), ", "))
		}
		cluster, mount = c, mount+"-"+t.Cluster
	}
	if cluster.Mount != "" {
		mount = cluster.Mount
	}
	ref := req.Credentials[kube.CredentialKubernetes]
	role := ref.Role
	if role == "" {
		role = k.Role
	}
	if role == "" {
		return nil, nil, fmt.Errorf("%w: %w: no Vault role: set spec.credentials.kubernetes.vaultRole in the runbook or --vault-kubernetes-role", step.ErrPermanent, ErrVault)
	}
	ttl := ref.TTL
	if ttl == 0 {
		// The step's timeout plus a margin: the attempt cannot outlive it.
		ttl = 5 * time.Minute
		if dl, ok := ctx.Deadline(); ok {
			ttl += time.Until(dl)
		}
	}
	ttl = max(ttl, MinKubernetesTTL)
	path := mount + "/creds/" + role
	data := map[string]any{"kubernetes_namespace": namespace, "ttl": strconv.Itoa(int(ttl.Seconds())) + "s"}

	used := k.Vault.API().Token()
	sec, err := k.Vault.API().Logical().WriteWithContext(ctx, path, data)
	deniedAfterLogin := false
	if isPermissionDenied(err) {
		// Vault may have been restarted or Salve's token revoked: log in
		// again once, then ask again. Denied with a fresh token means
		// Salve's policy does not allow this role: permanent.
		if lerr := k.Vault.relogin(ctx, used); lerr == nil {
			sec, err = k.Vault.API().Logical().WriteWithContext(ctx, path, data)
			deniedAfterLogin = isPermissionDenied(err)
		}
	}
	target := namespace
	if t.Cluster != "" {
		target = t.Cluster + "/" + namespace
	}
	base := domain.AuditEvent{
		Time:       time.Now().UTC(),
		Actor:      domain.Actor{Kind: domain.ActorSystem, Name: "worker"},
		Runbook:    req.Runbook,
		WorkflowID: req.WorkflowID,
		RunID:      req.RunID,
		Step:       req.Step,
	}
	if err != nil {
		k.Metrics.inc(&k.Metrics.failed, role)
		permanent := isClientError(err) || deniedAfterLogin
		err = cleanErr(err)
		if permanent {
			return nil, nil, fmt.Errorf("%w: %w: role %q for namespace %s: %v", step.ErrPermanent, ErrVault, role, target, err)
		}
		// Vault unreachable or failing: the step does not act; Temporal
		// retries the attempt with backoff and the run shows why.
		return nil, nil, fmt.Errorf("%w: role %q for namespace %s: %v", ErrVault, role, target, err)
	}
	token, _ := sec.Data["service_account_token"].(string)
	if token == "" || sec.LeaseID == "" {
		if sec.LeaseID != "" {
			_ = k.Vault.API().Sys().RevokeWithContext(context.WithoutCancel(ctx), sec.LeaseID)
		}
		return nil, nil, fmt.Errorf("%w: role %q issued no service account token with a lease", ErrVault, role)
	}
	k.Metrics.inc(&k.Metrics.issued, role)
	lease := sec.LeaseID
	detail := map[string]string{
		"source": kube.CredentialKubernetes, "role": role, "lease": LeaseHash(lease),
		"ttl": (time.Duration(sec.LeaseDuration) * time.Second).String(), "namespace": namespace, "cluster": t.Cluster,
	}
	issued := base
	issued.ID = req.WorkflowID + "/" + req.RunID + "/" + req.Step + "/credential.issued/" + LeaseHash(lease)
	issued.Action, issued.Outcome, issued.Detail = domain.ActionCredentialIssued, "issued", detail
	release := func() { k.revoke(ctx, lease, base, detail, role) }
	// No audit record, no action: a credential whose issue cannot be
	// recorded is revoked at once and the step does not act.
	if err := k.Audit.Record(ctx, issued); err != nil {
		release()
		return nil, nil, fmt.Errorf("record credential issue (step not run): %w", err)
	}
	cfg := &rest.Config{
		Host:            cluster.Host,
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAData: cluster.CAData},
		UserAgent:       "salve",
		Timeout:         time.Minute,
	}
	cfg.Wrap(tracing.Transport)
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		release()
		return nil, nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return c, release, nil
}

// revoke ends a lease now; a failed revoke is audited and retried in the
// background until it succeeds or the lease would have expired anyway.
func (k *KubeCredentials) revoke(ctx context.Context, lease string, base domain.AuditEvent, detail map[string]string, role string) {
	actx := context.WithoutCancel(ctx)
	rctx, cancel := context.WithTimeout(actx, 30*time.Second)
	err := k.Vault.API().Sys().RevokeWithContext(rctx, lease)
	cancel()
	ev := base
	ev.Time = time.Now().UTC()
	ev.Detail = detail
	if err == nil {
		k.recordRevoked(actx, lease, base, detail, role, "revoked")
		return
	}
	k.Metrics.inc(&k.Metrics.revokeFailed, role)
	ev.ID = base.WorkflowID + "/" + base.RunID + "/" + base.Step + "/credential.revoke_failed/" + LeaseHash(lease)
	ev.Action, ev.Outcome, ev.Error = domain.ActionCredentialRevokeFailed, "failed", cleanErr(err).Error()
	if aerr := k.Audit.Record(actx, ev); aerr != nil && k.Log != nil {
		k.Log.Error("audit credential revoke failure", "lease", LeaseHash(lease), "error", aerr)
	}
	ttl, _ := time.ParseDuration(detail["ttl"])
	if k.Pending != nil {
		perr := k.Pending.Put(actx, PendingRevoke{Lease: lease, Expires: time.Now().Add(ttl), Role: role, Base: base, Detail: detail})
		if perr == nil {
			if k.Log != nil {
				k.Log.Warn("credential revoke failed; kept for a retry by any worker (the lease expires by itself at its TTL)", "lease", LeaseHash(lease), "role", role, "error", cleanErr(err))
			}
			return
		}
		if k.Log != nil {
			k.Log.Error("credential revoke failed and could not be kept for a retry; retrying in this process", "lease", LeaseHash(lease), "error", perr)
		}
	}
	if k.Log != nil {
		k.Log.Warn("credential revoke failed; retrying in the background (the lease expires by itself at its TTL)", "lease", LeaseHash(lease), "role", role, "error", cleanErr(err))
	}
	go k.retryRevoke(actx, lease, base, detail, role, time.Now().Add(ttl))
}

// recordRevoked counts and audits a revoked lease.
func (k *KubeCredentials) recordRevoked(ctx context.Context, lease string, base domain.AuditEvent, detail map[string]string, role, outcome string) {
	k.Metrics.inc(&k.Metrics.revoked, role)
	ev := base
	ev.Time = time.Now().UTC()
	ev.ID = base.WorkflowID + "/" + base.RunID + "/" + base.Step + "/credential.revoked/" + LeaseHash(lease)
	ev.Action, ev.Outcome, ev.Detail = domain.ActionCredentialRevoked, outcome, detail
	if err := k.Audit.Record(ctx, ev); err != nil && k.Log != nil {
		k.Log.Error("audit credential revoke", "lease", LeaseHash(lease), "error", err)
	}
}

func (k *KubeCredentials) retryRevoke(ctx context.Context, lease string, base domain.AuditEvent, detail map[string]string, role string, expires time.Time) {
	wait := k.RevokeRetry
	if wait <= 0 {
		wait = 5 * time.Second
	}
	for time.Now().Add(wait).Before(expires) {
		time.Sleep(wait)
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := k.Vault.API().Sys().RevokeWithContext(rctx, lease)
		cancel()
		if err == nil {
			k.recordRevoked(ctx, lease, base, detail, role, "revoked after retry")
			return
		}
		wait = min(wait*2, 5*time.Minute)
	}
}

// LeaseHash names a lease in audit events and logs without revealing the
// lease ID, which grants revocation and renewal.
func LeaseHash(lease string) string {
	sum := sha256.Sum256([]byte(lease))
	return hex.EncodeToString(sum[:8])
}

// ClustersFromKubeconfig reads only the API server addresses and CAs of a
// kubeconfig's contexts: the tokens Vault issues are for those clusters,
// and the kubeconfig's own credentials are not used. It returns the
// current context's cluster and the others by context name.
func ClustersFromKubeconfig(path string) (Cluster, map[string]Cluster, error) {
	raw, err := clientcmd.LoadFromFile(path)
	if err != nil {
		return Cluster{}, nil, fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	all := map[string]Cluster{}
	for name := range raw.Contexts {
		cfg, err := clientcmd.NewNonInteractiveClientConfig(*raw, name, &clientcmd.ConfigOverrides{}, nil).ClientConfig()
		if err != nil {
			return Cluster{}, nil, fmt.Errorf("kubeconfig %s, context %s: %w", path, name, err)
		}
		ca := cfg.CAData
		if len(ca) == 0 && cfg.CAFile != "" {
			if ca, err = os.ReadFile(cfg.CAFile); err != nil {
				return Cluster{}, nil, fmt.Errorf("kubeconfig %s, context %s: CA: %w", path, name, err)
			}
		}
		all[name] = Cluster{Host: cfg.Host, CAData: ca}
	}
	def, ok := all[raw.CurrentContext]
	if !ok {
		return Cluster{}, nil, fmt.Errorf("kubeconfig %s: current context %q does not exist", path, raw.CurrentContext)
	}
	delete(all, raw.CurrentContext)
	return def, all, nil
}

func sortedNames(m map[string]Cluster) []string {
	out := make([]string, 0, len(m))
	for n := range m {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
