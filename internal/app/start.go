package app

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"

	"github.com/salve-sre/salve/activities"
	"github.com/salve-sre/salve/activities/notify"
	"github.com/salve-sre/salve/activities/step"
	"github.com/salve-sre/salve/internal/api"
	"github.com/salve-sre/salve/internal/auth"
	"github.com/salve-sre/salve/internal/bus"
	"github.com/salve-sre/salve/internal/metrics"
	"github.com/salve-sre/salve/internal/runbookload"
	"github.com/salve-sre/salve/internal/runs"
	"github.com/salve-sre/salve/internal/safety"
	"github.com/salve-sre/salve/internal/slobudget"
	"github.com/salve-sre/salve/internal/snapshot"
	"github.com/salve-sre/salve/internal/tracing"
	"github.com/salve-sre/salve/internal/vault"
	"github.com/salve-sre/salve/slos"
	"github.com/salve-sre/salve/triggers"
	"github.com/salve-sre/salve/workflows"
)

// Start runs the roles cfg names (every role when it names none: `salve
// dev`) in this process; `salve server` and `salve worker` start here
// too. It connects to NATS and Temporal (or starts embedded ones), then
// builds each role on what they share, in the order they depend on one
// another: worker, trigger, ingest, API. Stop it with Close; a role that
// stops on its own is reported on Err.
func Start(ctx context.Context, cfg Config) (_ *Process, err error) {
	cfg.defaults()
	d := &Process{log: cfg.Log, errc: make(chan error, 4)}
	defer func() {
		if err != nil {
			d.Close()
		}
	}()
	fc, roles, authn, err := d.prepare(cfg)
	if err != nil {
		return nil, err
	}
	if cfg.InfraOnly {
		return d, d.startInfraOnly(ctx, cfg)
	}
	// First, so it is flushed last: the closers run in reverse.
	if err := d.startTracing(ctx, cfg, roles); err != nil {
		return nil, err
	}
	// Bind the HTTP port first: a port clash fails fast, before the slow parts.
	// Every production process serves HTTP: the worker and trigger roles
	// at least health, readiness and metrics, for probes and scraping.
	var ln net.Listener
	if roles.HTTP() || cfg.Production {
		if ln, err = d.listen(cfg, &fc); err != nil {
			return nil, err
		}
	}
	c, err := d.connect(ctx, cfg, fc, roles)
	if err != nil {
		return nil, err
	}
	if roles.Worker {
		if err := d.startWorker(c); err != nil {
			return nil, err
		}
	}
	if roles.Trigger {
		d.startTrigger(c)
	}
	ingest := d.ingest(c)
	if !roles.API {
		if ln != nil {
			if !roles.Ingest {
				ingest = nil
			}
			if err := d.serve(ln, probesOnly(roles, ingest, c.metrics.Handler(), cfg.Version, c.ready(roles)), fc); err != nil {
				return nil, err
			}
		}
		printRoles(cfg.Out, d, roles, c.natsURL, c.temporalAddr)
		return d, nil
	}
	if err := d.startAPI(ctx, cfg, fc, c, authn, ingest, ln); err != nil {
		return nil, err
	}
	if roles == AllRoles {
		printBanner(cfg.Out, d, cfg, c.loader.Current())
	} else {
		printRoles(cfg.Out, d, roles, c.natsURL, c.temporalAddr)
	}
	return d, nil
}

// prepare reads what every role needs before anything starts: the data
// directory, the webhook token, the config file, the roles and the API's
// authenticator.
func (d *Process) prepare(cfg Config) (FileConfig, Roles, *auth.Authenticator, error) {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return FileConfig{}, Roles{}, nil, fmt.Errorf("create data dir: %w", err)
	}
	token, err := webhookToken(cfg.DataDir, cfg.WebhookToken)
	if err != nil {
		return FileConfig{}, Roles{}, nil, err
	}
	d.WebhookToken = token
	fc, err := LoadFileConfig(cfg.ConfigFile)
	if err != nil {
		return FileConfig{}, Roles{}, nil, err
	}
	if cfg.TLSCertFile != "" || cfg.TLSKeyFile != "" {
		fc.TLS.CertFile, fc.TLS.KeyFile = cfg.TLSCertFile, cfg.TLSKeyFile
	}
	if (fc.TLS.CertFile == "") != (fc.TLS.KeyFile == "") {
		return FileConfig{}, Roles{}, nil, errors.New("TLS needs both a certificate and a key (--tls-cert and --tls-key, or tls.certFile and tls.keyFile)")
	}
	if cfg.PublicURL != "" {
		fc.PublicURL = cfg.PublicURL
	}
	if cfg.TraceURL != "" {
		if err := tracing.CheckLinkTemplate(cfg.TraceURL); err != nil {
			return FileConfig{}, Roles{}, nil, fmt.Errorf("--trace-url: %w", err)
		}
		fc.Tracing.TraceURL = cfg.TraceURL
	}
	roles := cfg.Roles
	if roles.none() {
		roles = AllRoles
	}
	if len(fc.Auth.Tokens) == 0 && cfg.Production && roles.API {
		d.log.Warn("no API tokens configured (auth.tokens in --config): every API request except health, metrics and the webhook is refused")
	}
	if len(fc.Auth.Tokens) == 0 && !cfg.Production {
		tok, tc, err := devAdminToken(cfg.DataDir)
		if err != nil {
			return FileConfig{}, Roles{}, nil, err
		}
		d.AdminToken, d.AdminTokenFile = tok, filepath.Join(cfg.DataDir, "admin-token")
		fc.Auth.Tokens = append(fc.Auth.Tokens, tc)
	}
	authn, err := auth.New(fc.Auth.Tokens)
	if err != nil {
		return FileConfig{}, Roles{}, nil, fmt.Errorf("config %s:\n%w", cfg.ConfigFile, err)
	}
	return fc, roles, authn, nil
}

// listen binds the HTTP address and settles the URLs links use.
func (d *Process) listen(cfg Config, fc *FileConfig) (net.Listener, error) {
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen on %s (use --listen to pick another address): %w", cfg.Listen, err)
	}
	d.closers = append(d.closers, func() { _ = ln.Close() })
	d.URL = "http://" + ln.Addr().String()
	if fc.TLS.CertFile != "" {
		d.URL = "https://" + ln.Addr().String()
	}
	if fc.PublicURL == "" {
		fc.PublicURL = d.URL
	}
	return ln, nil
}

// core is what the roles share: the connections, the step registry, the
// runbooks, the safety guard, the runbook signing key and the metrics.
type core struct {
	natsURL, temporalAddr, namespace string

	nc       *nats.Conn
	js       jetstream.JetStream
	pub      *bus.Publisher
	tc       client.Client
	metrics  *metrics.Metrics
	notifier *notify.Notifier

	// kubeCreds issues per-step Kubernetes credentials from Vault; nil
	// without Vault and a cluster.
	kubeCreds *vault.KubeCredentials
	reg       *step.Registry
	acts      *activities.Activities
	credCheck api.Check
	runbooks  *triggers.AtomicRunbooks
	loader    *runbookload.Loader
	// slos are the kind: SLO files next to the runbooks, by name;
	// budgets reads their burn from --prometheus-url (nil without one).
	slos    atomic.Pointer[map[string]*slos.SLO]
	budgets *slobudget.Reader
	guard   *safety.Guard
	runs    *runs.Runs
	failed  *triggers.FailedAlerts
}

// connect starts or reaches NATS and Temporal, and builds what the roles
// share on them.
func (d *Process) connect(ctx context.Context, cfg Config, fc FileConfig, roles Roles) (*core, error) {
	log := cfg.Log
	c := &core{}
	if fc.Notifications.PublicURL == "" {
		fc.Notifications.PublicURL = fc.PublicURL
	}
	var err error
	if c.notifier, err = notify.New(fc.Notifications, nil); err != nil {
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
	if c.natsURL, c.temporalAddr, c.namespace, err = d.startServers(ctx, cfg); err != nil {
		return nil, err
	}
	if c.nc, err = nats.Connect(c.natsURL, append(cfg.NATS.Options(), nats.Name("salve"), nats.MaxReconnects(-1))...); err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", c.natsURL, err)
	}
	d.closers = append(d.closers, c.nc.Close)
	if c.js, err = jetstream.New(c.nc); err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	if err := bus.EnsureStreams(ctx, c.js, bus.StreamOptions{Replicas: cfg.StreamReplicas, AlertsMaxAge: cfg.AlertsMaxAge,
		AlertsMaxBytes: cfg.AlertsMaxBytes, AuditMaxBytes: cfg.AuditMaxBytes}); err != nil {
		return nil, err
	}
	c.pub = bus.NewPublisher(c.js)
	c.metrics = metrics.New()
	c.pub.Duplicates = c.metrics

	topts := client.Options{
		HostPort:  c.temporalAddr,
		Namespace: c.namespace,
		Logger:    sdklog.NewStructuredLogger(warnOnly(log.With("component", "temporal-client"))),
		// The workflow revisions this process's worker runs are in its
		// identity: starters pick one every polling worker knows.
		Identity: "salve-" + roles.String() + "@" + hostname() + " " + workflows.IdentityTag(),
	}
	if err := cfg.Temporal.apply(&topts); err != nil {
		return nil, err
	}
	if err := temporalTracing(&topts); err != nil {
		return nil, err
	}
	if c.tc, err = client.Dial(topts); err != nil {
		return nil, fmt.Errorf("connect to Temporal at %s: %w", c.temporalAddr, err)
	}
	d.closers = append(d.closers, c.tc.Close)

	if err := waitKube(); err != nil {
		return nil, err
	}
	if d.Kubeconfig != "" {
		cfg.Kubeconfig = d.Kubeconfig
	}
	acfg := activities.Config{PrometheusURL: cfg.PrometheusURL, Notify: c.notifier}
	if acfg.Egress, err = egressPolicy(fc, cfg, log); err != nil {
		return nil, err
	}
	leases := &vault.LeaseCounters{}
	c.metrics.Leases(leaseTotals(leases))
	if c.credCheck, err = d.credentials(ctx, cfg, c, log, &acfg, leases); err != nil {
		return nil, err
	}
	if c.reg, err = activities.NewRegistryWith(acfg); err != nil {
		return nil, err
	}
	c.metrics.StepKinds(c.reg.Kinds())
	if err := d.loadRunbooks(ctx, cfg, c); err != nil {
		return nil, err
	}
	if c.guard, err = safety.Open(ctx, c.js, cfg.StreamReplicas); err != nil {
		return nil, err
	}
	c.guard.Configure(fc.Safety)
	if am := fc.Safety.Alertmanager; am.URL != "" {
		c.guard.Silences = &safety.Alertmanager{URL: am.URL, BearerTokenFile: am.BearerTokenFile}
	}
	key, err := snapshot.Load(ctx, c.js, cfg.RunbookKey, cfg.StreamReplicas)
	if err != nil {
		return nil, err
	}
	// Steps wait out a failover of the AUDIT stream's leader (see
	// bus.PatientRecorder) rather than spend their retries on it.
	c.acts = activities.New(c.reg, bus.PatientRecorder{Pub: c.pub}, log.With("component", "worker"))
	c.acts.Metrics = c.metrics
	c.acts.Safety = c.guard
	c.acts.VerifySnapshot = key.Verify
	c.acts.HookEvents = c.notifier.HookEvents
	guard := c.guard
	c.acts.Targets = func(ctx context.Context, req step.TargetRequest) (step.TargetResult, error) {
		ok, h, err := guard.AcquireTarget(ctx, req.Target, req.Runbook, req.WorkflowID)
		return step.TargetResult{Acquired: ok, HolderWorkflowID: h.WorkflowID, HolderRunbook: h.Runbook, HolderSince: h.Since}, err
	}
	c.runs = runs.New(c.tc, c.namespace, runs.DefaultTaskQueue, "salve-trigger@"+hostname())
	c.runs.Signer = key
	if c.failed, err = triggers.OpenFailedAlerts(ctx, c.js, cfg.StreamReplicas); err != nil {
		return nil, err
	}
	failed := c.failed
	c.metrics.AlertsParked(func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		n, err := failed.Count(ctx)
		if err != nil {
			return math.NaN()
		}
		return float64(n)
	})
	c.metrics.Backlogs(backlogMetrics(c.js))
	return c, nil
}

// loadRunbooks reads the runbook directory and, unless cfg turns it off,
// watches it for changes.
func (d *Process) loadRunbooks(ctx context.Context, cfg Config, c *core) error {
	c.runbooks = &triggers.AtomicRunbooks{}
	c.loader = &runbookload.Loader{Dir: cfg.RunbooksDir, Catalog: c.reg, Audit: c.pub, Log: cfg.Log.With("component", "runbooks"), Store: storeRunbooks(c.runbooks.Store, c.metrics),
		StoreSLOs: func(m map[string]*slos.SLO) { c.slos.Store(&m) }}
	if cfg.PrometheusURL != "" {
		var err error
		if c.budgets, err = slobudget.New(cfg.PrometheusURL, c.currentSLOs); err != nil {
			return err
		}
	}
	if _, err := c.loader.Reload(ctx); err != nil {
		return fmt.Errorf("load runbooks: %w", err)
	}
	if _, err := os.Stat(cfg.RunbooksDir); errors.Is(err, os.ErrNotExist) {
		cfg.Log.Warn("no runbook directory; no alert will start a run until it exists", "dir", cfg.RunbooksDir)
	}
	if cfg.RunbookReload > 0 {
		d.goRole("runbook watcher", func(ctx context.Context) error { c.loader.Watch(ctx, cfg.RunbookReload); return nil })
	}
	return nil
}

// currentSLOs is the SLO set last loaded (empty before the first load).
func (c *core) currentSLOs() map[string]*slos.SLO {
	if m := c.slos.Load(); m != nil {
		return *m
	}
	return nil
}

// ready is the readiness of a process without the API role.
func (c *core) ready(roles Roles) func(context.Context) error {
	return func(ctx context.Context) error {
		if !c.nc.IsConnected() {
			return errors.New("nats: not connected")
		}
		if !roles.Trigger && !roles.Worker {
			return nil // the webhook needs only NATS
		}
		if _, err := c.tc.CheckHealth(ctx, &client.CheckHealthRequest{}); err != nil {
			return fmt.Errorf("temporal: %w", err)
		}
		return nil
	}
}
