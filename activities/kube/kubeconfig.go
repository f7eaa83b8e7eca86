package kube

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/salve-sre/salve/activities/step"
	"github.com/salve-sre/salve/internal/tracing"
)

// Kubeconfig is a Clients that acts with a kubeconfig's own identities:
// each context is a cluster a step can name ("" = the current context).
// It is the development credential source: standing credentials, not
// per-step ones, and Salve says so at startup.
type Kubeconfig struct {
	path string
	raw  clientcmdapi.Config

	mu      sync.Mutex
	clients map[string]kubernetes.Interface
}

// FromKubeconfig loads a kubeconfig. context overrides its current context.
func FromKubeconfig(path, context string) (*Kubeconfig, error) {
	raw, err := clientcmd.LoadFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	if context != "" {
		raw.CurrentContext = context
	}
	if _, ok := raw.Contexts[raw.CurrentContext]; !ok {
		return nil, fmt.Errorf("kubeconfig %s: current context %q does not exist (contexts: %s)", path, raw.CurrentContext, strings.Join(contextNames(raw), ", "))
	}
	return &Kubeconfig{path: path, raw: *raw, clients: map[string]kubernetes.Interface{}}, nil
}

// Clusters lists the cluster names steps may use.
func (k *Kubeconfig) Clusters() []string { return contextNames(&k.raw) }

// For returns the client of the target's cluster.
func (k *Kubeconfig) For(_ context.Context, _ step.Request, t Target) (kubernetes.Interface, func(), error) {
	name := t.Cluster
	if name == "" {
		name = k.raw.CurrentContext
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if c, ok := k.clients[name]; ok {
		return c, func() {}, nil
	}
	if _, ok := k.raw.Contexts[name]; !ok {
		return nil, nil, fmt.Errorf("%w: unknown cluster %q (the kubeconfig's contexts: %s)", step.ErrPermanent, name, strings.Join(contextNames(&k.raw), ", "))
	}
	cfg, err := clientcmd.NewNonInteractiveClientConfig(k.raw, name, &clientcmd.ConfigOverrides{}, nil).ClientConfig()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: kubeconfig %s, context %s: %v", step.ErrPermanent, k.path, name, err)
	}
	cfg.UserAgent = "salve"
	cfg.Wrap(tracing.Transport)
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: kubeconfig %s, context %s: %v", step.ErrPermanent, k.path, name, err)
	}
	k.clients[name] = c
	return c, func() {}, nil
}

func contextNames(c *clientcmdapi.Config) []string {
	out := make([]string, 0, len(c.Contexts))
	for n := range c.Contexts {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
