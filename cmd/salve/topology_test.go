package main

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/salve-sre/salve/internal/bus"
	"github.com/salve-sre/salve/internal/devstack"
	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/internal/storm"
	"github.com/salve-sre/salve/internal/testenv"
	"github.com/salve-sre/salve/internal/testenv/temporalsql"
)

// helperEnv makes the test binary a server of the topology instead of a
// test run (see TestMain): "nats" is one node of a JetStream cluster,
// "temporal" a Temporal server on PostgreSQL. Each is a process of its
// own, so the test can kill -9 it.
const helperEnv = "SALVE_TEST_HELPER"

func runHelper(kind string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	var err error
	switch kind {
	case "nats":
		err = helperNATS(ctx)
	case "temporal":
		err = helperTemporal(ctx)
	default:
		err = fmt.Errorf("unknown helper %q", kind)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "helper %s: %v\n", kind, err)
		return 1
	}
	return 0
}

// helperNATS runs one node of a three-node JetStream cluster.
func helperNATS(ctx context.Context) error {
	port, _ := strconv.Atoi(os.Getenv("SALVE_HELPER_PORT"))
	clusterPort, _ := strconv.Atoi(os.Getenv("SALVE_HELPER_CLUSTER_PORT"))
	ns, err := server.NewServer(&server.Options{
		ServerName: os.Getenv("SALVE_HELPER_NAME"),
		Host:       "127.0.0.1",
		Port:       port,
		JetStream:  true,
		StoreDir:   os.Getenv("SALVE_HELPER_DIR"),
		Cluster: server.ClusterOpts{
			Name: "salve-test",
			Host: "127.0.0.1",
			Port: clusterPort,
		},
		Routes: server.RoutesFromStr(os.Getenv("SALVE_HELPER_ROUTES")),
		NoSigs: true,
	})
	if err != nil {
		return err
	}
	ns.ConfigureLogger()
	go ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		return fmt.Errorf("not ready on port %d", port)
	}
	<-ctx.Done()
	ns.Shutdown()
	ns.WaitForShutdown()
	return nil
}

// helperTemporal runs the Temporal server (all services, one process) on
// the PostgreSQL stores temporalsql.Prepare set up.
func helperTemporal(ctx context.Context) error {
	stores, err := temporalsql.For(os.Getenv("SALVE_HELPER_PG"))
	if err != nil {
		return err
	}
	port, _ := strconv.Atoi(os.Getenv("SALVE_HELPER_PORT"))
	ts, err := devstack.StartTemporal(ctx, devstack.TemporalOptions{
		Port:            port,
		Store:           stores.Default,
		VisibilityStore: stores.Visibility,
		HistoryShards:   4,
		Logger:          slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return err
	}
	fmt.Println("temporal ready on", ts.HostPort())
	<-ctx.Done()
	return ts.Stop()
}

// The production topology, on loopback, each part a process: a
// three-node NATS JetStream cluster (Salve's streams and buckets at R3),
// a Temporal server persisting to PostgreSQL (4 history shards), the
// audit store on PostgreSQL, two `salve server` replicas with the ingest,
// trigger and api roles (two audit recorders), and two `salve worker`s.
// A storm of 2,000 alerts over 200 incidents; during it kill -9 one NATS
// node, one server replica, one worker and the Temporal server, each
// restarted. Then what the crash matrix checks holds (runStormWithKills),
// the audit store is one unbroken chain (two recorders, one sequence),
// and every stream is still R3 with all replicas current.
//
// Then the figures: the same storm shape, without kills, on this
// topology and on one `salve dev` process, in this run: accepted
// alerts/s, alert → first step p50/p99, runs/s (deploy/README.md's sizing
// section quotes them).
//
// SALVE_TOPOLOGY_ALERTS / _INCIDENTS make it bigger; SALVE_TOPOLOGY_SEED
// replays a kill schedule.
func TestProductionTopology(t *testing.T) {
	alerts, incidents := envInt(t, "SALVE_TOPOLOGY_ALERTS", 2000), envInt(t, "SALVE_TOPOLOGY_INCIDENTS", 200)
	require.GreaterOrEqual(t, alerts/incidents, 4)
	seed, rng := stormSeed(t, "SALVE_TOPOLOGY_SEED")
	t.Logf("production topology: %d alerts, %d incidents, seed %d (SALVE_TOPOLOGY_SEED=%d replays the kill schedule)", alerts, incidents, seed, seed)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	self, err := os.Executable()
	require.NoError(t, err)

	// PostgreSQL: Temporal's two databases and Salve's audit store.
	pg := testenv.Postgres(t)
	_, err = temporalsql.Prepare(ctx, pg)
	require.NoError(t, err)
	db, err := sql.Open("pgx", pg)
	require.NoError(t, err)
	defer db.Close()
	_, err = db.ExecContext(ctx, "CREATE DATABASE salve_audit")
	require.NoError(t, err)
	auditURL := withDatabase(t, pg, "salve_audit")

	// NATS: three nodes, routes to each other.
	var clientPorts, routePorts [3]int
	for i := range 3 {
		clientPorts[i], routePorts[i] = freePort(t), freePort(t)
	}
	var routes, seeds []string
	for i := range 3 {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", routePorts[i]))
		seeds = append(seeds, fmt.Sprintf("nats://127.0.0.1:%d", clientPorts[i]))
	}
	natsURL := strings.Join(seeds, ",")
	var nodes []*role
	for i := range 3 {
		port := clientPorts[i]
		n := &role{name: fmt.Sprintf("nats-%d", i+1), bin: self, env: []string{
			helperEnv + "=nats", "SALVE_HELPER_NAME=" + fmt.Sprintf("n%d", i+1),
			"SALVE_HELPER_PORT=" + strconv.Itoa(port), "SALVE_HELPER_CLUSTER_PORT=" + strconv.Itoa(routePorts[i]),
			"SALVE_HELPER_ROUTES=" + strings.Join(routes, ","), "SALVE_HELPER_DIR=" + t.TempDir(),
		}, ready: func(t *testing.T) { waitPort(t, port) }}
		n.start(t)
		nodes = append(nodes, n)
	}
	for _, n := range nodes {
		n.ready(t)
	}
	waitJetStreamCluster(t, natsURL)

	temporalPort := freePort(t)
	temporalAddr := fmt.Sprintf("127.0.0.1:%d", temporalPort)
	temporal := &role{name: "temporal (PostgreSQL)", bin: self, env: []string{
		helperEnv + "=temporal", "SALVE_HELPER_PG=" + pg, "SALVE_HELPER_PORT=" + strconv.Itoa(temporalPort),
	}, ready: func(t *testing.T) { waitPort(t, temporalPort) }}
	temporal.start(t)
	waitTemporal(t, temporalAddr)

	tg := newIdempotentTarget(t)
	rbDir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(rbDir, "storm.yaml"), []byte(stormRunbook), 0o600))
	cfgFile := adminConfig(t, t.TempDir(), 0o600)
	ext := []string{"--nats-url", natsURL, "--stream-replicas", "3", "--temporal-address", temporalAddr,
		"--runbooks", rbDir, "--config", cfgFile, "--webhook-token", "test-token-6f1c0d9e7a3b42c8a6e1f0d4b7c9e2a1", "--log-level", "warn"}
	portA, portB := freePort(t), freePort(t)
	server := func(name string, port int) *role {
		return &role{name: name, args: append([]string{"server", "--roles", "ingest,trigger,api", "--data-dir", t.TempDir(),
			"--listen", fmt.Sprintf("127.0.0.1:%d", port), "--audit-db", auditURL}, ext...)}
	}
	serverA, serverB := server("server A", portA), server("server B", portB)
	worker1 := &role{name: "worker 1", args: append([]string{"worker", "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0"}, ext...)}
	worker2 := &role{name: "worker 2", args: append([]string{"worker", "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0"}, ext...)}
	for _, r := range []*role{serverA, serverB, worker1, worker2} {
		r.start(t)
	}
	all := append(append([]*role{}, nodes...), temporal, serverA, serverB, worker1, worker2)
	t.Cleanup(func() {
		if t.Failed() {
			for _, r := range all {
				t.Logf("=== %s output:\n%s", r.name, tail(r.logs(), 4000))
			}
		}
	})
	baseA, baseB := fmt.Sprintf("http://127.0.0.1:%d", portA), fmt.Sprintf("http://127.0.0.1:%d", portB)
	serverA.ready = func(t *testing.T) { waitReady(t, baseA) }
	serverB.ready = func(t *testing.T) { waitReady(t, baseB) }
	serverA.ready(t)
	serverB.ready(t)

	killedServer := []*role{serverA, serverB}[rng.IntN(2)]
	api := baseA
	if killedServer == serverA {
		api = baseB
	}
	runStormWithKills(t, stormCase{
		name: "production topology", seed: seed, rng: rng, tg: tg,
		alerts: alerts, incidents: incidents,
		webhooks: []string{baseA, baseB}, api: api,
		natsURL: natsURL, temporalAddr: temporalAddr,
		victims: []*role{nodes[rng.IntN(3)], killedServer, worker1, temporal},
		check: func(t *testing.T) {
			// Two recorders, one chain: sequence numbers 1..n with no gap
			// or repeat (event IDs are unique by the schema).
			adb, err := sql.Open("pgx", auditURL)
			require.NoError(t, err)
			defer adb.Close()
			var n, lo, hi int64
			require.NoError(t, adb.QueryRowContext(ctx, "SELECT count(*), min(seq), max(seq) FROM audit_events").Scan(&n, &lo, &hi))
			require.Equal(t, int64(1), lo)
			require.Equal(t, n, hi, "the audit chain has gaps: %d records, last sequence %d", n, hi)
			checkR3(t, ctx, natsURL)
		},
	})

	// The figures, without kills: this topology, then `salve dev` on the
	// same machine, the same storm shape.
	figAlerts, figIncidents := alerts, incidents
	topo := measureStorm(t, ctx, "topo", []string{baseA, baseB}, temporalAddr, tg, figAlerts, figIncidents)
	// The raw floor of each Temporal, in this run: as many one-step
	// workflows as the storm has incidents, started by 8 callers, with
	// nothing of Salve's around them.
	topoFloor, err := storm.MeasureFloorAt(ctx, temporalAddr, "default", "floor-topo-", figIncidents, 8)
	require.NoError(t, err)
	devPort := freePort(t)
	devBase := fmt.Sprintf("http://127.0.0.1:%d", devPort)
	devNATS, devTemporal := freePort(t), freePort(t)
	dev := startSalve(t, "dev", "--data-dir", t.TempDir(), "--listen", fmt.Sprintf("127.0.0.1:%d", devPort),
		"--nats-port", fmt.Sprint(devNATS), "--temporal-port", fmt.Sprint(devTemporal), "--ui=false",
		"--runbooks", rbDir, "--config", cfgFile, "--webhook-token", "test-token-6f1c0d9e7a3b42c8a6e1f0d4b7c9e2a1", "--log-level", "warn")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("=== salve dev output:\n%s", tail(dev.logs.String(), 4000))
		}
	})
	waitReady(t, devBase)
	devTemporalAddr := fmt.Sprintf("127.0.0.1:%d", devTemporal)
	devFig := measureStorm(t, ctx, "dev", []string{devBase}, devTemporalAddr, tg, figAlerts, figIncidents)
	devFloor, err := storm.MeasureFloorAt(ctx, devTemporalAddr, "default", "floor-dev-", figIncidents, 8)
	require.NoError(t, err)
	t.Logf(`storm figures, %d alerts for %d incidents, no kills, same machine, same run:
                                   production topology    salve dev
  accepted alerts/s                %8.0f               %8.0f
  alert → first step p50           %8.2fs              %8.2fs
  alert → first step p99           %8.2fs              %8.2fs
  runs/s (to the last end)         %8.1f               %8.1f
  raw floor: Temporal alone, runs/s %7.1f               %8.1f   (%d one-step workflows, 8 starters)
  runs/s ÷ raw floor               %8.2f               %8.2f
  (topology: 3 NATS nodes R3, Temporal on PostgreSQL with 4 shards, PostgreSQL audit, 2 servers, 2 workers; dev: one process, embedded NATS and Temporal on SQLite; 2 cores shared by every process; each storm run has a 2 s sleep step)`,
		figAlerts, figIncidents,
		topo.acceptedPerSec, devFig.acceptedPerSec, topo.p50.Seconds(), devFig.p50.Seconds(),
		topo.p99.Seconds(), devFig.p99.Seconds(), topo.runsPerSec, devFig.runsPerSec,
		topoFloor.PerSec, devFloor.PerSec, figIncidents,
		topo.runsPerSec/topoFloor.PerSec, devFig.runsPerSec/devFloor.PerSec)
}

func withDatabase(t *testing.T, dsn, name string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	require.NoError(t, err)
	u.Path = "/" + name
	return u.String()
}

// waitJetStreamCluster waits until the cluster has a meta leader: before
// that, JetStream refuses to create streams.
func waitJetStreamCluster(t *testing.T, natsURL string) {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	var last error
	require.Eventually(t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, last = js.AccountInfo(ctx)
		return last == nil
	}, time.Minute, 200*time.Millisecond, "the JetStream cluster never formed: %v", last)
}

// waitTemporal waits until the frontend serves the default namespace.
func waitTemporal(t *testing.T, addr string) {
	t.Helper()
	var last error
	require.Eventually(t, func() bool {
		nc, err := client.NewNamespaceClient(client.Options{HostPort: addr})
		if err != nil {
			last = err
			return false
		}
		defer nc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, last = nc.Describe(ctx, "default")
		return last == nil
	}, 2*time.Minute, 250*time.Millisecond, "Temporal on PostgreSQL never served: %v", last)
}

// checkR3 checks Salve's streams are replicated three times, every replica
// current, after the kills.
func checkR3(t *testing.T, ctx context.Context, natsURL string) {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	for _, name := range []string{bus.StreamAlerts, bus.StreamAudit} {
		var info *jetstream.StreamInfo
		require.Eventually(t, func() bool {
			s, err := js.Stream(ctx, name)
			if err != nil {
				return false
			}
			info, err = s.Info(ctx)
			if err != nil || info.Cluster == nil || info.Cluster.Leader == "" || len(info.Cluster.Replicas) != 2 {
				return false
			}
			for _, r := range info.Cluster.Replicas {
				if !r.Current || r.Offline {
					return false
				}
			}
			return true
		}, time.Minute, 500*time.Millisecond, "stream %s: replicas not all current: %+v", name, info)
		require.Equal(t, 3, info.Config.Replicas, name)
	}
}

// stormFigures is what a storm without kills shows.
type stormFigures struct {
	acceptedPerSec float64
	p50, p99       time.Duration
	runsPerSec     float64
}

// measureStorm sends a storm (no poison) as fast as 8 senders get answers,
// and waits until every incident's run has ended. Alert → first step is
// from the first send of an incident's firing alert to its run's first
// mutating call at the target; runs/s counts to the last run's end.
func measureStorm(t *testing.T, ctx context.Context, prefix string, bases []string, temporalAddr string, tg *idempotentTarget, alerts, incidents int) stormFigures {
	t.Helper()
	var plan []stormAlert
	for _, a := range stormPlan(prefix, incidents, alerts/incidents, tg.URL) {
		if a.ev.Labels["poison"] == "" {
			plan = append(plan, a)
		}
	}
	const senders = 8
	var mu sync.Mutex
	firstSend := map[string]time.Time{} // instance -> first send of its firing alert
	var accepted int
	var lastAccept time.Time
	start := time.Now()
	var wg sync.WaitGroup
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := senderShare(plan, senders, s)
			for i := 0; i < len(mine); i += 10 {
				batch := mine[i:min(i+10, len(mine))]
				body := webhookBody(batch)
				now := time.Now()
				mu.Lock()
				for _, a := range batch {
					inst := a.ev.Labels["instance"]
					if _, ok := firstSend[inst]; !ok && a.ev.Status == domain.StatusFiring {
						firstSend[inst] = now
					}
				}
				mu.Unlock()
				for try := 0; !postStorm(bases[(s+try)%len(bases)], body); try++ {
					if try > 100 {
						t.Errorf("%s: a webhook was refused 100 times", prefix)
						return
					}
					time.Sleep(100 * time.Millisecond)
				}
				mu.Lock()
				accepted += len(batch)
				lastAccept = time.Now()
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	require.False(t, t.Failed())

	tc, err := client.Dial(client.Options{HostPort: temporalAddr, Namespace: "default"})
	require.NoError(t, err)
	defer tc.Close()
	var lastEnd time.Time
	var problem string
	eventually(t, 5*time.Minute, func() bool {
		ends, running, err := runEnds(ctx, tc, "salve/storm/"+prefix+"-")
		if err != nil {
			problem = err.Error()
			return false
		}
		if running > 0 || len(ends) < incidents {
			problem = fmt.Sprintf("%d runs ended, %d running, of %d", len(ends), running, incidents)
			return false
		}
		for _, at := range ends {
			if at.After(lastEnd) {
				lastEnd = at
			}
		}
		return true
	}, func() string { return prefix + ": runs never all ended: " + problem })

	var lat []time.Duration
	for inst, sent := range firstSend {
		at, ok := tg.first("/act/" + inst)
		require.True(t, ok, "%s: incident %s never acted", prefix, inst)
		lat = append(lat, at.Sub(sent))
	}
	slices.Sort(lat)
	pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	return stormFigures{
		acceptedPerSec: float64(accepted) / lastAccept.Sub(start).Seconds(),
		p50:            pct(0.50),
		p99:            pct(0.99),
		runsPerSec:     float64(incidents) / lastEnd.Sub(start).Seconds(),
	}
}

// runEnds is when each closed run whose workflow ID starts with prefix
// ended, and how many are still running.
func runEnds(ctx context.Context, tc client.Client, prefix string) (map[string]time.Time, int, error) {
	ends := map[string]time.Time{}
	running := 0
	var token []byte
	for {
		resp, err := tc.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Namespace: "default", PageSize: 1000, NextPageToken: token,
		})
		if err != nil {
			return nil, 0, err
		}
		for _, e := range resp.Executions {
			if !strings.HasPrefix(e.GetExecution().GetWorkflowId(), prefix) {
				continue
			}
			if e.GetCloseTime() == nil {
				running++
				continue
			}
			if e.GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED {
				return nil, 0, fmt.Errorf("run %s ended %s", e.GetExecution().GetWorkflowId(), e.GetStatus())
			}
			ends[e.GetExecution().GetWorkflowId()] = e.GetCloseTime().AsTime()
		}
		if token = resp.NextPageToken; len(token) == 0 {
			return ends, running, nil
		}
	}
}
