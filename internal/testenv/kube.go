package testenv

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/internal/devkube"
)

// KubeCluster is a real Kubernetes control plane on loopback (see
// internal/devkube): Debian's etcd, kube-apiserver, kube-controller-manager
// and kube-scheduler (v1.34.4, built by scripts/kube-tools.sh), and kwok,
// which plays the kubelet for fake nodes, so pods are scheduled and become
// Running and Ready without containers. Deployments, ReplicaSets,
// ServiceAccounts, RBAC, scale and rollouts behave as in a real cluster.
type KubeCluster struct {
	// Host is the API server's URL, https://127.0.0.1:PORT.
	Host string
	// AdminToken is a bearer token for user "admin" in group system:masters.
	AdminToken string
	// CACertPEM is the CA that signed the API server's serving certificate
	// (and signs CSRs through the controller-manager).
	CACertPEM []byte
	// KubeconfigPath is a kubeconfig for Host as the admin, with namespace
	// "default" (KUBECONFIG=... kubectl works).
	KubeconfigPath string
	// Nodes are the fake nodes kwok manages; they are Ready and untainted.
	Nodes []string

	c *devkube.Cluster
}

// Kube starts a fresh control plane with two fake nodes and returns once
// the nodes are Ready and the default ServiceAccount exists. Everything
// stops when the test ends; the processes' logs are shown if it failed.
// Missing binaries fail the test, saying to run scripts/kube-tools.sh.
func Kube(t testing.TB) *KubeCluster {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(tbWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	c, err := devkube.Start(ctx, devkube.Options{Dir: dir, Log: log})
	if err != nil {
		// Start stopped what it had started; show every log it wrote.
		logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
		for _, path := range logs {
			logTail(t, strings.TrimSuffix(filepath.Base(path), ".log"), "", path)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { // runs after Stop, registered below
		if !t.Failed() {
			return
		}
		for _, p := range c.Processes() {
			status := "running"
			switch {
			case p.Stopped:
				status = "stopped by the test"
			case p.Exited:
				status = fmt.Sprintf("exited: %v", p.Err)
			}
			logTail(t, p.Name, status+"; ", p.Log)
		}
	})
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("stop the Kubernetes control plane: %v", err)
		}
	})
	return &KubeCluster{
		Host:           c.Host,
		AdminToken:     c.AdminToken,
		CACertPEM:      c.CACertPEM,
		KubeconfigPath: c.KubeconfigPath,
		Nodes:          c.Nodes,
		c:              c,
	}
}

// HTTPClient trusts the cluster's CA; add the AdminToken as a bearer token.
func (k *KubeCluster) HTTPClient() *http.Client { return k.c.HTTPClient() }

// Do sends a JSON request as the admin to path (e.g. "/api/v1/nodes") and
// decodes a 2xx response into out when out is not nil. body is marshalled
// to JSON unless it is a []byte; PATCH requests are merge patches. It
// returns the HTTP status, and an error with the API's message unless 2xx.
func (k *KubeCluster) Do(ctx context.Context, method, path string, body, out any) (int, error) {
	return k.c.Do(ctx, method, path, body, out)
}

// MustDo is Do that fails the test unless the response is 2xx.
func (k *KubeCluster) MustDo(t testing.TB, method, path string, body, out any) {
	t.Helper()
	_, err := k.Do(context.Background(), method, path, body, out)
	require.NoError(t, err)
}

// logTail shows the end of a process's log.
func logTail(t testing.TB, name, status, path string) {
	const keep = 150
	f, err := os.Open(path)
	if err != nil {
		return
	}
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	f.Close()
	skipped := max(0, len(lines)-keep)
	t.Logf("%s log (%slast %d of %d lines):\n%s", name, status,
		len(lines)-skipped, len(lines), strings.Join(lines[skipped:], "\n"))
}
