package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/salve-sre/salve/internal/audit"
	"github.com/salve-sre/salve/internal/bus"
	"github.com/salve-sre/salve/internal/domain"
)

const stormRunbook = `apiVersion: salve/v1
kind: Runbook
metadata: {name: storm}
spec:
  trigger:
    matchers: ['alertname="Storm"']
    incidentKey: '{{ .Labels.instance }}'
  params:
    url: {fromAnnotation: target, required: true, pattern: 'http://127\.0\.0\.1:[0-9]+'}
  safety: {cooldown: 1h}
  steps:
    - {name: act, action: http.request, with: {url: '{{ .Params.url }}/act/{{ .Labels.instance | pathEscape }}', method: POST}}
    - {name: hold, action: sleep, with: {duration: 2s}}
    - {name: verify, action: http.request, with: {url: '{{ .Params.url }}/verify/{{ .Labels.instance | pathEscape }}'}}
`

// idempotentTarget is the system runs act on. Like a careful real API, it
// applies a mutating call once per Idempotency-Key and counts the repeats
// it absorbed (at-least-once activity delivery after a crash).
type idempotentTarget struct {
	*httptest.Server
	mu         sync.Mutex
	applied    map[string]string // idempotency key -> path
	deliveries int
	firstAt    map[string]time.Time // path -> when a mutating call first came
}

// first is when a mutating call to path first came.
func (tg *idempotentTarget) first(path string) (time.Time, bool) {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	at, ok := tg.firstAt[path]
	return at, ok
}

func newIdempotentTarget(t *testing.T) *idempotentTarget {
	tg := &idempotentTarget{applied: map[string]string{}, firstAt: map[string]time.Time{}}
	tg.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			key := r.Header.Get("Idempotency-Key")
			tg.mu.Lock()
			if _, ok := tg.firstAt[r.URL.Path]; !ok {
				tg.firstAt[r.URL.Path] = time.Now()
			}
			tg.deliveries++
			if key == "" {
				key = "missing/" + strconv.Itoa(tg.deliveries)
			}
			if _, seen := tg.applied[key]; !seen {
				tg.applied[key] = r.URL.Path
			}
			tg.mu.Unlock()
		}
		_, _ = w.Write([]byte(`{"ok":true}`))
	}))
	t.Cleanup(tg.Close)
	return tg
}

// role is one process the matrix kills and restarts: a Salve role, or
// (with bin and env set) a server the test runs as a helper process.
type role struct {
	name  string
	args  []string
	bin   string             // default: the salve binary
	env   []string           // added to the environment
	ready func(t *testing.T) // waits until a (re)started role serves; nil: none
	mu    sync.Mutex
	p     *proc
}

func (r *role) start(t *testing.T) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.p = startProc(t, cmp.Or(r.bin, salveBin), r.env, r.args...)
}

// stormSeed is the kill schedule's seed: env names one to replay.
func stormSeed(t *testing.T, env string) (uint64, *rand.Rand) {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv(env); s != "" {
		var err error
		seed, err = strconv.ParseUint(s, 10, 64)
		require.NoError(t, err, env)
	}
	return seed, rand.New(rand.NewPCG(seed, seed^0x5a1e))
}

func (r *role) kill9() {
	r.mu.Lock()
	defer r.mu.Unlock()
	_ = r.p.cmd.Process.Signal(syscall.SIGKILL)
	_ = r.p.cmd.Wait()
}

func (r *role) logs() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.p.logs.String()
}

// The crash matrix: NATS+Temporal in one process (salve dev --infra-only),
// two `salve server` processes (both ingest and trigger; one also api), two
// `salve worker`s, a target that records every mutating call with its
// idempotency key, and a storm of alerts (duplicates, flaps, resolutions)
// over many incidents, with poison alerts no runbook can key in the
// middle. During the storm, kill -9 each role at a random
// point — ingest, trigger, worker, and NATS+Temporal — and restart it.
// Then: every alert Salve answered 2xx to is in ALERTS and was decided by
// the trigger; exactly one run per incident (later occurrences suppressed
// by the cooldown, each audited); no mutating call applied twice; every
// run finished; each poison alert parked once; the audit chain
// verifies. It prints the figures.
//
// SALVE_CRASH_ALERTS (default 1000) and SALVE_CRASH_INCIDENTS (default
// 100) make the longer version; SALVE_CRASH_SEED replays a kill schedule.
func TestCrashMatrix(t *testing.T) {
	alerts, incidents := envInt(t, "SALVE_CRASH_ALERTS", 1000), envInt(t, "SALVE_CRASH_INCIDENTS", 100)
	perIncident := alerts / incidents
	require.GreaterOrEqual(t, perIncident, 4, "need at least 4 alerts per incident for duplicates, flaps and resolutions")
	seed, rng := stormSeed(t, "SALVE_CRASH_SEED")
	t.Logf("crash matrix: %d alerts, %d incidents, seed %d (SALVE_CRASH_SEED=%d replays the kill schedule)", alerts, incidents, seed, seed)

	tg := newIdempotentTarget(t)
	rbDir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(rbDir, "storm.yaml"), []byte(stormRunbook), 0o600))
	cfgFile := adminConfig(t, t.TempDir(), 0o600)

	natsPort, temporalPort := freePort(t), freePort(t)
	infraDir := t.TempDir()
	infra := &role{name: "nats+temporal", args: []string{"dev", "--infra-only", "--data-dir", infraDir, "--nats-port", fmt.Sprint(natsPort),
		"--temporal-port", fmt.Sprint(temporalPort), "--ui=false"}}
	infra.ready = func(t *testing.T) {
		waitPort(t, natsPort)
		waitPort(t, temporalPort)
	}
	infra.start(t)
	infra.ready(t)
	natsURL, temporalAddr := fmt.Sprintf("nats://127.0.0.1:%d", natsPort), fmt.Sprintf("127.0.0.1:%d", temporalPort)
	ext := []string{"--nats-url", natsURL, "--temporal-address", temporalAddr, "--runbooks", rbDir, "--config", cfgFile,
		"--webhook-token", "test-token-6f1c0d9e7a3b42c8a6e1f0d4b7c9e2a1", "--log-level", "warn"}
	portA, portB := freePort(t), freePort(t)
	serverA := &role{name: "server A (ingest,trigger,api)", args: append([]string{"server", "--roles", "ingest,trigger,api", "--data-dir", t.TempDir(),
		"--listen", fmt.Sprintf("127.0.0.1:%d", portA)}, ext...)}
	// One api replica: with SQLite the audit store has one writer (several
	// api replicas need PostgreSQL). Both servers ingest and trigger.
	serverB := &role{name: "server B (ingest,trigger)", args: append([]string{"server", "--roles", "ingest,trigger", "--data-dir", t.TempDir(),
		"--listen", fmt.Sprintf("127.0.0.1:%d", portB)}, ext...)}
	worker1 := &role{name: "worker 1", args: append([]string{"worker", "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0"}, ext...)}
	worker2 := &role{name: "worker 2", args: append([]string{"worker", "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0"}, ext...)}
	for _, r := range []*role{serverA, serverB, worker1, worker2} {
		r.start(t)
	}
	all := []*role{infra, serverA, serverB, worker1, worker2}
	t.Cleanup(func() {
		if t.Failed() {
			for _, r := range all {
				t.Logf("=== %s output:\n%s", r.name, tail(r.logs(), 4000))
			}
		}
	})
	baseA, baseB := fmt.Sprintf("http://127.0.0.1:%d", portA), fmt.Sprintf("http://127.0.0.1:%d", portB)
	waitReady(t, baseA)
	waitReady(t, baseB)
	runStormWithKills(t, stormCase{
		name: "crash matrix", seed: seed, rng: rng, tg: tg,
		alerts: alerts, incidents: incidents,
		webhooks: []string{baseA, baseB}, api: baseA,
		natsURL: natsURL, temporalAddr: temporalAddr,
		victims: []*role{serverB, serverA, worker1, infra},
	})
}

// stormCase is a deployment under a storm: where to send alerts, what to
// kill.
type stormCase struct {
	name              string
	seed              uint64
	rng               *rand.Rand
	tg                *idempotentTarget
	alerts, incidents int
	webhooks          []string // servers that take webhooks (ingest)
	api               string   // a server with the api role
	natsURL           string
	temporalAddr      string
	// victims are killed with SIGKILL once each, at random points of the
	// storm, and restarted; a role's ready (if any) waits for it after.
	victims []*role
	// check, if set, runs after the common checks (the caller's own).
	check func(t *testing.T)
}

// runStormWithKills sends a storm of alerts (duplicates, flaps,
// resolutions, poison) while killing each victim once, waits until
// everything drained, and checks what must hold after any crash: every
// alert answered 2xx is stored and decided, exactly one run per incident,
// every run final, no mutating call applied twice, each poison alert
// parked once, and the audit chain verifies. It prints the figures.
func runStormWithKills(t *testing.T, sc stormCase) {
	alerts, incidents, seed, rng, tg := sc.alerts, sc.incidents, sc.seed, sc.rng, sc.tg
	perIncident := alerts / incidents
	natsURL, temporalAddr, baseA := sc.natsURL, sc.temporalAddr, sc.api

	// The storm: each incident's notifications go in order through one
	// sender, as Alertmanager sends one group's; webhooks carry 10 alerts.
	plan := stormPlan("i", incidents, perIncident, tg.URL)
	const senders = 8
	var sent, accepted, webhooks, retries atomic.Int64
	var acceptedMu sync.Mutex
	acceptedIDs := map[string]domain.AlertEvent{} // alert ID -> the alert (status, instance)
	stormStart := time.Now()
	stormDur := 25 * time.Second
	gap := stormDur / time.Duration(max(1, len(plan)/senders/10+1))
	var wg sync.WaitGroup
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := senderShare(plan, senders, s)
			for start := 0; start < len(mine); start += 10 {
				batch := mine[start:min(start+10, len(mine))]
				bases := sc.webhooks
				body := webhookBody(batch)
				sent.Add(int64(len(batch)))
				webhooks.Add(1)
				// Like Alertmanager: retry until an answer says stored,
				// alternating between the two servers.
				deadline := time.Now().Add(3 * time.Minute)
				for try := 0; ; try++ {
					if postStorm(bases[(s+try)%len(bases)], body) {
						acceptedMu.Lock()
						for _, a := range batch {
							acceptedIDs[a.ev.ID] = a.ev
						}
						acceptedMu.Unlock()
						accepted.Add(int64(len(batch)))
						break
					}
					retries.Add(1)
					if time.Now().After(deadline) {
						t.Errorf("sender %d: webhook never accepted in 3 minutes", s)
						return
					}
					time.Sleep(300 * time.Millisecond)
				}
				time.Sleep(gap)
			}
		}()
	}

	// The kills: each role once, at a random point of the storm, in a
	// random order; the victim restarts after a short pause.
	victims := append([]*role(nil), sc.victims...)
	rng.Shuffle(len(victims), func(i, j int) { victims[i], victims[j] = victims[j], victims[i] })
	var killLog []string
	for i, v := range victims {
		at := time.Duration(i)*stormDur/time.Duration(len(victims)) + time.Duration(rng.Int64N(int64(stormDur/time.Duration(len(victims))/2)))
		if wait := time.Until(stormStart.Add(at)); wait > 0 {
			time.Sleep(wait)
		}
		v.kill9()
		killLog = append(killLog, fmt.Sprintf("%.1fs kill -9 %s", time.Since(stormStart).Seconds(), v.name))
		time.Sleep(time.Duration(500+rng.IntN(1500)) * time.Millisecond)
		v.start(t)
		if v.ready != nil {
			v.ready(t)
		}
		killLog = append(killLog, fmt.Sprintf("%.1fs restarted %s", time.Since(stormStart).Seconds(), v.name))
	}
	wg.Wait()
	stormEnd := time.Now()
	require.False(t, t.Failed(), "the storm did not get every webhook accepted")
	waitReady(t, baseA)

	// Drain: the trigger consumer has nothing pending and every run is
	// closed.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	nc, err := nats.Connect(natsURL)
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	tc, err := client.Dial(client.Options{HostPort: temporalAddr, Namespace: "default"})
	require.NoError(t, err)
	defer tc.Close()

	var execs map[string][]enumspb.WorkflowExecutionStatus
	var lastProblem string
	drained := func() bool {
		cons, err := js.Consumer(ctx, bus.StreamAlerts, bus.TriggerDurable)
		if err != nil {
			lastProblem = err.Error()
			return false
		}
		info, err := cons.Info(ctx)
		if err != nil || info.NumPending > 0 || info.NumAckPending > 0 {
			lastProblem = fmt.Sprintf("trigger consumer: %+v %v", info, err)
			return false
		}
		execs, err = listExecutions(ctx, tc)
		if err != nil {
			lastProblem = err.Error()
			return false
		}
		for id, ss := range execs {
			for _, st := range ss {
				if st == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
					lastProblem = id + " still running"
					return false
				}
			}
		}
		return true
	}
	eventually(t, 5*time.Minute, drained, func() string { return "never drained: " + lastProblem })
	drainTime := time.Since(stormEnd)

	// 1. Every accepted alert is in ALERTS.
	stored := alertsInStream(ctx, t, js)
	for id := range acceptedIDs {
		require.Contains(t, stored, id, "alert %s was answered 2xx but is not in ALERTS", id)
	}

	// 2. Every accepted alert was decided by the trigger (the audit log
	// lags the stream a little).
	firingIncidents := map[string]bool{}
	poisoned := map[string]bool{}
	for id, ev := range acceptedIDs {
		switch {
		case ev.Labels["poison"] != "":
			poisoned[id] = true
		case ev.Status == domain.StatusFiring:
			firingIncidents[ev.Labels["instance"]] = true
		}
	}
	require.Len(t, poisoned, poisonAlerts)
	var decisions map[string][]audit.Record
	eventually(t, 2*time.Minute, func() bool {
		decisions = triggerDecisions(t, baseA)
		for id := range acceptedIDs {
			if len(decisions[id]) == 0 {
				lastProblem = "no trigger decision for alert " + id
				return false
			}
		}
		return true
	}, func() string { return "not every accepted alert was decided: " + lastProblem })

	// 3. Exactly one run per incident that fired, all succeeded.
	for inst := range firingIncidents {
		id := "salve/storm/" + inst
		require.Len(t, execs[id], 1, "incident %s: runs %v", inst, execs[id])
		require.Equal(t, enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED, execs[id][0], "incident %s", inst)
	}
	require.Len(t, execs, len(firingIncidents), "no runs beyond one per incident")
	suppressed, joined := 0, 0
	for _, recs := range decisions {
		for _, r := range recs {
			switch r.Event.Action {
			case domain.ActionTriggerSuppressed:
				require.Equal(t, "cooldown", r.Event.Outcome, "suppressed with a reason: %+v", r.Event)
				require.NotEmpty(t, r.Event.Error)
				suppressed++
			case domain.ActionRunJoined:
				joined++
			}
		}
	}

	// 4. No mutating call applied twice: one applied /act per incident,
	// whatever the deliveries.
	tg.mu.Lock()
	perPath := map[string]int{}
	for _, path := range tg.applied {
		perPath[path]++
	}
	deliveries, applied := tg.deliveries, len(tg.applied)
	tg.mu.Unlock()
	for inst := range firingIncidents {
		require.Equal(t, 1, perPath["/act/"+inst], "incident %s: mutating calls applied", inst)
	}
	require.Equal(t, len(firingIncidents), applied)

	// 5. Every poison alert is parked once, for a person, with its
	// reason, and audited as trigger.failed.
	var failed struct {
		FailedAlerts []struct {
			AlertID string `json:"alertId"`
			Reason  string `json:"reason"`
		} `json:"failedAlerts"`
	}
	getAPI(t, baseA+"/v1/failed-alerts", &failed)
	parked := map[string]int{}
	for _, f := range failed.FailedAlerts {
		parked[f.AlertID]++
		require.Contains(t, f.Reason, "instance", "parked with the reason")
	}
	for id := range poisoned {
		require.Equal(t, 1, parked[id], "poison alert %s parked once", id)
		failedRecs := 0
		for _, r := range decisions[id] {
			if r.Event.Action == domain.ActionTriggerFailed {
				failedRecs++
			}
		}
		require.Equal(t, 1, failedRecs, "poison alert %s audited as trigger.failed once: %+v", id, decisions[id])
	}
	require.Len(t, parked, len(poisoned), "only the poison is parked")

	// 6. The audit chain verifies.
	var v audit.VerifyResult
	getAPI(t, baseA+"/v1/audit/verify", &v)
	require.True(t, v.OK, "audit chain: %+v", v)

	uniqueStored := len(stored)
	if sc.check != nil {
		sc.check(t)
	}
	t.Logf(`%s figures (seed %d):
  kills:                  %s
  alerts sent:            %d in %d webhooks (%d webhook retries after errors)
  alerts accepted (2xx):  %d, %d distinct; ALERTS holds %d distinct alerts
  duplicates prevented:   %d repeated alert notifications stored once
  incidents with a run:   %d (exactly 1 run each, all succeeded)
  poison alerts:          %d, each parked once (trigger.failed)
  joined a running run:   %d; suppressed by cooldown (audited): %d
  mutating calls:         %d delivered, %d applied (%d repeats absorbed by idempotency keys)
  storm:                  %.1fs; time to drain after it: %.1fs
  audit chain:            OK, %d records`,
		sc.name, seed, strings.Join(killLog, "; "), sent.Load(), webhooks.Load(), retries.Load(),
		accepted.Load(), len(acceptedIDs), uniqueStored, accepted.Load()-int64(len(acceptedIDs)),
		len(firingIncidents), len(poisoned), joined, suppressed, deliveries, applied, deliveries-applied,
		stormEnd.Sub(stormStart).Seconds(), drainTime.Seconds(), v.Checked)
}

// poisonAlerts is how many alerts of the storm no runbook can handle.
const poisonAlerts = 10

type stormAlert struct {
	incident int
	step     int // position in its incident's sequence
	ev       domain.AlertEvent
	target   string
}

// senderShare is the alerts sender s of n sends: whole incidents, in
// order, as Alertmanager sends one group's notifications.
func senderShare(plan []stormAlert, n, s int) []stormAlert {
	var mine []stormAlert
	for _, a := range plan {
		if a.incident%n == s {
			mine = append(mine, a)
		}
	}
	return mine
}

// stormPlan is each incident's notifications in order: a firing alert
// sent three times (Alertmanager HA and retries), its resolution, then
// flaps (a new occurrence firing and resolving) for the rest.
// Incidents are named prefix-NNN; storms with different prefixes share
// no alert.
func stormPlan(prefix string, incidents, perIncident int, target string) []stormAlert {
	t0 := time.Date(2026, 11, 24, 8, 0, 0, 0, time.UTC)
	h := fnv.New32a()
	h.Write([]byte(prefix))
	space := uint64(h.Sum32()) << 32
	var out []stormAlert
	for i := range incidents {
		inst := fmt.Sprintf("%s-%03d", prefix, i)
		fp := fmt.Sprintf("%016x", space+0x5700000+uint64(i))
		mk := func(status string, occurrence int) stormAlert {
			starts := t0.Add(time.Duration(occurrence) * time.Minute)
			return stormAlert{incident: i, target: target, ev: domain.AlertEvent{
				ID: domain.AlertEventID(fp, status, starts), Fingerprint: fp, Status: status, StartsAt: starts,
				Labels: map[string]string{"alertname": "Storm", "instance": inst},
			}}
		}
		seq := []stormAlert{mk(domain.StatusFiring, 0), mk(domain.StatusFiring, 0), mk(domain.StatusFiring, 0), mk(domain.StatusResolved, 0)}
		for occ := 1; len(seq) < perIncident; occ++ {
			seq = append(seq, mk(domain.StatusFiring, occ))
			if len(seq) < perIncident {
				seq = append(seq, mk(domain.StatusResolved, occ))
			}
		}
		for k := range seq {
			seq[k].step = k
		}
		out = append(out, seq...)
	}
	// Poison in the middle of the storm: alerts the runbook cannot key
	// (no instance label). Each must be parked for a person, once, and
	// hold nothing else up.
	for k := range poisonAlerts {
		fp := fmt.Sprintf("%016x", space+0xb0150000+uint64(k))
		out = append(out, stormAlert{incident: k, step: perIncident / 2, target: target, ev: domain.AlertEvent{
			ID: domain.AlertEventID(fp, domain.StatusFiring, t0), Fingerprint: fp, Status: domain.StatusFiring, StartsAt: t0,
			Labels: map[string]string{"alertname": "Storm", "poison": "yes"},
		}})
	}
	// Interleave incidents: the storm sends step k of every incident
	// before step k+1 of any, so each webhook mixes incidents.
	sort.SliceStable(out, func(a, b int) bool { return out[a].step < out[b].step })
	return out
}

func webhookBody(batch []stormAlert) []byte {
	type amAlert struct {
		Status      string            `json:"status"`
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
		StartsAt    time.Time         `json:"startsAt"`
		EndsAt      time.Time         `json:"endsAt"`
		Fingerprint string            `json:"fingerprint"`
	}
	var as []amAlert
	for _, a := range batch {
		am := amAlert{Status: a.ev.Status, Labels: a.ev.Labels, Annotations: map[string]string{"target": a.target},
			StartsAt: a.ev.StartsAt, Fingerprint: a.ev.Fingerprint}
		if a.ev.Status == domain.StatusResolved {
			am.EndsAt = a.ev.StartsAt.Add(30 * time.Second)
		}
		as = append(as, am)
	}
	b, _ := json.Marshal(map[string]any{"version": "4", "status": "firing", "receiver": "salve", "groupKey": "storm", "alerts": as})
	return b
}

func postStorm(base string, body []byte) bool {
	req, _ := http.NewRequest(http.MethodPost, base+"/v1/alertmanager", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer test-token-6f1c0d9e7a3b42c8a6e1f0d4b7c9e2a1")
	req.Header.Set("Content-Type", "application/json")
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode/100 == 2
}

// listExecutions lists every workflow execution, closed or not, by
// workflow ID.
func listExecutions(ctx context.Context, tc client.Client) (map[string][]enumspb.WorkflowExecutionStatus, error) {
	out := map[string][]enumspb.WorkflowExecutionStatus{}
	var token []byte
	for {
		resp, err := tc.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Namespace: "default", PageSize: 1000, NextPageToken: token})
		if err != nil {
			return nil, err
		}
		for _, e := range resp.Executions {
			id := e.GetExecution().GetWorkflowId()
			out[id] = append(out[id], e.GetStatus())
		}
		if token = resp.NextPageToken; len(token) == 0 {
			return out, nil
		}
	}
}

// alertsInStream reads every alert ID stored in ALERTS. A read that fails
// (on a cluster, a stream leader that moved after a kill answers "no
// responders" for a moment) starts over, for up to a minute.
func alertsInStream(ctx context.Context, t *testing.T, js jetstream.JetStream) map[string]bool {
	t.Helper()
	read := func() (map[string]bool, error) {
		stream, err := js.Stream(ctx, bus.StreamAlerts)
		if err != nil {
			return nil, err
		}
		info, err := stream.Info(ctx)
		if err != nil {
			return nil, err
		}
		out := map[string]bool{}
		cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
		if err != nil {
			return nil, err
		}
		for got := uint64(0); got < info.State.Msgs; {
			batch, err := cons.Fetch(500, jetstream.FetchMaxWait(5*time.Second))
			if err != nil {
				return nil, err
			}
			n := 0
			for m := range batch.Messages() {
				n++
				var ev domain.AlertEvent
				if err := json.Unmarshal(m.Data(), &ev); err != nil {
					return nil, fmt.Errorf("message %d is not an alert: %w", got+uint64(n), err)
				}
				out[ev.ID] = true
			}
			if err := batch.Error(); err != nil {
				return nil, err
			}
			if n == 0 {
				return nil, fmt.Errorf("ALERTS has %d messages, read %d", info.State.Msgs, got)
			}
			got += uint64(n)
		}
		return out, nil
	}
	var out map[string]bool
	var last error
	eventually(t, time.Minute, func() bool {
		out, last = read()
		return last == nil
	}, func() string { return fmt.Sprintf("reading ALERTS: %v", last) })
	return out
}

// triggerDecisions reads every trigger decision from the audit log, by
// the alert ID it decided.
func triggerDecisions(t *testing.T, base string) map[string][]audit.Record {
	t.Helper()
	out := map[string][]audit.Record{}
	for _, action := range []string{domain.ActionTriggerMatched, domain.ActionRunJoined, domain.ActionTriggerSuppressed, domain.ActionRunSignalled, domain.ActionTriggerNoMatch, domain.ActionTriggerFailed} {
		after := int64(0)
		for {
			var page struct {
				Events    []audit.Record `json:"events"`
				NextAfter int64          `json:"nextAfter"`
			}
			getAPI(t, fmt.Sprintf("%s/v1/audit?action=%s&limit=5000&after=%d", base, action, after), &page)
			for _, r := range page.Events {
				out[r.Event.Detail["alertId"]] = append(out[r.Event.Detail["alertId"]], r)
			}
			if page.NextAfter == 0 {
				break
			}
			after = page.NextAfter
		}
	}
	return out
}

func getAPI(t *testing.T, url string, out any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+apiToken)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, url)
	require.NoError(t, json.NewDecoder(resp.Body).Decode(out))
}

// eventually polls cond every second until it holds or within passes,
// then fails with why's last answer.
func eventually(t *testing.T, within time.Duration, cond func() bool, why func() string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal(why())
		}
		time.Sleep(time.Second)
	}
}

func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	require.NoError(t, err, name)
	return n
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
