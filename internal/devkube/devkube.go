// Package devkube runs a real Kubernetes control plane on loopback for
// `salve dev --with-kube` and for tests (internal/testenv.Kube): Debian's
// etcd, kube-apiserver, kube-controller-manager and kube-scheduler (v1.34.4,
// one binary built by scripts/kube-tools.sh), and kwok, which plays the
// kubelet for fake nodes, so pods are scheduled and become Running and Ready
// without containers. Deployments, ReplicaSets, ServiceAccounts, RBAC, scale
// and rollouts behave as in a real cluster.
//
// The processes are children of this one. Each writes its output to
// <Dir>/<name>.log; Stop ends them, and on Linux they are killed if this
// process dies without calling Stop.
package devkube

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
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	// KubeVersion is the Kubernetes version scripts/kube-tools.sh builds.
	KubeVersion = "1.34.4"
	// KwokVersion is the kwok version scripts/kube-tools.sh builds.
	KwokVersion = "v0.8.0"

	// kwokNodeAnnotation marks the nodes kwok manages (kwok's own convention).
	kwokNodeAnnotation = "kwok.x-k8s.io/node"
	// stopGrace is how long a process has to exit after SIGTERM before it
	// gets SIGKILL.
	stopGrace = 5 * time.Second
)

//go:embed kwok-stages.yaml
var kwokStages []byte

// Options configures Start.
type Options struct {
	// Dir holds the cluster's state (certificates, kubeconfig, etcd data)
	// and the processes' logs; required. Every Start is a fresh cluster:
	// etcd data a previous Start left in Dir is deleted.
	Dir string
	// KubeBin is the kube-apiserver/controller-manager/scheduler binary;
	// default $SALVE_KUBE_BIN, else
	// ${SALVE_CACHE:-~/.cache/salve}/bin/kube-<KubeVersion>.
	KubeBin string
	// KwokBin is kwok; default $SALVE_KWOK_BIN, else
	// ${SALVE_CACHE:-~/.cache/salve}/bin/kwok-<KwokVersion>.
	KwokBin string
	// EtcdBin is etcd; default etcd on $PATH.
	EtcdBin string
	// Log receives progress and reports processes that exit on their own;
	// nil = discard. The processes' own output goes to files in Dir.
	Log *slog.Logger
	// Nodes is how many fake nodes to create; default 2.
	Nodes int
}

// Cluster is a running control plane. Stop it with Stop.
type Cluster struct {
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
	// Dir is Options.Dir: state and the processes' logs (<name>.log).
	Dir string

	client   *http.Client
	log      *slog.Logger
	procs    []*proc
	ready    atomic.Bool // set once Start returns the cluster
	stopOnce sync.Once
	stopErr  error
}

// Process describes one of the control plane's processes.
type Process struct {
	Name string
	PID  int
	Log  string // file with the process's output
	// Exited is true once the process has ended; Err is then its exit
	// error and Stopped tells whether Stop ended it.
	Exited  bool
	Stopped bool
	Err     error
}

// Start starts a fresh control plane with opts.Nodes fake nodes and returns
// once the nodes are Ready and the default ServiceAccount exists. ctx bounds
// the start only: the cluster runs until Stop. On error nothing is left
// running, and the error names the log files to read.
func Start(ctx context.Context, opts Options) (_ *Cluster, err error) {
	begin := time.Now()
	if opts.Dir == "" {
		return nil, errors.New("kubernetes: Options.Dir is required")
	}
	if opts.Nodes <= 0 {
		opts.Nodes = 2
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	kube, err := kubeBinary(opts.KubeBin, "SALVE_KUBE_BIN", "kube-"+KubeVersion)
	if err != nil {
		return nil, err
	}
	kwok, err := kubeBinary(opts.KwokBin, "SALVE_KWOK_BIN", "kwok-"+KwokVersion)
	if err != nil {
		return nil, err
	}
	etcd := opts.EtcdBin
	if etcd == "" {
		if etcd, err = exec.LookPath("etcd"); err != nil {
			return nil, errors.New("kubernetes: etcd is not installed: run scripts/kube-tools.sh, which installs Debian's etcd-server")
		}
	} else if err := checkExecutable(etcd); err != nil {
		return nil, fmt.Errorf("kubernetes: etcd %w: run scripts/kube-tools.sh, which installs Debian's etcd-server", err)
	}

	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("kubernetes: %w", err)
	}
	path := func(name string) string { return filepath.Join(dir, name) }
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("kubernetes: create %s: %w", dir, err)
	}
	if err := os.RemoveAll(path("etcd")); err != nil {
		return nil, fmt.Errorf("kubernetes: remove the previous etcd data: %w", err)
	}
	log := opts.Log
	log.Info("starting Kubernetes control plane", "version", KubeVersion, "dir", dir)

	ports, err := freePorts(5)
	if err != nil {
		return nil, err
	}
	apiPort, etcdPort, peerPort, cmPort, schedPort := ports[0], ports[1], ports[2], ports[3], ports[4]
	token, err := randomHex(32)
	if err != nil {
		return nil, err
	}
	c := &Cluster{
		Host:           fmt.Sprintf("https://127.0.0.1:%d", apiPort),
		AdminToken:     token,
		KubeconfigPath: path("kubeconfig"),
		Dir:            dir,
		log:            log,
	}
	defer func() {
		if err != nil {
			_ = c.Stop()
		}
	}()

	// Certificates and keys, generated in process.
	if c.CACertPEM, err = writePKI(dir); err != nil {
		return nil, fmt.Errorf("kubernetes: certificates: %w", err)
	}
	files := []struct {
		name string
		data []byte
	}{
		{"tokens.csv", []byte(c.AdminToken + `,admin,admin,"system:masters"` + "\n")},
		{"kubeconfig", c.kubeconfig()},
		{"kwok.yaml", kwokStages},
	}
	for _, f := range files {
		if err := os.WriteFile(path(f.name), f.data, 0o600); err != nil {
			return nil, fmt.Errorf("kubernetes: %w", err)
		}
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.CACertPEM)
	c.client = &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}},
	}

	// etcd.
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", etcdPort)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
	etcdProc, err := c.start("etcd", nil, etcd,
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
	if err != nil {
		return nil, err
	}
	plain := &http.Client{Timeout: 5 * time.Second}
	if err := c.waitFor(ctx, etcdProc, "etcd", 30*time.Second, func(ctx context.Context) bool {
		var health struct{ Health string }
		return getJSON(ctx, plain, etcdURL+"/health", &health) == nil && health.Health == "true"
	}); err != nil {
		return nil, err
	}

	// kube-apiserver.
	apiserver, err := c.start("kube-apiserver", nil, kube, "kube-apiserver",
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
	if err != nil {
		return nil, err
	}
	if err := c.waitFor(ctx, apiserver, "kube-apiserver", 2*time.Minute, func(ctx context.Context) bool {
		resp, err := c.request(ctx, http.MethodGet, "/readyz", nil)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}); err != nil {
		return nil, err
	}

	// The rest talk to the API server with the admin kubeconfig.
	kc := path("kubeconfig")
	if _, err := c.start("kube-controller-manager", nil, kube, "kube-controller-manager",
		"--kubeconfig="+kc,
		"--authentication-kubeconfig="+kc,
		"--authorization-kubeconfig="+kc,
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", cmPort),
		"--cert-dir="+path("controller-manager"),
		"--controllers=*",
		// kwok's nodes never fail, but on a loaded machine kwok renews
		// their leases late; the default 50s grace then marks them
		// NotReady and every pod unavailable, and rollouts stall. A long
		// grace keeps the fake nodes Ready through CPU starvation.
		"--node-monitor-grace-period=1h",
		"--service-account-private-key-file="+path("sa.key"),
		"--root-ca-file="+path("ca.crt"),
		"--cluster-signing-cert-file="+path("ca.crt"),
		"--cluster-signing-key-file="+path("ca.key"),
		"--profiling=false",
	); err != nil {
		return nil, err
	}
	if _, err := c.start("kube-scheduler", nil, kube, "kube-scheduler",
		"--kubeconfig="+kc,
		"--authentication-kubeconfig="+kc,
		"--authorization-kubeconfig="+kc,
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", schedPort),
		"--cert-dir="+path("scheduler"),
		"--profiling=false",
	); err != nil {
		return nil, err
	}
	// kwok's client-go (v0.36) asks for watch-list streams, which the API
	// server refuses with etcd 3.4 ("RequestWatchProgress is disabled"); it
	// falls back to list+watch and logs a warning each time. Harmless.
	if _, err := c.start("kwok", []string{"HOME=" + path("kwok-home")}, kwok, // kwok reads ~/.kwok/kwok.yaml if present
		"--kubeconfig="+kc,
		"--config="+path("kwok.yaml"),
		"--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector="+kwokNodeAnnotation+"=fake",
		"--manage-nodes-with-label-selector=",
		"--node-lease-duration-seconds=40",
		"--cidr=10.244.0.0/16",
	); err != nil {
		return nil, err
	}

	for i := range opts.Nodes {
		name := fmt.Sprintf("kwok-node-%d", i)
		c.Nodes = append(c.Nodes, name)
		if _, err := c.Do(ctx, http.MethodPost, "/api/v1/nodes", fakeNode(name), nil); err != nil {
			return nil, fmt.Errorf("kubernetes: create fake node: %w; the logs are in %s", err, dir)
		}
	}
	// Ready (kwok), untainted (the node lifecycle controller lifts the
	// not-ready taint the API server puts on new nodes), and the default
	// ServiceAccount exists (the serviceaccount controller), so pods can be
	// created and scheduled.
	if err := c.waitFor(ctx, nil, "the fake nodes (kwok.log, kube-controller-manager.log)", 2*time.Minute, func(ctx context.Context) bool {
		for _, name := range c.Nodes {
			var node struct {
				Spec   struct{ Taints []any }
				Status struct {
					Conditions []struct{ Type, Status string }
				}
			}
			if _, err := c.Do(ctx, http.MethodGet, "/api/v1/nodes/"+name, nil, &node); err != nil {
				return false
			}
			ready := false
			for _, cond := range node.Status.Conditions {
				ready = ready || (cond.Type == "Ready" && cond.Status == "True")
			}
			if !ready || len(node.Spec.Taints) > 0 {
				return false
			}
		}
		_, err := c.Do(ctx, http.MethodGet, "/api/v1/namespaces/default/serviceaccounts/default", nil, nil)
		return err == nil
	}); err != nil {
		return nil, err
	}
	c.ready.Store(true)
	log.Info("Kubernetes control plane ready", "host", c.Host, "nodes", len(c.Nodes),
		"kubeconfig", c.KubeconfigPath, "took", time.Since(begin).Round(100*time.Millisecond))
	return c, nil
}

// Stop ends every process, newest first: SIGTERM, then SIGKILL after 5s.
// It returns once all have exited. Safe to call more than once.
func (c *Cluster) Stop() error {
	c.stopOnce.Do(func() {
		var errs []error
		for i := len(c.procs) - 1; i >= 0; i-- {
			errs = append(errs, c.procs[i].stop())
		}
		c.stopErr = errors.Join(errs...)
	})
	return c.stopErr
}

// Processes describes the control plane's processes, in start order.
func (c *Cluster) Processes() []Process {
	out := make([]Process, 0, len(c.procs))
	for _, p := range c.procs {
		d := Process{Name: p.name, PID: p.cmd.Process.Pid, Log: p.log}
		select {
		case <-p.done:
			d.Exited, d.Err, d.Stopped = true, p.err, p.stopping.Load()
		default:
		}
		out = append(out, d)
	}
	return out
}

// HTTPClient trusts the cluster's CA; add the AdminToken as a bearer token.
func (c *Cluster) HTTPClient() *http.Client { return c.client }

// Do sends a JSON request as the admin to path (e.g. "/api/v1/nodes") and
// decodes a 2xx response into out when out is not nil. body is marshalled
// to JSON unless it is a []byte; PATCH requests are merge patches. It
// returns the HTTP status, and an error with the API's message unless 2xx.
func (c *Cluster) Do(ctx context.Context, method, path string, body, out any) (int, error) {
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
	resp, err := c.request(ctx, method, path, raw)
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

func (c *Cluster) request(ctx context.Context, method, path string, body []byte) (*http.Response, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Host+path, r)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.AdminToken)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		ct := "application/json"
		if method == http.MethodPatch {
			ct = "application/merge-patch+json"
		}
		req.Header.Set("Content-Type", ct)
	}
	return c.client.Do(req)
}

func (c *Cluster) kubeconfig() []byte {
	return fmt.Appendf(nil, `apiVersion: v1
kind: Config
clusters:
- name: salve-dev
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: admin
  user:
    token: %s
contexts:
- name: salve-dev
  context:
    cluster: salve-dev
    user: admin
    namespace: default
current-context: salve-dev
`, c.Host, base64.StdEncoding.EncodeToString(c.CACertPEM), c.AdminToken)
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

// kubeBinary finds a binary scripts/kube-tools.sh builds: given, else $env,
// else the versioned cache path the script writes.
func kubeBinary(given, env, name string) (string, error) {
	path := given
	if path == "" {
		path = os.Getenv(env)
	}
	if path == "" {
		cache := os.Getenv("SALVE_CACHE")
		if cache == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return "", fmt.Errorf("kubernetes: find %s: %w (set %s)", name, err, env)
			}
			cache = filepath.Join(home, ".cache", "salve")
		}
		path = filepath.Join(cache, "bin", name)
	}
	if err := checkExecutable(path); err != nil {
		return "", fmt.Errorf("kubernetes: %s %w: run scripts/kube-tools.sh, which builds it (or set %s)", name, err, env)
	}
	return path, nil
}

func checkExecutable(path string) error {
	info, err := os.Stat(path)
	switch {
	case err != nil:
		return fmt.Errorf("is missing (%s)", path)
	case info.IsDir() || info.Mode()&0o111 == 0:
		return fmt.Errorf("is not an executable file (%s)", path)
	}
	return nil
}

func getJSON(ctx context.Context, c *http.Client, url string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
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

// freePorts returns n distinct loopback TCP ports that were free a moment
// ago.
func freePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("kubernetes: find a free port: %w", err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// writePKI writes into dir: a CA (ca.crt, ca.key), the API server's serving
// certificate (apiserver.crt, apiserver.key) and the service-account
// signing key pair (sa.key, sa.pub, RSA). It returns the CA certificate's
// PEM.
func writePKI(dir string) ([]byte, error) {
	var werr error
	write := func(name, typ string, der []byte) []byte {
		data := pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil && werr == nil {
			werr = err
		}
		return data
	}
	ecKey := func(name string) (*ecdsa.PrivateKey, error) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return nil, err
		}
		write(name, "EC PRIVATE KEY", der)
		return key, nil
	}
	now := time.Now()
	// Long enough for a dev cluster left running for weeks.
	notAfter := now.Add(365 * 24 * time.Hour)
	caKey, err := ecKey("ca.key")
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "salve-dev-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	caPEM := write("ca.crt", "CERTIFICATE", caDER)
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}

	srvKey, err := ecKey("apiserver.key")
	if err != nil {
		return nil, err
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
			"kubernetes.default.svc.cluster.local"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback, net.IPv4(10, 96, 0, 1)},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	write("apiserver.crt", "CERTIFICATE", srvDER)

	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	write("sa.key", "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(saKey))
	pub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return nil, err
	}
	write("sa.pub", "PUBLIC KEY", pub)
	return caPEM, werr
}

// proc is one of the control plane's processes, logging to a file.
type proc struct {
	name, log string
	cmd       *exec.Cmd
	done      chan struct{}
	err       error // set before done is closed
	stopping  atomic.Bool
}

func (c *Cluster) start(name string, env []string, bin string, args ...string) (*proc, error) {
	logPath := filepath.Join(c.Dir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("kubernetes: %w", err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("kubernetes: start %s: %w", name, err)
	}
	p := &proc{name: name, log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logFile.Close()
		// Before done is closed, so never after Stop returned.
		if c.ready.Load() && !p.stopping.Load() {
			c.log.Error("Kubernetes control plane process exited; the cluster no longer works",
				"process", name, "err", p.err, "log", logPath)
		}
		close(p.done)
	}()
	c.procs = append(c.procs, p)
	c.log.Debug("started", "process", name, "pid", cmd.Process.Pid, "log", logPath)
	return p, nil
}

// stop sends SIGTERM, then SIGKILL after stopGrace, and waits for the exit.
func (p *proc) stop() error {
	select {
	case <-p.done:
		return nil
	default:
	}
	p.stopping.Store(true)
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kubernetes: stop %s (pid %d): %w", p.name, p.cmd.Process.Pid, err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(stopGrace):
	}
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kubernetes: kill %s (pid %d): %w", p.name, p.cmd.Process.Pid, err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(stopGrace):
		return fmt.Errorf("kubernetes: %s (pid %d) did not exit after SIGKILL", p.name, p.cmd.Process.Pid)
	}
}

// waitFor polls ok until it holds. It fails on timeout, when ctx ends, or
// when a process exits (only, if only is not nil, else any).
func (c *Cluster) waitFor(ctx context.Context, only *proc, what string, timeout time.Duration, ok func(context.Context) bool) error {
	deadline := time.Now().Add(timeout)
	for {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		good := ok(pctx)
		cancel()
		if good {
			c.log.Debug("ready", "what", what)
			return nil
		}
		for _, p := range c.procs {
			if only != nil && p != only {
				continue
			}
			select {
			case <-p.done:
				return fmt.Errorf("kubernetes: %s exited (%v) while starting the control plane; its log is %s%s",
					p.name, p.err, p.log, tail(p.log, 10))
			default:
			}
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("kubernetes: waiting for %s: %w", what, err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kubernetes: %s not ready after %s; the processes' logs are in %s", what, timeout, c.Dir)
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// tail returns the last n lines of the file at path, indented, after a
// newline; "" if there are none.
func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	if len(lines) == 0 {
		return ""
	}
	return ":\n    " + strings.Join(lines, "\n    ")
}
