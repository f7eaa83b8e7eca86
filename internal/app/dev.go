// Package app is Salve's composition root: Start builds and runs a
// process's roles from configuration — start.go connects what the roles
// share, builders.go has one builder per role (worker, trigger, ingest,
// API), roles.go the role list and the embedded servers, dev.go the
// configuration and the process's lifecycle. Nothing here touches
// signals, so tests run whole processes in-process.
package app

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	taskqueuepb "go.temporal.io/api/taskqueue/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/salve-sre/salve/activities"
	"github.com/salve-sre/salve/activities/egress"
	"github.com/salve-sre/salve/activities/kube"
	"github.com/salve-sre/salve/internal/api"
	"github.com/salve-sre/salve/internal/auth"
	"github.com/salve-sre/salve/internal/devkube"
	"github.com/salve-sre/salve/internal/runs"
	"github.com/salve-sre/salve/internal/tracing"
	"github.com/salve-sre/salve/internal/vault"
	"github.com/salve-sre/salve/runbooks"
)

// Config configures a Salve process: `salve dev` (every role, embedded
// servers), or `salve server` and `salve worker` (the roles it names).
type Config struct {
	DataDir      string // default ./.salve
	Listen       string // HTTP API address; default 127.0.0.1:8080
	WebhookToken string // "" = read from, or generate into, DataDir/webhook-token
	RunbooksDir  string // default ./runbooks
	// RunbookReload is how often the runbook directory is checked for
	// changes; default 2s; negative = never.
	RunbookReload time.Duration
	AuditDB       string // SQLite file or postgres:// URL; default DataDir/audit.db
	// PrometheusURL is the Prometheus that prometheus.* steps query by
	// default; "" = each step must name one.
	PrometheusURL string
	// Kubeconfig gives kubernetes.* steps a cluster, with the kubeconfig's
	// own (standing) identity: a development credential source.
	Kubeconfig string
	// Vault, when its Addr is set, issues per-step credentials: Kubernetes
	// tokens from its Kubernetes secrets engine (for the cluster the
	// kubeconfig names; only its address and CA are used) and KV secrets.
	Vault vault.Config
	// VaultKubernetesMount and VaultKubernetesRole select the secrets
	// engine and the role used when a runbook names none.
	VaultKubernetesMount string
	VaultKubernetesRole  string
	// WithKube starts a local Kubernetes control plane with fake nodes
	// (internal/devkube) in DataDir/kube, fresh each start, and gives
	// kubernetes.* steps its admin kubeconfig. Ignored when Kubeconfig is
	// set.
	WithKube bool
	// ConfigFile is the YAML file with API tokens and notification
	// targets (FileConfig); "" = none: dev makes an admin token.
	ConfigFile string
	// TLSCertFile and TLSKeyFile serve the API over HTTPS (they override
	// the config file's tls section).
	TLSCertFile, TLSKeyFile string
	// PublicURL is the base URL for links (overrides the config file).
	PublicURL string
	// Getenv is the environment tracing is configured from (the OTEL_*
	// variables); nil = the process's. A load test compares runs with
	// tracing on and off in one process with it.
	Getenv func(string) string
	// TraceURL is the template of links to a run's trace (overrides the
	// config file's tracing.traceURL).
	TraceURL     string
	TemporalPort int  // default 7233; -1 = a free port
	NATSPort     int  // default 4222; -1 = a free port
	UIPort       int  // Temporal Web UI port; default 8233; -1 = a free port
	DisableUI    bool // true = no Temporal Web UI

	// Production roles. Roles selects what this process runs (zero = all:
	// dev). NATSURL and TemporalAddr name external servers; empty means
	// start embedded ones. InfraOnly starts just the embedded servers.
	Roles             Roles
	NATSURL           string
	NATS              NATSClientConfig
	TemporalAddr      string
	TemporalNamespace string // default "default"
	Temporal          TemporalTLSConfig
	InfraOnly         bool
	// Production: no admin token is generated; the API needs auth.tokens.
	Production bool
	// StreamReplicas is the replication of Salve's streams and buckets
	// (ALERTS, AUDIT, the safety state, the audit anchors): 1 in dev, 3 on
	// a production NATS cluster. Salve creates or updates them at start.
	StreamReplicas int
	// AlertsMaxAge is how long ALERTS keeps accepted alerts (default 7d).
	AlertsMaxAge time.Duration
	// AlertsMaxBytes and AuditMaxBytes bound the streams (0 =
	// bus.DefaultMaxBytes); AuditKeepRecorded is how long recorded events
	// stay in AUDIT (0 = for ever).
	AlertsMaxBytes, AuditMaxBytes int64
	AuditKeepRecorded             time.Duration
	// RunbookKey signs runbook snapshots (at least 32 bytes), shared by
	// every role; "" = one generated once in NATS (internal/snapshot).
	RunbookKey string

	Version string
	Log     *slog.Logger
	Out     io.Writer // where the banner goes; nil = io.Discard
}

// Process is a running Salve: the roles Start started.
type Process struct {
	URL          string // HTTP API base URL
	WebhookToken string
	// AdminToken is the generated API token of dev mode ("" when the
	// config file names tokens); AdminTokenFile is where it is kept.
	AdminToken     string
	AdminTokenFile string
	NATSURL        string
	TemporalAddr   string
	TemporalUI     string // Temporal Web UI base URL; "" when disabled
	// KubeHost and Kubeconfig locate the local cluster WithKube started;
	// "" without one.
	KubeHost   string
	Kubeconfig string

	log     *slog.Logger
	closers []func()
	errc    chan error
}

func (c *Config) defaults() {
	if c.DataDir == "" {
		c.DataDir = ".salve"
	}
	if c.Listen == "" {
		c.Listen = "127.0.0.1:8080"
	}
	if c.RunbookReload == 0 {
		c.RunbookReload = 2 * time.Second
	}
	if c.RunbooksDir == "" {
		c.RunbooksDir = "runbooks"
	}
	if c.TemporalPort == 0 {
		c.TemporalPort = 7233
	}
	if c.NATSPort == 0 {
		c.NATSPort = 4222
	}
	if c.UIPort == 0 {
		c.UIPort = 8233
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Out == nil {
		c.Out = io.Discard
	}
}

func freeOr(port int) int {
	if port < 0 {
		return 0
	}
	return port
}

// serve serves h on ln (TLS when configured) until Close.
func (d *Process) serve(ln net.Listener, h http.Handler, fc FileConfig) error {
	hs := &http.Server{Handler: tracing.Handler(h, fc.Tracing.Incoming == "link"),
		ReadHeaderTimeout: 10 * time.Second,
		// A webhook body (at most 4 MiB) is read well within this; a
		// client that trickles one is cut off.
		ReadTimeout: time.Minute,
		// Event streams set their own deadline (internal/api).
		WriteTimeout: time.Minute,
		// Idle keep-alive connections are closed, not held for ever.
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 64 << 10,
	}
	serve := func() error { return hs.Serve(ln) }
	if fc.TLS.CertFile != "" {
		certs, err := newCertReloader(fc.TLS.CertFile, fc.TLS.KeyFile, d.log.With("component", "tls"))
		if err != nil {
			return err
		}
		hs.TLSConfig = &tls.Config{GetCertificate: certs.GetCertificate, MinVersion: tls.VersionTLS12}
		serve = func() error { return hs.ServeTLS(ln, "", "") }
	}
	go func() {
		if err := serve(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			select {
			case d.errc <- fmt.Errorf("http server: %w", err):
			default:
				d.log.Error("stopped", "part", "http server", "error", err)
			}
		}
	}()
	// Stop taking webhooks first, then the rest in reverse order.
	d.closers = append(d.closers, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
	})
	return nil
}

// startKube starts the local Kubernetes cluster in the background and
// returns a function that waits for it. A closer stops it.
func (d *Process) startKube(ctx context.Context, cfg Config) (wait func() error) {
	type result struct {
		c   *devkube.Cluster
		err error
	}
	kctx, cancel := context.WithCancel(ctx)
	done := make(chan result, 1)
	go func() {
		c, err := devkube.Start(kctx, devkube.Options{
			Dir: filepath.Join(cfg.DataDir, "kube"),
			Log: d.log.With("component", "kube"),
		})
		done <- result{c, err}
	}()
	var (
		once sync.Once
		res  result
	)
	get := func() result {
		once.Do(func() { res = <-done })
		return res
	}
	d.closers = append(d.closers, func() {
		cancel()
		if r := get(); r.c != nil {
			if err := r.c.Stop(); err != nil {
				d.log.Warn("stop the local Kubernetes cluster", "err", err)
			}
		}
	})
	return func() error {
		r := get()
		if r.err != nil {
			return fmt.Errorf("--with-kube: %w", r.err)
		}
		d.KubeHost, d.Kubeconfig = r.c.Host, r.c.KubeconfigPath
		return nil
	}
}

// Err reports a role that stopped on its own.
func (d *Process) Err() <-chan error { return d.errc }

// goRole runs f, one of the process's long-running parts, in its own
// goroutine: the one lifecycle every part shares. f's context ends when
// Close reaches it (parts stop newest first, so the HTTP server stops
// taking webhooks before what it feeds); an error f returns before that
// (or a return with no error: a part is meant to run until Close) is
// reported on Err, which ends Run, so a supervisor restarts the process
// rather than leave it half working.
func (d *Process) goRole(name string, f func(ctx context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := f(ctx)
		if ctx.Err() == nil {
			if err == nil {
				err = errors.New("stopped on its own")
			}
			select {
			case d.errc <- fmt.Errorf("%s: %w", name, err):
			default: // Err already has a reason to stop
				d.log.Error("stopped", "part", name, "error", err)
			}
		}
	}()
	d.closers = append(d.closers, func() { cancel(); <-done })
}

// Close stops every role, newest first.
func (d *Process) Close() {
	for i := len(d.closers) - 1; i >= 0; i-- {
		d.closers[i]()
	}
	d.closers = nil
}

// Run runs `salve dev` until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	d, err := Start(ctx, cfg)
	if err != nil {
		return err
	}
	defer d.Close()
	select {
	case <-ctx.Done():
		d.log.Info("shutting down")
		return nil
	case err := <-d.Err():
		return err
	}
}

func hasPollers(ctx context.Context, tc client.Client, namespace string) error {
	resp, err := tc.WorkflowService().DescribeTaskQueue(ctx, &workflowservice.DescribeTaskQueueRequest{
		Namespace:     namespace,
		TaskQueue:     &taskqueuepb.TaskQueue{Name: runs.DefaultTaskQueue, Kind: enumspb.TASK_QUEUE_KIND_NORMAL},
		TaskQueueType: enumspb.TASK_QUEUE_TYPE_WORKFLOW,
	})
	if err != nil {
		return err
	}
	if len(resp.GetPollers()) == 0 {
		return fmt.Errorf("no worker polls task queue %s", runs.DefaultTaskQueue)
	}
	return nil
}

func webhookToken(dataDir, given string) (string, error) {
	if given != "" {
		return given, auth.CheckWebhookToken(given)
	}
	path := filepath.Join(dataDir, "webhook-token")
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		tok := strings.TrimSpace(string(b))
		if err := auth.CheckWebhookToken(tok); err != nil {
			return "", fmt.Errorf("%s: %w (delete the file to have a new one generated)", path, err)
		}
		return tok, nil
	}
	buf := make([]byte, 24)
	if _, err := rand.Read(buf); err != nil {
		return "", err
	}
	tok := hex.EncodeToString(buf)
	// Kept so Alertmanager's config stays valid across restarts.
	if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("save webhook token: %w", err)
	}
	return tok, nil
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return "unknown"
	}
	return h
}

// warnOnly keeps the Temporal SDK's info chatter out of Salve's log.
func warnOnly(l *slog.Logger) *slog.Logger {
	return slog.New(levelHandler{min: slog.LevelWarn, Handler: l.Handler()})
}

type levelHandler struct {
	min slog.Level
	slog.Handler
}

func (h levelHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.min }

func (h levelHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return levelHandler{min: h.min, Handler: h.Handler.WithAttrs(as)}
}

func (h levelHandler) WithGroup(name string) slog.Handler {
	return levelHandler{min: h.min, Handler: h.Handler.WithGroup(name)}
}

func printBanner(w io.Writer, d *Process, cfg Config, set *runbooks.Set) {
	names := make([]string, 0)
	for _, rb := range set.All() {
		names = append(names, rb.Name())
	}
	if len(names) == 0 {
		names = append(names, "(none: add YAML files to "+cfg.RunbooksDir+")")
	}
	ui := d.TemporalUI
	if ui == "" {
		ui = "(disabled)"
	}
	kubeLine := ""
	if d.KubeHost != "" {
		kubeLine = fmt.Sprintf("  Kubernetes    %s  (local test cluster; KUBECONFIG=%s kubectl get pods -A)\n", d.KubeHost, d.Kubeconfig)
	}
	fmt.Fprintf(w, `
Salve %s is running (dev mode: everything in this process, data in %s)

  Dashboard     %s/ui/
  API           %s   (GET /v1/runs, /v1/runbooks, /readyz)
  Webhook       %s/v1/alertmanager
  Webhook token %s
%s  Temporal      %s (namespace default)
  Temporal UI   %s
  NATS          %s
%s  Runbooks      %s

Alertmanager receiver (paste into alertmanager.yml):

  receivers:
    - name: salve
      webhook_configs:
        - url: %s/v1/alertmanager
          send_resolved: true
          max_alerts: 1000
          http_config:
            authorization:
              type: Bearer
              credentials: %s

Try it:  curl -s -H 'Authorization: Bearer %s' --data @triggers/testdata/webhook-demo.json %s/v1/alertmanager
Press Ctrl-C to stop; runs in flight resume on the next start.

`, cfg.Version, cfg.DataDir, d.URL, d.URL, d.URL, d.WebhookToken, adminLine(d), d.TemporalAddr, ui, d.NATSURL, kubeLine, strings.Join(names, ", "),
		d.URL, d.WebhookToken, d.WebhookToken, d.URL)
}

func adminLine(d *Process) string {
	if d.AdminToken == "" {
		return "  API tokens    from the config file (auth.tokens)\n"
	}
	return fmt.Sprintf("  Admin token   %s  (kept in %s; the CLI reads it from there: salve runs list)\n", d.AdminToken, d.AdminTokenFile)
}

// credentials picks where step credentials come from and returns the
// readiness check that reports it: Vault (per-step, revoked at step end),
// or a kubeconfig's standing identity, which is labelled insecure.
func (d *Process) credentials(ctx context.Context, cfg Config, c *core, log *slog.Logger, acfg *activities.Config, leases *vault.LeaseCounters) (api.Check, error) {
	pub := c.pub
	if cfg.Vault.Addr == "" {
		if cfg.Kubeconfig == "" {
			return api.Check{Name: "credentials", Check: func(context.Context) error { return nil }, Warning: "none configured: kubernetes.* steps and secret headers fail until --vault-addr or --kubeconfig is given"}, nil
		}
		var err error
		if acfg.Kube, err = kube.FromKubeconfig(cfg.Kubeconfig, ""); err != nil {
			return api.Check{}, err
		}
		const warn = "INSECURE development credentials: kubernetes.* steps act with the kubeconfig's standing identity, not per-step Vault credentials"
		log.Warn(warn, "kubeconfig", cfg.Kubeconfig)
		return api.Check{Name: "credentials", Check: func(context.Context) error { return nil }, Warning: warn}, nil
	}
	vc, err := vault.New(ctx, cfg.Vault, log.With("component", "vault"))
	if err != nil {
		return api.Check{}, err
	}
	d.closers = append(d.closers, vc.Close)
	acfg.Secrets = &vault.KV{Vault: vc, Audit: pub}
	if cfg.Kubeconfig != "" {
		cluster, others, err := vault.ClustersFromKubeconfig(cfg.Kubeconfig)
		if err != nil {
			return api.Check{}, err
		}
		pending, err := vault.OpenRevokes(ctx, c.js, cfg.StreamReplicas)
		if err != nil {
			return api.Check{}, err
		}
		c.kubeCreds = &vault.KubeCredentials{
			Vault: vc, Mount: cfg.VaultKubernetesMount, Role: cfg.VaultKubernetesRole, Cluster: cluster, Clusters: others,
			Audit: pub, Log: log.With("component", "vault"), Metrics: leases, Pending: pending,
		}
		acfg.Kube = c.kubeCreds
		log.Info("kubernetes.* steps use per-step Vault credentials", "vault", cfg.Vault.Addr, "cluster", cluster.Host, "login", cfg.Vault.Method())
	}
	return api.Check{Name: "vault", Check: vc.Health}, nil
}

// egressPolicy is where runbook steps may call (egress.allow). Unset, dev
// mode allows this machine and its Prometheus only; production allows any
// host (but never link-local or metadata addresses), and says so, since a
// default that refused every host would stop every runbook on upgrade.
func egressPolicy(fc FileConfig, cfg Config, log *slog.Logger) (*egress.Policy, error) {
	allow := fc.Egress.Allow
	if len(allow) == 0 && !cfg.Production {
		allow = []string{"127.0.0.0/8", "::1/128", "localhost"}
		if u, err := url.Parse(cfg.PrometheusURL); err == nil && u.Hostname() != "" {
			allow = append(allow, u.Hostname())
		}
	}
	p, err := egress.NewPolicy(allow)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if p == nil {
		log.Warn("egress.allow is not set: runbook steps may call any host except link-local and cloud metadata addresses; list the hosts and CIDRs they need in the config file")
	}
	return p, nil
}
