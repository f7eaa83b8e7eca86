package devstack

// Embedded, SQLite-backed Temporal dev server: the same shape as
// `temporal server start-dev --db-filename FILE`, built from the public
// packages of go.temporal.io/server so Salve needs no external binary.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	sdkclient "go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/server/common/authorization"
	"go.temporal.io/server/common/cluster"
	"go.temporal.io/server/common/config"
	"go.temporal.io/server/common/dynamicconfig"
	"go.temporal.io/server/common/log"
	"go.temporal.io/server/common/log/tag"
	"go.temporal.io/server/common/membership/static"
	sqliteplugin "go.temporal.io/server/common/persistence/sql/sqlplugin/sqlite"
	"go.temporal.io/server/common/primitives"
	sqliteschema "go.temporal.io/server/schema/sqlite"
	"go.temporal.io/server/temporal"
	"google.golang.org/protobuf/types/known/durationpb"
)

const (
	// clusterName is persisted in the DB on first start; it must never change
	// for an existing file, so it is a constant (same name the CLI uses).
	clusterName = "active"
	// defaultReadyTimeout bounds StartTemporal when ctx carries no deadline.
	defaultReadyTimeout = time.Minute
)

// TemporalOptions configures StartTemporal. Zero values give a loopback,
// in-memory server on a free port with the "default" namespace.
type TemporalOptions struct {
	DBPath    string       // SQLite file; "" = in-memory (tests)
	IP        string       // frontend bind address; default "127.0.0.1"
	Port      int          // frontend gRPC port; 0 = pick a free port
	Namespace string       // default "default"; created idempotently, 24h retention
	Logger    *slog.Logger // receives server logs at WARN+; nil = discard

	// Store, when set, replaces SQLite: an SQL store (Temporal's
	// PostgreSQL or MySQL plugin, whose package the caller imports) that
	// already holds Temporal's schema, as a production cluster's does;
	// VisibilityStore holds the visibility schema. DBPath is then unused,
	// and the namespace is registered through the frontend once it is up.
	Store, VisibilityStore *config.SQL
	// HistoryShards is persisted by the first start and must never change
	// for a store; default 1 (SQLite); required with Store.
	HistoryShards int32
}

// Temporal is a running embedded Temporal server (frontend, history,
// matching and worker services in this process).
type Temporal struct {
	server    temporal.Server
	hostPort  string
	namespace string

	logLevel *slog.LevelVar // raised to ERROR on Stop

	stopOnce sync.Once
	stopErr  error
}

// StartTemporal starts the server and returns once the frontend answers
// DescribeNamespace for the configured namespace, or fails when ctx (or, if
// ctx has no deadline, one minute) runs out.
func StartTemporal(ctx context.Context, opts TemporalOptions) (*Temporal, error) {
	// The internal ports are picked free, then released and bound by the
	// server a moment later; another process can take one in between. That
	// race is retried with new ports (a port the caller chose that is
	// taken fails all three times, with the same error).
	for attempt := 1; ; attempt++ {
		t, err := startTemporal(ctx, opts)
		if err == nil || attempt == 3 || !strings.Contains(err.Error(), "address already in use") || ctx.Err() != nil {
			return t, err
		}
	}
}

func startTemporal(ctx context.Context, opts TemporalOptions) (*Temporal, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("temporal: not started: %w", err)
	}
	if opts.IP == "" {
		opts.IP = "127.0.0.1"
	}
	if opts.Namespace == "" {
		opts.Namespace = "default"
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}

	// Frontend binds where asked; history, matching and worker are internal
	// and always stay on loopback. Ports are picked by the kernel, not as
	// port+N, because neighbouring ports are often taken.
	const internalIP = "127.0.0.1"
	ports, err := freePorts(internalIP, 3)
	if err != nil {
		return nil, err
	}
	// The frontend also serves Temporal's HTTP API (as start-dev does; it is
	// what Nexus needs, and the server warns at every start without it).
	front, err := freePorts(opts.IP, 2)
	if err != nil {
		return nil, err
	}
	httpPort := front[1]
	if opts.Port == 0 {
		opts.Port = front[0]
	}
	// Address other services and clients dial to reach the frontend; a
	// wildcard bind address is not dialable everywhere, loopback is.
	dialIP := opts.IP
	if ip := net.ParseIP(dialIP); ip != nil && ip.IsUnspecified() {
		dialIP = internalIP
	}
	hostPort := net.JoinHostPort(dialIP, strconv.Itoa(opts.Port))
	addrs := map[primitives.ServiceName]string{
		primitives.FrontendService: hostPort,
		primitives.HistoryService:  net.JoinHostPort(internalIP, strconv.Itoa(ports[0])),
		primitives.MatchingService: net.JoinHostPort(internalIP, strconv.Itoa(ports[1])),
		primitives.WorkerService:   net.JoinHostPort(internalIP, strconv.Itoa(ports[2])),
	}

	stores := map[string]config.DataStore{}
	defaultStore, visibilityStore, shards := "sqlite-default", "sqlite-default", cmp.Or(opts.HistoryShards, 1)
	if opts.Store != nil {
		if opts.VisibilityStore == nil {
			return nil, errors.New("temporal: a SQL store needs a visibility store too")
		}
		if opts.HistoryShards == 0 {
			// An existing store was created with a shard count; guessing
			// another one keeps the server from starting.
			return nil, errors.New("temporal: a SQL store needs HistoryShards, the count it was created with")
		}
		defaultStore, visibilityStore = "default", "visibility"
		stores[defaultStore] = config.DataStore{SQL: opts.Store}
		stores[visibilityStore] = config.DataStore{SQL: opts.VisibilityStore}
	} else {
		sqlCfg, err := prepareSQLite(opts.DBPath, opts.Namespace)
		if err != nil {
			return nil, err
		}
		// Same SQLite datastore for visibility, so ListWorkflowExecutions works.
		stores[defaultStore] = config.DataStore{SQL: sqlCfg}
	}

	cfg := &config.Config{}
	// Membership is static (WithStaticHosts below): no ringpop gossip ports.
	cfg.Global.Membership.MaxJoinDuration = 30 * time.Second
	cfg.Global.Membership.BroadcastAddress = internalIP
	// Metrics and pprof stay off (nil / port 0): they would need more ports.
	cfg.Persistence = config.Persistence{
		DefaultStore:     defaultStore,
		VisibilityStore:  visibilityStore,
		NumHistoryShards: shards, // persisted on first start; a dev server needs one
		DataStores:       stores,
	}
	cfg.ClusterMetadata = &cluster.Config{
		EnableGlobalNamespace:    false,
		FailoverVersionIncrement: 10,
		MasterClusterName:        clusterName,
		CurrentClusterName:       clusterName,
		ClusterInformation: map[string]cluster.ClusterInformation{
			clusterName: {
				Enabled:                true,
				InitialFailoverVersion: 1,
				// Rewritten in the DB on each start, so new ports are fine.
				RPCAddress:  hostPort,
				HTTPAddress: net.JoinHostPort(dialIP, strconv.Itoa(httpPort)),
			},
		},
	}
	cfg.DCRedirectionPolicy.Policy = "noop"
	service := func(ip, addr string) config.Service {
		_, p, _ := net.SplitHostPort(addr)
		port, _ := strconv.Atoi(p)
		return config.Service{RPC: config.RPC{GRPCPort: port, BindOnIP: ip}}
	}
	frontend := service(opts.IP, hostPort)
	frontend.RPC.HTTPPort = httpPort
	cfg.Services = map[string]config.Service{
		string(primitives.FrontendService): frontend,
		string(primitives.HistoryService):  service(internalIP, addrs[primitives.HistoryService]),
		string(primitives.MatchingService): service(internalIP, addrs[primitives.MatchingService]),
		string(primitives.WorkerService):   service(internalIP, addrs[primitives.WorkerService]),
	}
	cfg.Archival.History.State = "disabled"
	cfg.Archival.Visibility.State = "disabled"
	cfg.NamespaceDefaults.Archival.History.State = "disabled"
	cfg.NamespaceDefaults.Archival.Visibility.State = "disabled"
	// The worker service's internal SDK client dials the frontend here.
	cfg.PublicClient.HostPort = hostPort

	hosts := make(map[primitives.ServiceName]static.Hosts, len(addrs))
	for svc, addr := range addrs {
		hosts[svc] = static.SingleLocalHost(addr)
	}

	minLevel := new(slog.LevelVar)
	minLevel.Set(slog.LevelWarn)
	srvLogger := slogAdapter{l: logger, min: minLevel}
	start := time.Now()
	var srv temporal.Server
	// Temporal reports some startup failures (e.g. a port already in use)
	// through logger.Fatal and expects the process to exit; our adapter
	// panics instead, and catchFatal turns that back into an error.
	err = catchFatal(func() (err error) {
		srv, err = temporal.NewServer(
			temporal.WithConfig(cfg),
			temporal.ForServices(temporal.DefaultServices),
			temporal.WithStaticHosts(hosts),
			temporal.WithLogger(srvLogger),
			// Loopback dev server: no auth, like start-dev.
			temporal.WithAuthorizer(authorization.NewNoopAuthorizer()),
			temporal.WithClaimMapper(func(*config.Config) authorization.ClaimMapper {
				return authorization.NewNoopClaimMapper()
			}),
			temporal.WithDynamicConfigClient(devDynamicConfig()),
		)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("temporal: build server (frontend %s): %w", hostPort, err)
	}
	// Start blocks until all four services are up (it has its own timeouts
	// and takes no ctx).
	if err := catchFatal(srv.Start); err != nil {
		_ = catchFatal(srv.Stop) // release whatever did start
		return nil, fmt.Errorf("temporal: start server (frontend %s): %w", hostPort, err)
	}

	t := &Temporal{server: srv, hostPort: hostPort, namespace: opts.Namespace, logLevel: minLevel}
	if opts.Store != nil {
		if err := t.registerNamespace(ctx); err != nil {
			_ = t.Stop()
			return nil, err
		}
	}
	if err := t.waitReady(ctx); err != nil {
		_ = t.Stop()
		return nil, err
	}
	logger.Debug("temporal dev server ready", "hostPort", hostPort,
		"namespace", opts.Namespace, "db", opts.DBPath, "took", time.Since(start))
	return t, nil
}

// HostPort is the frontend gRPC address for SDK clients.
func (t *Temporal) HostPort() string { return t.hostPort }

// Namespace is the namespace created at start.
func (t *Temporal) Namespace() string { return t.namespace }

// Stop shuts all services down gracefully. Safe to call more than once (the
// server itself panics on a second Stop: it closes a channel).
func (t *Temporal) Stop() error {
	t.stopOnce.Do(func() {
		// Services stop one by one, and the survivors warn about every
		// connection the stopped ones refuse: expected, so not logged.
		t.logLevel.Set(slog.LevelError)
		t.stopErr = catchFatal(t.server.Stop)
	})
	return t.stopErr
}

// namespaceClient is a quiet client of the frontend: a failed attempt is
// reported by the caller's return value, not logged.
func (t *Temporal) namespaceClient() (sdkclient.NamespaceClient, error) {
	nc, err := sdkclient.NewNamespaceClient(sdkclient.Options{
		HostPort: t.hostPort,
		Logger:   sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler)),
	})
	if err != nil {
		return nil, fmt.Errorf("temporal: client for %s: %w", t.hostPort, err)
	}
	return nc, nil
}

// registerNamespace creates the namespace through the frontend (24h
// retention, like the SQLite path), retrying until the frontend answers;
// one that exists already is fine.
func (t *Temporal) registerNamespace(ctx context.Context) error {
	return t.poll(ctx, "register namespace", 200*time.Millisecond, func(ctx context.Context, nc sdkclient.NamespaceClient) error {
		err := nc.Register(ctx, &workflowservice.RegisterNamespaceRequest{
			Namespace:                        t.namespace,
			WorkflowExecutionRetentionPeriod: durationpb.New(24 * time.Hour),
		})
		var exists *serviceerror.NamespaceAlreadyExists
		if errors.As(err, &exists) {
			return nil
		}
		return err
	})
}

// waitReady polls DescribeNamespace: it needs the frontend listening and its
// namespace registry loaded, which is what callers need before they start
// workers or workflows.
func (t *Temporal) waitReady(ctx context.Context) error {
	return t.poll(ctx, "not ready", 100*time.Millisecond, func(ctx context.Context, nc sdkclient.NamespaceClient) error {
		_, err := nc.Describe(ctx, t.namespace)
		return err
	})
}

// poll calls attempt (each call bounded to a few seconds) every `every`
// until it succeeds or ctx — or, without a deadline, one minute — ends.
func (t *Temporal) poll(ctx context.Context, what string, every time.Duration, attempt func(context.Context, sdkclient.NamespaceClient) error) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultReadyTimeout)
		defer cancel()
	}
	nc, err := t.namespaceClient()
	if err != nil {
		return err
	}
	defer nc.Close()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		attemptCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := attempt(attemptCtx, nc)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("temporal: frontend %s: %s (namespace %q): %w (last error: %v)",
				t.hostPort, what, t.namespace, ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// prepareSQLite builds the SQLite datastore config, creates the schema when
// the DB file does not exist yet, and registers the namespace (a no-op when
// it already exists). Namespaces are written straight to the DB before the
// server starts, as start-dev does, so they exist from the first request.
func prepareSQLite(dbPath, namespace string) (*config.SQL, error) {
	sqlCfg := &config.SQL{PluginName: sqliteplugin.PluginName}
	if dbPath == "" {
		// The plugin creates the schema itself for in-memory DBs. A random
		// name keeps two servers in one process (tests) apart: the plugin
		// shares connections per DSN.
		sqlCfg.DatabaseName = strconv.Itoa(rand.IntN(1 << 30))
		sqlCfg.ConnectAttributes = map[string]string{"mode": "memory", "cache": "shared"}
	} else {
		sqlCfg.DatabaseName = dbPath
		// Write-ahead log with synchronous=NORMAL: a commit is one append
		// to the log, with no fsync per transaction. A killed process
		// (kill -9) loses nothing committed, since the log is in the OS's
		// page cache; only an OS crash or power cut can lose the last
		// commits, the same trade-off as JetStream's default fsync
		// interval. The rollback journal it replaces fsynced several
		// times per commit and bounded the whole dev stack to ~3 runs/s
		// on 2 cores (docs/performance.md has the figures).
		sqlCfg.ConnectAttributes = map[string]string{
			"mode": "rwc", "journal_mode": "wal", "synchronous": "normal", "busy_timeout": "10000",
		}
		_, err := os.Stat(dbPath)
		switch {
		case errors.Is(err, os.ErrNotExist):
			// Fail clearly on a missing directory; SQLite's error is vague.
			if _, err := os.Stat(filepath.Dir(dbPath)); err != nil {
				return nil, fmt.Errorf("temporal: db directory: %w", err)
			}
			if err := sqliteschema.SetupSchema(sqlCfg); err != nil {
				return nil, fmt.Errorf("temporal: create schema in %s: %w", dbPath, err)
			}
		case err != nil:
			return nil, fmt.Errorf("temporal: db file: %w", err)
		}
	}
	// NewNamespaceConfig sets a 24h retention.
	nsCfg, err := sqliteschema.NewNamespaceConfig(clusterName, namespace, false, nil)
	if err != nil {
		return nil, fmt.Errorf("temporal: namespace %q: %w", namespace, err)
	}
	if err := sqliteschema.CreateNamespaces(sqlCfg, nsCfg); err != nil {
		return nil, fmt.Errorf("temporal: create namespace %q: %w", namespace, err)
	}
	return sqlCfg, nil
}

// devDynamicConfig mirrors the CLI's start-dev defaults that matter to us.
func devDynamicConfig() dynamicconfig.StaticClient {
	return dynamicconfig.StaticClient{
		// Workflow Updates (used for approvals). Already default-on in this
		// server version; pinned so an upgrade cannot silently turn them off.
		dynamicconfig.FrontendEnableUpdateWorkflowExecution.Key():              true,
		dynamicconfig.FrontendEnableUpdateWorkflowExecutionAsyncAccepted.Key(): true,
		// Search attributes registered at runtime are visible immediately
		// instead of after a cache refresh (start-dev sets this too).
		dynamicconfig.ForceSearchAttributesCacheRefreshOnRead.Key(): true,
		// The default 10 visibility RPS throttles UIs and tests that poll
		// ListWorkflowExecutions.
		dynamicconfig.FrontendMaxNamespaceVisibilityRPSPerInstance.Key(): 100,
		// Smaller mutable-state cache than the production default (128k).
		dynamicconfig.HistoryCacheHostLevelMaxSize.Key(): 8096,
	}
}

// freePorts asks the kernel for n distinct free TCP ports on ip. All
// listeners stay open until every port is chosen so none repeats; the small
// window before the server binds them is acceptable for a dev server.
func freePorts(ip string, n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
		if err != nil {
			return nil, fmt.Errorf("temporal: pick free port on %s: %w", ip, err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// slogAdapter implements Temporal's log.Logger on slog. It drops records
// below min (WARN while running: at INFO the server logs many lines per
// second; ERROR once stopping).
type slogAdapter struct {
	l    *slog.Logger
	min  *slog.LevelVar // shared by every logger derived through With
	tags []tag.Tag      // from With; converted only when something is logged
}

var _ log.Logger = slogAdapter{}
var _ log.WithLogger = slogAdapter{}

func (a slogAdapter) Debug(msg string, tags ...tag.Tag) { a.log(slog.LevelDebug, msg, tags) }
func (a slogAdapter) Info(msg string, tags ...tag.Tag)  { a.log(slog.LevelInfo, msg, tags) }
func (a slogAdapter) Warn(msg string, tags ...tag.Tag)  { a.log(slog.LevelWarn, msg, tags) }
func (a slogAdapter) Error(msg string, tags ...tag.Tag) { a.log(slog.LevelError, msg, tags) }

func (a slogAdapter) With(tags ...tag.Tag) log.Logger {
	// Full slice expression: never append into a parent's backing array.
	return slogAdapter{l: a.l, min: a.min, tags: append(a.tags[:len(a.tags):len(a.tags)], tags...)}
}

func (a slogAdapter) log(level slog.Level, msg string, tags []tag.Tag) {
	ctx := context.Background()
	if level < a.min.Level() || !a.l.Enabled(ctx, level) {
		return
	}
	attrs := make([]slog.Attr, 0, len(a.tags)+len(tags))
	for _, t := range append(a.tags[:len(a.tags):len(a.tags)], tags...) {
		attrs = append(attrs, slog.Any(t.Key(), t.Value()))
	}
	a.l.LogAttrs(ctx, level, msg, attrs...)
}

// DPanic only logs, as zap does in production. Panic and Fatal must not
// return (Temporal's code after them assumes so, e.g. uses a nil listener),
// but must not os.Exit our process either: they panic with a fatalError,
// which StartTemporal recovers into an error.
func (a slogAdapter) DPanic(msg string, tags ...tag.Tag) { a.log(slog.LevelError, msg, tags) }
func (a slogAdapter) Panic(msg string, tags ...tag.Tag)  { a.fatal(msg, tags) }
func (a slogAdapter) Fatal(msg string, tags ...tag.Tag)  { a.fatal(msg, tags) }

func (a slogAdapter) fatal(msg string, tags []tag.Tag) {
	a.log(slog.LevelError, msg, tags)
	for _, t := range tags {
		if t.Key() == "error" {
			msg += ": " + fmt.Sprint(t.Value())
		}
	}
	panic(fatalError(msg))
}

// fatalError is the panic value of slogAdapter.Fatal and Panic.
type fatalError string

func (e fatalError) Error() string { return string(e) }

// catchFatal runs f and returns a fatalError panic as an error; other panics
// are real bugs and keep going.
func catchFatal(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			fe, ok := r.(fatalError)
			if !ok {
				panic(r)
			}
			err = fe
		}
	}()
	return f()
}
