// Package app holds the composition roots: the functions that build and run
// Salve's roles from configuration. They touch no signals, so tests can run
// them in-process.
package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	enumspb "go.temporal.io/api/enums/v1"
	taskqueuepb "go.temporal.io/api/taskqueue/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"

	"github.com/salve-sre/salve/activities"
	"github.com/salve-sre/salve/activities/egress"
	"github.com/salve-sre/salve/activities/kube"
	"github.com/salve-sre/salve/activities/notify"
	"github.com/salve-sre/salve/activities/step"
	"github.com/salve-sre/salve/internal/api"
	"github.com/salve-sre/salve/internal/auth"
	"github.com/salve-sre/salve/internal/bus"
	"github.com/salve-sre/salve/internal/dashboard"
	"github.com/salve-sre/salve/internal/devkube"
	"github.com/salve-sre/salve/internal/metrics"
	"github.com/salve-sre/salve/internal/runbookload"
	"github.com/salve-sre/salve/internal/runs"
	"github.com/salve-sre/salve/internal/safety"
	"github.com/salve-sre/salve/internal/snapshot"
	"github.com/salve-sre/salve/internal/stats"
	"github.com/salve-sre/salve/internal/vault"
	"github.com/salve-sre/salve/runbooks"
	"github.com/salve-sre/salve/triggers"
	"github.com/salve-sre/salve/workers"
)

// DevConfig configures `salve dev`.
type DevConfig struct {
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
	PublicURL    string
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

// Dev is a running `salve dev`.
type Dev struct {
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

func (c *DevConfig) defaults() {
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

// StartDev starts every role in this process. Stop it with Close.
func StartDev(ctx context.Context, cfg DevConfig) (_ *Dev, err error) {
	cfg.defaults()
	log := cfg.Log
	d := &Dev{log: log, errc: make(chan error, 4)}
	defer func() {
		if err != nil {
			d.Close()
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	token, err := webhookToken(cfg.DataDir, cfg.WebhookToken)
	if err != nil {
		return nil, err
	}
	d.WebhookToken = token
	fc, err := LoadFileConfig(cfg.ConfigFile)
	if err != nil {
		return nil, err
	}
	if cfg.TLSCertFile != "" || cfg.TLSKeyFile != "" {
		fc.TLS.CertFile, fc.TLS.KeyFile = cfg.TLSCertFile, cfg.TLSKeyFile
	}
	if (fc.TLS.CertFile == "") != (fc.TLS.KeyFile == "") {
		return nil, errors.New("TLS needs both a certificate and a key (--tls-cert and --tls-key, or tls.certFile and tls.keyFile)")
	}
	if cfg.PublicURL != "" {
		fc.PublicURL = cfg.PublicURL
	}
	roles := cfg.Roles
	if roles.none() {
		roles = AllRoles
	}
	if len(fc.Auth.Tokens) == 0 && cfg.Production && roles.API {
		log.Warn("no API tokens configured (auth.tokens in --config): every API request except health, metrics and the webhook is refused")
	}
	if len(fc.Auth.Tokens) == 0 && !cfg.Production {
		tok, tc, err := devAdminToken(cfg.DataDir)
		if err != nil {
			return nil, err
		}
		d.AdminToken, d.AdminTokenFile = tok, filepath.Join(cfg.DataDir, "admin-token")
		fc.Auth.Tokens = append(fc.Auth.Tokens, tc)
	}
	authn, err := auth.New(fc.Auth.Tokens)
	if err != nil {
		return nil, fmt.Errorf("config %s:\n%w", cfg.ConfigFile, err)
	}
	if cfg.InfraOnly {
		return d, d.startInfraOnly(ctx, cfg)
	}
	// Bind the HTTP port first: a port clash fails fast, before the slow parts.
	// Every production process serves HTTP: the worker and trigger roles
	// at least health, readiness and metrics, for probes and scraping.
	var ln net.Listener
	if roles.HTTP() || cfg.Production {
		ln, err = net.Listen("tcp", cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("listen on %s (use --listen to pick another address): %w", cfg.Listen, err)
		}
		d.closers = append(d.closers, func() { _ = ln.Close() })
		d.URL = "http://" + ln.Addr().String()
	}
	if fc.TLS.CertFile != "" && ln != nil {
		d.URL = "https://" + ln.Addr().String()
	}
	if fc.PublicURL == "" {
		fc.PublicURL = d.URL
	}
	if fc.Notifications.PublicURL == "" {
		fc.Notifications.PublicURL = fc.PublicURL
	}
	notifier, err := notify.New(fc.Notifications, nil)
	if err != nil {
		return nil, fmt.Errorf("config %s: notifications: %w", cfg.ConfigFile, err)
	}

	// The local cluster starts alongside NATS and Temporal, and is waited
	// for before the worker's registry needs it.
	waitKube := func() error { return nil }
	if cfg.WithKube && cfg.Kubeconfig != "" {
		log.Warn("--with-kube ignored: --kubeconfig names the cluster", "kubeconfig", cfg.Kubeconfig)
	} else if cfg.WithKube {
		waitKube = d.startKube(ctx, cfg)
	}

	natsURL, temporalAddr, namespace, err := d.startServers(ctx, cfg)
	if err != nil {
		return nil, err
	}

	nc, err := nats.Connect(natsURL, append(cfg.NATS.options(), nats.Name("salve"), nats.MaxReconnects(-1))...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", natsURL, err)
	}
	d.closers = append(d.closers, nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	if err := bus.EnsureStreams(ctx, js, bus.StreamOptions{Replicas: cfg.StreamReplicas, AlertsMaxAge: cfg.AlertsMaxAge,
		AlertsMaxBytes: cfg.AlertsMaxBytes, AuditMaxBytes: cfg.AuditMaxBytes}); err != nil {
		return nil, err
	}
	pub := bus.NewPublisher(js)
	m := metrics.New()
	pub.Duplicates = m

	topts := client.Options{
		HostPort:  temporalAddr,
		Namespace: namespace,
		Logger:    sdklog.NewStructuredLogger(warnOnly(log.With("component", "temporal-client"))),
		Identity:  "salve-" + roles.String() + "@" + hostname(),
	}
	if err := cfg.Temporal.apply(&topts); err != nil {
		return nil, err
	}
	tc, err := client.Dial(topts)
	if err != nil {
		return nil, fmt.Errorf("connect to Temporal at %s: %w", temporalAddr, err)
	}
	d.closers = append(d.closers, tc.Close)

	if err := waitKube(); err != nil {
		return nil, err
	}
	if d.Kubeconfig != "" {
		cfg.Kubeconfig = d.Kubeconfig
	}
	acfg := activities.Config{PrometheusURL: cfg.PrometheusURL, Notify: notifier}
	if acfg.Egress, err = egressPolicy(fc, cfg, log); err != nil {
		return nil, err
	}
	leases := &vault.LeaseCounters{}
	m.Leases(leaseTotals(leases))
	credCheck, err := d.credentials(ctx, cfg, pub, log, &acfg, leases)
	if err != nil {
		return nil, err
	}
	reg, err := activities.NewRegistryWith(acfg)
	if err != nil {
		return nil, err
	}
	m.StepKinds(reg.Kinds())
	rbs := &triggers.AtomicRunbooks{}
	loader := &runbookload.Loader{Dir: cfg.RunbooksDir, Catalog: reg, Audit: pub, Log: log.With("component", "runbooks"), Store: storeRunbooks(rbs.Store, m)}
	if _, err := loader.Reload(ctx); err != nil {
		return nil, fmt.Errorf("load runbooks: %w", err)
	}
	if _, err := os.Stat(cfg.RunbooksDir); errors.Is(err, os.ErrNotExist) {
		log.Warn("no runbook directory; no alert will start a run until it exists", "dir", cfg.RunbooksDir)
	}
	set := loader.Current()
	if cfg.RunbookReload > 0 {
		wctx, stopWatch := context.WithCancel(context.WithoutCancel(ctx))
		watchDone := make(chan struct{})
		go func() { defer close(watchDone); loader.Watch(wctx, cfg.RunbookReload) }()
		d.closers = append(d.closers, func() { stopWatch(); <-watchDone })
	}

	acts := activities.New(reg, pub, log.With("component", "worker"))
	acts.Metrics = m
	guard, err := safety.Open(ctx, js, cfg.StreamReplicas)
	if err != nil {
		return nil, err
	}
	guard.Configure(fc.Safety)
	if am := fc.Safety.Alertmanager; am.URL != "" {
		guard.Silences = &safety.Alertmanager{URL: am.URL, BearerTokenFile: am.BearerTokenFile}
	}
	acts.Safety = guard
	key, err := snapshot.Load(ctx, js, cfg.RunbookKey, cfg.StreamReplicas)
	if err != nil {
		return nil, err
	}
	acts.VerifySnapshot = key.Verify
	acts.HookEvents = notifier.HookEvents
	acts.Targets = func(ctx context.Context, req step.TargetRequest) (step.TargetResult, error) {
		ok, h, err := guard.AcquireTarget(ctx, req.Target, req.Runbook, req.WorkflowID)
		return step.TargetResult{Acquired: ok, HolderWorkflowID: h.WorkflowID, HolderRunbook: h.Runbook, HolderSince: h.Since}, err
	}
	if roles.Worker {
		w, err := workers.New(tc, runs.DefaultTaskQueue, reg, acts, notifier.Hook)
		if err != nil {
			return nil, err
		}
		if err := w.Start(); err != nil {
			return nil, fmt.Errorf("start worker: %w", err)
		}
		d.closers = append(d.closers, w.Stop)
	}
	rs := runs.New(tc, namespace, runs.DefaultTaskQueue, "salve-trigger@"+hostname())
	rs.Signer = key
	failed, err := triggers.OpenFailedAlerts(ctx, js, cfg.StreamReplicas)
	if err != nil {
		return nil, err
	}
	m.AlertsParked(func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		n, err := failed.Count(ctx)
		if err != nil {
			return math.NaN()
		}
		return float64(n)
	})
	m.Backlogs(backlogMetrics(js))
	if roles.Trigger {
		trig := &triggers.Trigger{Runbooks: rbs, Starter: rs, Audit: pub, Log: log.With("component", "trigger"), Metrics: m, Guard: guard, Failed: failed}
		cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		consumerDone := make(chan struct{})
		go func() {
			defer close(consumerDone)
			c := &triggers.Consumer{JS: js, Trigger: trig, Audit: pub, Log: log.With("component", "trigger")}
			if err := c.Run(cctx); err != nil {
				d.errc <- fmt.Errorf("trigger consumer: %w", err)
			}
		}()
		d.closers = append(d.closers, func() { cancel(); <-consumerDone })
	}
	// An alert NATS could never store is refused with 413, not 503 for ever.
	ingest := &triggers.Ingest{Store: pub, Audit: pub, Token: token, Log: log.With("component", "ingest"), Metrics: m,
		MaxAlertBytes: triggers.MaxAlertFor(nc.MaxPayload())}
	if ingest.MaxAlertBytes < triggers.MaxAlertBytes {
		log.Warn("the NATS server's max_payload is under 1 MiB: the webhook refuses alerts over it with 413", "max_payload", nc.MaxPayload(), "max_alert_bytes", ingest.MaxAlertBytes)
	}
	if !roles.API {
		if ln != nil {
			if !roles.Ingest {
				ingest = nil
			}
			d.serve(ln, probesOnly(roles, ingest, m.Handler(), cfg.Version, func(ctx context.Context) error {
				if !nc.IsConnected() {
					return errors.New("nats: not connected")
				}
				if !roles.Trigger && !roles.Worker {
					return nil // the webhook needs only NATS
				}
				if _, err := tc.CheckHealth(ctx, &client.CheckHealthRequest{}); err != nil {
					return fmt.Errorf("temporal: %w", err)
				}
				return nil
			}), fc)
		}
		printRoles(cfg.Out, d, roles, natsURL, temporalAddr)
		return d, nil
	}

	auditDB := cfg.AuditDB
	if auditDB == "" {
		auditDB = filepath.Join(cfg.DataDir, "audit.db")
	}
	auditLog, err := startAudit(ctx, auditDB, js, cfg.StreamReplicas, cfg.AuditKeepRecorded, m, log.With("component", "audit"))
	if err != nil {
		return nil, err
	}
	d.closers = append(d.closers, auditLog.close)
	rs.OpenApprovals = openApprovals(auditLog.store)

	m.ApprovalsPending(pendingApprovals(rs))

	srv := &api.Server{
		Ingest:    ingest,
		Metrics:   m.Handler(),
		Runs:      rs,
		Runbooks:  rbs,
		Catalog:   reg,
		Audit:     auditLog,
		Recorder:  pub,
		Auth:      authn,
		Reload:    loader.Reload,
		PublicURL: fc.PublicURL,
		Version:   cfg.Version,
		Log:       log.With("component", "api"),
		Checks: []api.Check{
			credCheck,
			{Name: "nats", Check: func(ctx context.Context) error {
				if !nc.IsConnected() {
					return errors.New("not connected")
				}
				_, err := js.Stream(ctx, bus.StreamAlerts)
				return err
			}},
			{Name: "temporal", Check: func(ctx context.Context) error {
				_, err := tc.CheckHealth(ctx, &client.CheckHealthRequest{})
				return err
			}},
			{Name: "worker", Check: func(ctx context.Context) error { return hasPollers(ctx, tc, namespace) }},
			{Name: "backlog", Check: func(context.Context) error { return nil },
				Warn: func(ctx context.Context) string { return backlogWarning(ctx, js) }},
		},
	}
	srv.Safety = guard
	srv.Failed = failed
	if srv.Sessions, err = auth.OpenSessions(ctx, js, cfg.StreamReplicas); err != nil {
		return nil, err
	}
	if srv.TrustedProxies, err = fc.trustedProxies(); err != nil {
		return nil, err
	}
	srv.Stats = (&stats.Computer{Source: auditLog, Pending: func(ctx context.Context) (int, error) {
		p, err := rs.PendingApprovals(ctx)
		return len(p), err
	}, Breakers: breakers(rbs, guard)}).Compute
	dash, err := dashboard.New(dashboard.Options{API: srv, TemporalUI: d.TemporalUI, Namespace: namespace, Log: log.With("component", "dashboard")})
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/ui/", dash)
	mux.Handle("GET /{$}", http.RedirectHandler("/ui/", http.StatusFound))
	mux.Handle("/", srv.Handler())
	d.serve(ln, mux, fc)
	if roles == AllRoles {
		printBanner(cfg.Out, d, cfg, set)
	} else {
		printRoles(cfg.Out, d, roles, natsURL, temporalAddr)
	}
	return d, nil
}

// serve serves h on ln (TLS when configured) until Close.
func (d *Dev) serve(ln net.Listener, h http.Handler, fc FileConfig) {
	hs := &http.Server{Handler: h,
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
	go func() {
		serve := func() error { return hs.Serve(ln) }
		if fc.TLS.CertFile != "" {
			serve = func() error { return hs.ServeTLS(ln, fc.TLS.CertFile, fc.TLS.KeyFile) }
		}
		if err := serve(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.errc <- fmt.Errorf("http server: %w", err)
		}
	}()
	// Stop taking webhooks first, then the rest in reverse order.
	d.closers = append(d.closers, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
	})
}

// startKube starts the local Kubernetes cluster in the background and
// returns a function that waits for it. A closer stops it.
func (d *Dev) startKube(ctx context.Context, cfg DevConfig) (wait func() error) {
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
func (d *Dev) Err() <-chan error { return d.errc }

// Close stops every role, newest first.
func (d *Dev) Close() {
	for i := len(d.closers) - 1; i >= 0; i-- {
		d.closers[i]()
	}
	d.closers = nil
}

// RunDev runs `salve dev` until ctx ends.
func RunDev(ctx context.Context, cfg DevConfig) error {
	d, err := StartDev(ctx, cfg)
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

func printBanner(w io.Writer, d *Dev, cfg DevConfig, set *runbooks.Set) {
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

func adminLine(d *Dev) string {
	if d.AdminToken == "" {
		return "  API tokens    from the config file (auth.tokens)\n"
	}
	return fmt.Sprintf("  Admin token   %s  (kept in %s; the CLI reads it from there: salve runs list)\n", d.AdminToken, d.AdminTokenFile)
}

// credentials picks where step credentials come from and returns the
// readiness check that reports it: Vault (per-step, revoked at step end),
// or a kubeconfig's standing identity, which is labelled insecure.
func (d *Dev) credentials(ctx context.Context, cfg DevConfig, pub *bus.Publisher, log *slog.Logger, acfg *activities.Config, leases *vault.LeaseCounters) (api.Check, error) {
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
		acfg.Kube = &vault.KubeCredentials{
			Vault: vc, Mount: cfg.VaultKubernetesMount, Role: cfg.VaultKubernetesRole, Cluster: cluster, Clusters: others,
			Audit: pub, Log: log.With("component", "vault"), Metrics: leases,
		}
		log.Info("kubernetes.* steps use per-step Vault credentials", "vault", cfg.Vault.Addr, "cluster", cluster.Host, "login", cfg.Vault.Method())
	}
	return api.Check{Name: "vault", Check: vc.Health}, nil
}

// egressPolicy is where runbook steps may call (egress.allow). Unset, dev
// mode allows this machine and its Prometheus only; production allows any
// host (but never link-local or metadata addresses), and says so, since a
// default that refused every host would stop every runbook on upgrade.
func egressPolicy(fc FileConfig, cfg DevConfig, log *slog.Logger) (*egress.Policy, error) {
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
