package testenv

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	_ "embed"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// KubeCluster is a real Kubernetes control plane on loopback: Debian's etcd,
// kube-apiserver, kube-controller-manager and kube-scheduler (v1.34.4, built
// by scripts/kube-tools.sh), and kwok, which plays the kubelet for fake
// nodes, so pods are scheduled and become Running and Ready without
// containers. Deployments, ReplicaSets, ServiceAccounts, RBAC, scale and
// rollouts behave as in a real cluster.
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

	client *http.Client
}

const (
	kubeVersion = "1.34.4"
	kwokVersion = "v0.8.0"
	kubeInstall = "run scripts/kube-tools.sh, which builds it"
	// kwokNodeAnnotation marks the nodes kwok manages (kwok's own convention).
	kwokNodeAnnotation = "kwok.x-k8s.io/node"
)

//go:embed kwok-stages.yaml
var kwokStages []byte

// Kube starts a fresh control plane with two fake nodes and returns once
// the nodes are Ready and the default ServiceAccount exists. Everything
// stops when the test ends; the processes' logs are shown if it failed.
// Missing binaries fail the test, saying to run scripts/kube-tools.sh.
func Kube(t testing.TB) *KubeCluster {
	t.Helper()
	begin := time.Now()
	kube := kubeBinary(t, "SALVE_KUBE_BIN", "kube-"+kubeVersion)
	kwok := kubeBinary(t, "SALVE_KWOK_BIN", "kwok-"+kwokVersion)
	etcd := Binary(t, "etcd", "scripts/kube-tools.sh installs Debian's etcd-server")

	dir := t.TempDir()
	path := func(name string) string { return filepath.Join(dir, name) }
	procs := &kubeProcs{t: t, dir: dir}
	t.Cleanup(procs.dumpLogsIfFailed) // registered first, so it runs after the processes stopped

	// Certificates and keys, generated in process.
	apiPort := FreePort(t)
	k := &KubeCluster{
		Host:           fmt.Sprintf("https://127.0.0.1:%d", apiPort),
		AdminToken:     randomHex(t, 32),
		KubeconfigPath: path("kubeconfig"),
	}
	k.CACertPEM = writeKubePKI(t, dir)
	require.NoError(t, os.WriteFile(path("tokens.csv"),
		[]byte(k.AdminToken+`,admin,admin,"system:masters"`+"\n"), 0o600))
	require.NoError(t, os.WriteFile(path("kubeconfig"), k.kubeconfig(), 0o600))
	require.NoError(t, os.WriteFile(path("kwok.yaml"), kwokStages, 0o600))
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(k.CACertPEM))
	k.client = &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}},
	}

	// etcd.
	etcdPort, peerPort := FreePort(t), FreePort(t)
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", etcdPort)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
	etcdProc := procs.start("etcd", nil, etcd,
		"--name=default",
		"--data-dir="+path("etcd"),
		"--listen-client-urls="+etcdURL,
		"--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL,
		"--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=default="+peerURL,
		"--logger=zap",
		"--log-level=warn",
	)
	plain := &http.Client{Timeout: 5 * time.Second}
	procs.waitFor(etcdProc, 30*time.Second, func() bool {
		var health struct{ Health string }
		return getJSON(plain, etcdURL+"/health", "", &health) == nil && health.Health == "true"
	})

	// kube-apiserver.
	apiserver := procs.start("kube-apiserver", nil, kube, "kube-apiserver",
		"--etcd-servers="+etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", apiPort),
		"--cert-dir="+path("apiserver"),
		"--tls-cert-file="+path("apiserver.crt"),
		"--tls-private-key-file="+path("apiserver.key"),
		"--client-ca-file="+path("ca.crt"),
		// Published for the controller-manager's and scheduler's delegated
		// authentication, which otherwise log an error every second.
		"--requestheader-client-ca-file="+path("ca.crt"),
		"--requestheader-username-headers=X-Remote-User",
		"--requestheader-group-headers=X-Remote-Group",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--token-auth-file="+path("tokens.csv"),
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+path("sa.pub"),
		"--service-account-signing-key-file="+path("sa.key"),
		"--service-cluster-ip-range=10.96.0.0/16",
		// The "kubernetes" Service's endpoints would be 127.0.0.1, which
		// the API rejects; nothing in a kwok cluster can reach them anyway.
		"--endpoint-reconciler-type=none",
		"--profiling=false",
	)
	procs.waitFor(apiserver, 2*time.Minute, func() bool {
		resp, err := k.request(context.Background(), http.MethodGet, "/readyz", nil)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	// The rest talk to the API server with the admin kubeconfig.
	kc := path("kubeconfig")
	cmPort, schedPort := FreePort(t), FreePort(t)
	procs.start("kube-controller-manager", nil, kube, "kube-controller-manager",
		"--kubeconfig="+kc,
		"--authentication-kubeconfig="+kc,
		"--authorization-kubeconfig="+kc,
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", cmPort),
		"--cert-dir="+path("controller-manager"),
		"--controllers=*",
		"--service-account-private-key-file="+path("sa.key"),
		"--root-ca-file="+path("ca.crt"),
		"--cluster-signing-cert-file="+path("ca.crt"),
		"--cluster-signing-key-file="+path("ca.key"),
		"--profiling=false",
	)
	procs.start("kube-scheduler", nil, kube, "kube-scheduler",
		"--kubeconfig="+kc,
		"--authentication-kubeconfig="+kc,
		"--authorization-kubeconfig="+kc,
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", schedPort),
		"--cert-dir="+path("scheduler"),
		"--profiling=false",
	)
	// kwok's client-go (v0.36) asks for watch-list streams, which the API
	// server refuses with etcd 3.4 ("RequestWatchProgress is disabled"); it
	// falls back to list+watch and logs a warning each time. Harmless.
	procs.start("kwok", []string{"HOME=" + path("kwok-home")}, kwok, // kwok reads ~/.kwok/kwok.yaml if present
		"--kubeconfig="+kc,
		"--config="+path("kwok.yaml"),
		"--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector="+kwokNodeAnnotation+"=fake",
		"--manage-nodes-with-label-selector=",
		"--node-lease-duration-seconds=40",
		"--cidr=10.244.0.0/16",
	)

	for i := range 2 {
		name := fmt.Sprintf("kwok-node-%d", i)
		k.Nodes = append(k.Nodes, name)
		k.MustDo(t, http.MethodPost, "/api/v1/nodes", fakeNode(name), nil)
	}
	// Ready (kwok), untainted (the node lifecycle controller lifts the
	// not-ready taint the API server puts on new nodes), and the default
	// ServiceAccount exists (the serviceaccount controller), so pods can be
	// created and scheduled.
	procs.waitFor(nil, 2*time.Minute, func() bool {
		for _, name := range k.Nodes {
			var node struct {
				Spec   struct{ Taints []any }
				Status struct {
					Conditions []struct{ Type, Status string }
				}
			}
			if _, err := k.Do(context.Background(), http.MethodGet, "/api/v1/nodes/"+name, nil, &node); err != nil {
				return false
			}
			ready := false
			for _, c := range node.Status.Conditions {
				ready = ready || (c.Type == "Ready" && c.Status == "True")
			}
			if !ready || len(node.Spec.Taints) > 0 {
				return false
			}
		}
		_, err := k.Do(context.Background(), http.MethodGet, "/api/v1/namespaces/default/serviceaccounts/default", nil, nil)
		return err == nil
	})
	t.Logf("kubernetes %s control plane ready at %s in %s", kubeVersion, k.Host, time.Since(begin).Round(100*time.Millisecond))
	return k
}

// HTTPClient trusts the cluster's CA; add the AdminToken as a bearer token.
func (k *KubeCluster) HTTPClient() *http.Client { return k.client }

// Do sends a JSON request as the admin to path (e.g. "/api/v1/nodes") and
// decodes a 2xx response into out when out is not nil. body is marshalled
// to JSON unless it is a []byte; PATCH requests are merge patches. It
// returns the HTTP status, and an error with the API's message unless 2xx.
func (k *KubeCluster) Do(ctx context.Context, method, path string, body, out any) (int, error) {
	var raw []byte
	switch b := body.(type) {
	case nil:
	case []byte:
		raw = b
	default:
		var err error
		if raw, err = json.Marshal(b); err != nil {
			return 0, err
		}
	}
	resp, err := k.request(ctx, method, path, raw)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode/100 != 2 {
		var st struct{ Message string }
		if json.Unmarshal(data, &st) != nil || st.Message == "" {
			st.Message = strings.TrimSpace(string(data))
		}
		return resp.StatusCode, fmt.Errorf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, st.Message)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: %w", method, path, err)
		}
	}
	return resp.StatusCode, nil
}

// MustDo is Do that fails the test unless the response is 2xx.
func (k *KubeCluster) MustDo(t testing.TB, method, path string, body, out any) {
	t.Helper()
	_, err := k.Do(context.Background(), method, path, body, out)
	require.NoError(t, err)
}

func (k *KubeCluster) request(ctx context.Context, method, path string, body []byte) (*http.Response, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, k.Host+path, r)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+k.AdminToken)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		ct := "application/json"
		if method == http.MethodPatch {
			ct = "application/merge-patch+json"
		}
		req.Header.Set("Content-Type", ct)
	}
	return k.client.Do(req)
}

func (k *KubeCluster) kubeconfig() []byte {
	return fmt.Appendf(nil, `apiVersion: v1
kind: Config
clusters:
- name: salve-test
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: admin
  user:
    token: %s
contexts:
- name: salve-test
  context:
    cluster: salve-test
    user: admin
    namespace: default
current-context: salve-test
`, k.Host, base64.StdEncoding.EncodeToString(k.CACertPEM), k.AdminToken)
}

func fakeNode(name string) map[string]any {
	resources := map[string]string{"cpu": "32", "memory": "256Gi", "pods": "110"}
	return map[string]any{
		"apiVersion": "v1",
		"kind":       "Node",
		"metadata": map[string]any{
			"name":        name,
			"annotations": map[string]string{kwokNodeAnnotation: "fake", "node.alpha.kubernetes.io/ttl": "0"},
			"labels": map[string]string{
				"kubernetes.io/hostname": name,
				"kubernetes.io/os":       "linux",
				"kubernetes.io/arch":     "amd64",
				"type":                   "kwok",
			},
		},
		"status": map[string]any{"allocatable": resources, "capacity": resources},
	}
}

// kubeBinary finds a binary scripts/kube-tools.sh builds: $env, else the
// versioned cache path the script writes.
func kubeBinary(t testing.TB, env, name string) string {
	t.Helper()
	path := os.Getenv(env)
	if path == "" {
		cache := os.Getenv("SALVE_CACHE")
		if cache == "" {
			home, err := os.UserHomeDir()
			require.NoError(t, err)
			cache = filepath.Join(home, ".cache", "salve")
		}
		path = filepath.Join(cache, "bin", name)
	}
	if info, err := os.Stat(path); err != nil || info.IsDir() || info.Mode()&0o111 == 0 {
		t.Fatalf("%s is missing (%s): %s (or set %s)", name, path, kubeInstall, env)
	}
	return path
}

func getJSON(c *http.Client, url, token string, out any) error {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: HTTP %d", url, resp.StatusCode)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func randomHex(t testing.TB, n int) string {
	b := make([]byte, n)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return hex.EncodeToString(b)
}

// writeKubePKI writes into dir: a CA (ca.crt, ca.key), the API server's
// serving certificate (apiserver.crt, apiserver.key) and the
// service-account signing key pair (sa.key, sa.pub, RSA). It returns the
// CA certificate's PEM.
func writeKubePKI(t testing.TB, dir string) []byte {
	t.Helper()
	write := func(name, typ string, der []byte) []byte {
		data := pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), data, 0o600))
		return data
	}
	ecKey := func(name string) *ecdsa.PrivateKey {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		der, err := x509.MarshalECPrivateKey(key)
		require.NoError(t, err)
		write(name, "EC PRIVATE KEY", der)
		return key
	}
	now := time.Now()
	caKey := ecKey("ca.key")
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "salve-test-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	caPEM := write("ca.crt", "CERTIFICATE", caDER)
	ca, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)

	srvKey := ecKey("apiserver.key")
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
			"kubernetes.default.svc.cluster.local"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback, net.IPv4(10, 96, 0, 1)},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, ca, &srvKey.PublicKey, caKey)
	require.NoError(t, err)
	write("apiserver.crt", "CERTIFICATE", srvDER)

	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	write("sa.key", "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(saKey))
	pub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	require.NoError(t, err)
	write("sa.pub", "PUBLIC KEY", pub)
	return caPEM
}

// kubeProcs runs the control plane's processes, each logging to a file.
type kubeProcs struct {
	t     testing.TB
	dir   string
	procs []*kubeProc
}

type kubeProc struct {
	name, log string
	done      chan struct{}
	err       error // set before done is closed
	stopping  atomic.Bool
}

func (p *kubeProcs) start(name string, env []string, bin string, args ...string) *kubeProc {
	t := p.t
	t.Helper()
	logPath := filepath.Join(p.dir, name+".log")
	logFile, err := os.Create(logPath)
	require.NoError(t, err)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = kubeSysProcAttr()
	require.NoError(t, cmd.Start(), "starting %s", name)
	proc := &kubeProc{name: name, log: logPath, done: make(chan struct{})}
	go func() {
		proc.err = cmd.Wait()
		logFile.Close()
		close(proc.done)
	}()
	p.procs = append(p.procs, proc)
	t.Cleanup(func() {
		select {
		case <-proc.done:
			return
		default:
		}
		proc.stopping.Store(true)
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-proc.done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-proc.done
		}
	})
	return proc
}

// waitFor polls ok until it holds, failing the test on timeout or when a
// process exits (proc, or any process when proc is nil).
func (p *kubeProcs) waitFor(proc *kubeProc, timeout time.Duration, ok func() bool) {
	t := p.t
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if ok() {
			return
		}
		for _, q := range p.procs {
			if proc != nil && q != proc {
				continue
			}
			select {
			case <-q.done:
				t.Fatalf("%s exited (%v) while starting the control plane", q.name, q.err)
			default:
			}
		}
		if time.Now().After(deadline) {
			name := "the control plane"
			if proc != nil {
				name = proc.name
			}
			t.Fatalf("%s was not ready after %s", name, timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// dumpLogsIfFailed shows the end of each process's log on failure.
func (p *kubeProcs) dumpLogsIfFailed() {
	if !p.t.Failed() {
		return
	}
	const keep = 150
	for _, proc := range p.procs {
		f, err := os.Open(proc.log)
		if err != nil {
			continue
		}
		var lines []string
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		f.Close()
		skipped := max(0, len(lines)-keep)
		status := "running"
		select {
		case <-proc.done:
			status = fmt.Sprintf("exited: %v", proc.err)
			if proc.stopping.Load() {
				status = "stopped by the test"
			}
		default:
		}
		p.t.Logf("%s log (%s; last %d of %d lines):\n%s", proc.name, status,
			len(lines)-skipped, len(lines), strings.Join(lines[skipped:], "\n"))
	}
}
