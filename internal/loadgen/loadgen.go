// Package loadgen is the logic of salve-load, Salve's load generator for the
// ingest path (DESIGN §6): it posts Alertmanager v4 webhooks to
// POST /v1/alertmanager from N concurrent senders and reports how many alerts
// were acknowledged durably, at what rate and latency. In embedded mode it
// starts its own NATS JetStream and the real triggers.Ingest, and also
// measures raw JetStream publishing on the same server — the floor — so one
// run prints the ratio ingest/raw.
//
// It only talks to loopback addresses, and every run is bounded in alert
// count and duration: it stops by itself.
package loadgen

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/salve-sre/salve/internal/bus"
	"github.com/salve-sre/salve/internal/devnats"
	"github.com/salve-sre/salve/triggers"
)

// Version is set at build time with
// -ldflags "-X github.com/salve-sre/salve/internal/loadgen.Version=v0.1.0".
var Version = "dev"

// Bounds of one run: salve-load always stops by itself.
const (
	MaxAlerts       = 2_000_000
	MaxSenders      = 1024
	MaxDuration     = time.Hour
	DefaultDuration = 5 * time.Minute
	DefaultPath     = "/v1/alertmanager"
)

// Config describes one ingest run.
type Config struct {
	URL        string // Salve base URL (path /v1/alertmanager is added) or full webhook URL; loopback only
	Token      string // webhook bearer token
	Senders    int    // concurrent senders; default 8
	Alerts     int    // alerts to send in total, duplicates included; default 20000
	PerWebhook int    // alerts per webhook; default 1
	// Duration stops the run early even if not every alert was sent;
	// 0 = DefaultDuration. Requests in flight at the deadline finish.
	Duration time.Duration
	// DupRatio is the share of alerts that repeat an alert state already
	// generated (same fingerprint, status and startsAt: Alertmanager retries
	// and HA duplicates). The stream must store each state once.
	DupRatio float64
	// Incidents > 0 draws every alert from that many fingerprints, and each
	// new state of an incident flaps: firing, resolved, firing again with a
	// new startsAt, ... (the storm scenario). 0 = every alert is new.
	Incidents int
	Alertname string // default "SalveLoad"
	Seed      uint64 // 0 = random; the run ID is always random so reruns do not dedupe
	PID       int    // target process whose VmHWM/VmRSS are reported; 0 = none
	// Progress receives a line every ProgressEvery (default 1s); nil = none.
	Progress       io.Writer
	ProgressEvery  time.Duration
	RequestTimeout time.Duration // per webhook; default 30s
}

func (c *Config) defaults() {
	if c.Senders == 0 {
		c.Senders = 8
	}
	if c.Alerts == 0 {
		c.Alerts = 20000
	}
	if c.PerWebhook == 0 {
		c.PerWebhook = 1
	}
	if c.Duration == 0 {
		c.Duration = DefaultDuration
	}
	if c.Alertname == "" {
		c.Alertname = "SalveLoad"
	}
	if c.ProgressEvery == 0 {
		c.ProgressEvery = time.Second
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = 30 * time.Second
	}
}

// validate checks the bounds and the token; the URL is checked by
// WebhookURL.
func (c *Config) validate() error {
	if err := c.validateLoad(); err != nil {
		return err
	}
	if c.Token == "" {
		return errors.New("--token is required (Salve's webhook token)")
	}
	return nil
}

// validateLoad checks the bounds of a run.
func (c *Config) validateLoad() error {
	var problems []string
	if c.Senders < 1 || c.Senders > MaxSenders {
		problems = append(problems, fmt.Sprintf("--senders must be 1..%d", MaxSenders))
	}
	if c.Alerts < 1 || c.Alerts > MaxAlerts {
		problems = append(problems, fmt.Sprintf("--alerts must be 1..%d", MaxAlerts))
	}
	if c.PerWebhook < 1 || c.PerWebhook > triggers.MaxAlertsPerWebhook {
		problems = append(problems, fmt.Sprintf("--per-webhook must be 1..%d", triggers.MaxAlertsPerWebhook))
	}
	if c.Duration <= 0 || c.Duration > MaxDuration {
		problems = append(problems, fmt.Sprintf("--duration must be more than 0 and at most %s", MaxDuration))
	}
	if c.DupRatio < 0 || c.DupRatio >= 1 || math.IsNaN(c.DupRatio) {
		problems = append(problems, "--dup-ratio must be in [0, 1)")
	}
	if c.Incidents < 0 {
		problems = append(problems, "--incidents must be >= 0")
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// WebhookURL checks that raw points at a loopback address and returns the
// webhook URL (adding /v1/alertmanager to a bare base URL).
func WebhookURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("--url: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("--url %q: want http:// or https://", raw)
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); ip == nil {
		if !strings.EqualFold(host, "localhost") {
			return "", fmt.Errorf("--url %q: salve-load only loads loopback targets (127.0.0.0/8, ::1, localhost)", raw)
		}
	} else if !ip.IsLoopback() {
		return "", fmt.Errorf("--url %q: salve-load only loads loopback targets (127.0.0.0/8, ::1, localhost)", raw)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = DefaultPath
	}
	return u.String(), nil
}

// ---- alert generation ----

// alertState is one state of one alert: what Alertmanager's dedup ID names.
type alertState struct {
	fingerprint string
	instance    string
	status      string
	startsAt    time.Time
	endsAt      time.Time
}

// generator produces the alert sequence of a run. It is used by one
// goroutine.
type generator struct {
	run       uint32 // random per run: fingerprints never collide with earlier runs
	alertname string
	incidents int
	dupRatio  float64
	rng       *mrand.Rand
	base      time.Time

	states   []int        // incidents mode: states generated per incident
	last     []alertState // incidents mode: latest state per incident
	recent   []alertState // unique mode: ring of recent states to duplicate
	distinct int
	dups     int
}

func newGenerator(c Config) *generator {
	var b [12]byte
	_, _ = rand.Read(b[:])
	seed := c.Seed
	if seed == 0 {
		seed = binary.LittleEndian.Uint64(b[4:])
	}
	g := &generator{
		run:       binary.LittleEndian.Uint32(b[:4]),
		alertname: c.Alertname,
		incidents: c.Incidents,
		dupRatio:  c.DupRatio,
		rng:       mrand.New(mrand.NewPCG(seed, seed^0x5a17e)),
		base:      time.Now().UTC().Truncate(time.Second).Add(-time.Hour),
	}
	if c.Incidents > 0 {
		g.states = make([]int, c.Incidents)
		g.last = make([]alertState, c.Incidents)
	}
	return g
}

const recentRing = 1024

func (g *generator) next() alertState {
	if g.distinct > 0 && g.dupRatio > 0 && g.rng.Float64() < g.dupRatio {
		g.dups++
		if g.incidents > 0 {
			n := min(g.distinct, g.incidents) // incidents 0..n-1 have a state
			return g.last[g.rng.IntN(n)]
		}
		return g.recent[g.rng.IntN(len(g.recent))]
	}
	var a alertState
	if g.incidents > 0 {
		inc := g.distinct % g.incidents
		s := g.states[inc]
		g.states[inc]++
		a = alertState{
			fingerprint: fmt.Sprintf("%08x%08x", g.run, inc),
			instance:    "incident-" + strconv.Itoa(inc),
			status:      "firing",
			startsAt:    g.base.Add(time.Duration(s/2) * time.Minute),
		}
		if s%2 == 1 { // the flap: the same alert resolves, then fires again later
			a.status = "resolved"
			a.endsAt = a.startsAt.Add(30 * time.Second)
		}
		g.last[inc] = a
	} else {
		a = alertState{
			fingerprint: fmt.Sprintf("%08x%08x", g.run, g.distinct),
			instance:    "load-" + strconv.Itoa(g.distinct),
			status:      "firing",
			startsAt:    g.base,
		}
		if len(g.recent) < recentRing {
			g.recent = append(g.recent, a)
		} else {
			g.recent[g.distinct%recentRing] = a
		}
	}
	g.distinct++
	return a
}

// webhook encodes alerts as one Alertmanager v4 webhook body.
func (g *generator) webhook(alerts []alertState) ([]byte, error) {
	runLabel := fmt.Sprintf("%08x", g.run)
	msg := triggers.WebhookMessage{
		Version:           "4",
		GroupKey:          fmt.Sprintf(`{}/{severity="warning"}:{alertname=%q}`, g.alertname),
		Status:            "resolved",
		Receiver:          "salve",
		GroupLabels:       map[string]string{"alertname": g.alertname},
		CommonLabels:      map[string]string{"alertname": g.alertname, "job": "salve-load", "severity": "warning", "salve_load_run": runLabel},
		CommonAnnotations: map[string]string{},
		ExternalURL:       "http://alertmanager.example:9093",
		Alerts:            make([]triggers.WebhookAlert, 0, len(alerts)),
	}
	for _, a := range alerts {
		if a.status == "firing" {
			msg.Status = "firing"
		}
		msg.Alerts = append(msg.Alerts, triggers.WebhookAlert{
			Status: a.status,
			Labels: map[string]string{
				"alertname": g.alertname, "instance": a.instance, "job": "salve-load",
				"severity": "warning", "salve_load_run": runLabel,
			},
			Annotations: map[string]string{
				"summary":     "salve-load synthetic alert on " + a.instance,
				"description": "Generated by salve-load to measure Salve's ingest path; safe to ignore.",
			},
			StartsAt:     a.startsAt,
			EndsAt:       a.endsAt,
			GeneratorURL: "http://prometheus.example:9090/graph?g0.expr=up%3D%3D0",
			Fingerprint:  a.fingerprint,
		})
	}
	return json.Marshal(msg)
}

// ---- measurement ----

// Percentile returns the p-th percentile (0 < p <= 100) of sorted by the
// nearest-rank method; 0 for an empty slice.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = max(1, min(rank, len(sorted)))
	return sorted[rank-1]
}

// Latency summarises request latencies.
type Latency struct {
	N                  int
	P50, P90, P99, Max time.Duration
}

func summarize(lat []time.Duration) Latency {
	slices.Sort(lat)
	l := Latency{N: len(lat), P50: Percentile(lat, 50), P90: Percentile(lat, 90), P99: Percentile(lat, 99)}
	if len(lat) > 0 {
		l.Max = lat[len(lat)-1]
	}
	return l
}

func (l Latency) String() string {
	return fmt.Sprintf("p50 %s  p90 %s  p99 %s  max %s  (n=%d)", ms(l.P50), ms(l.P90), ms(l.P99), ms(l.Max), l.N)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond)) }

// ProcMem is a process's memory from /proc/PID/status.
type ProcMem struct {
	PID         int
	VmHWM       int64 // peak resident set, bytes
	VmRSS       int64 // current resident set, bytes
	Description string
}

// ReadProcMem reads VmHWM and VmRSS of pid (0 = this process).
func ReadProcMem(pid int) (ProcMem, error) {
	path := "/proc/self/status"
	if pid < 0 {
		return ProcMem{}, fmt.Errorf("read memory of pid %d: not a process ID", pid)
	}
	if pid > 0 {
		path = "/proc/" + strconv.Itoa(pid) + "/status"
	} else {
		pid = os.Getpid()
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return ProcMem{}, fmt.Errorf("read memory of pid %d: %w", pid, err)
	}
	m := ProcMem{PID: pid}
	for _, line := range strings.Split(string(b), "\n") {
		key, val, ok := strings.Cut(line, ":")
		if !ok || (key != "VmHWM" && key != "VmRSS") {
			continue
		}
		f := strings.Fields(val) // "123456 kB"
		if len(f) != 2 || f[1] != "kB" {
			return ProcMem{}, fmt.Errorf("%s: unexpected %s line %q", path, key, line)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return ProcMem{}, fmt.Errorf("%s: %s: %w", path, key, err)
		}
		if key == "VmHWM" {
			m.VmHWM = kb << 10
		} else {
			m.VmRSS = kb << 10
		}
	}
	if m.VmRSS == 0 {
		return ProcMem{}, fmt.Errorf("%s has no VmRSS (a kernel thread?)", path)
	}
	return m, nil
}

// Report is the outcome of a run.
type Report struct {
	URL        string
	Embedded   bool
	Senders    int
	PerWebhook int
	DupRatio   float64
	Incidents  int
	StoppedBy  string // "all alerts sent", "duration", "interrupted"

	AlertsSent     int // alerts in the webhooks sent (duplicates included)
	Distinct       int // distinct alert states among them
	Duplicates     int
	AlertsAccepted int // sum of "accepted" in 2xx answers
	Webhooks       int // webhooks sent
	WebhooksOK     int // 2xx answers
	// Failures counts failed webhooks by HTTP status code; "transport" is a
	// request that got no answer.
	Failures map[string]int
	Elapsed  time.Duration // first request sent to last answer received
	Latency  Latency       // every answered webhook, whatever its status
	Mem      *ProcMem
	MemErr   string

	// Embedded mode only.
	Stored *StreamCounts
	Raw    *RawReport
	// StartMem is this process before NATS started: what linking the
	// embedded servers' packages costs before any load.
	StartMem *ProcMem
	// GoHeapInuse and GoSys are the Go runtime's heap in use and memory
	// obtained from the OS at the end of the run.
	GoHeapInuse, GoSys uint64
}

// StreamCounts are the message counts of Salve's streams after a run.
// The webhook publishes nothing to AUDIT for an accepted alert (the audit
// recorder derives its record from ALERTS), so ALERTS is the count to check.
type StreamCounts struct{ Alerts uint64 }

// Failed reports whether any webhook failed.
func (r *Report) Failed() bool { return len(r.Failures) > 0 }

// AlertsPerSec is the durably acknowledged alert rate.
func (r *Report) AlertsPerSec() float64 { return perSec(r.AlertsAccepted, r.Elapsed) }

// WebhooksPerSec is the 2xx webhook rate.
func (r *Report) WebhooksPerSec() float64 { return perSec(r.WebhooksOK, r.Elapsed) }

// Lost reports, in embedded mode after a run without failures, whether the
// ALERTS stream holds fewer messages than distinct alert states were sent.
func (r *Report) Lost() bool {
	return r.Stored != nil && !r.Failed() && r.StoppedBy != "interrupted" && int(r.Stored.Alerts) != r.Distinct
}

func perSec(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

type job struct {
	body   []byte
	alerts int
}

type senderStats struct {
	lat      []time.Duration
	failures map[string]int
}

// Run posts webhooks as c describes and reports. It returns an error only
// when the run could not be made; failed webhooks are in the report.
func Run(ctx context.Context, c Config) (*Report, error) {
	c.defaults()
	if err := c.validate(); err != nil {
		return nil, err
	}
	target, err := WebhookURL(c.URL)
	if err != nil {
		return nil, err
	}
	rep := &Report{URL: target, Senders: c.Senders, PerWebhook: c.PerWebhook, DupRatio: c.DupRatio, Incidents: c.Incidents, Failures: map[string]int{}}

	// The producer stops at the deadline; requests in flight then finish,
	// so a duration-bounded run is not a failure. ctx (signals) cancels all.
	produceCtx, stopProducing := context.WithTimeout(ctx, c.Duration)
	defer stopProducing()

	tr := &http.Transport{
		Proxy:               nil, // never send load through a proxy
		MaxIdleConns:        c.Senders,
		MaxIdleConnsPerHost: c.Senders, // the default 2 would reconnect per request
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: c.RequestTimeout}

	gen := newGenerator(c)
	jobs := make(chan job, c.Senders)
	var genErr error
	go func() {
		defer close(jobs)
		batch := make([]alertState, 0, c.PerWebhook)
		for left := c.Alerts; left > 0 && produceCtx.Err() == nil; {
			n := min(left, c.PerWebhook)
			distinct, dups := gen.distinct, gen.dups
			batch = batch[:0]
			for range n {
				batch = append(batch, gen.next())
			}
			body, err := gen.webhook(batch)
			if err != nil {
				genErr = err
				return
			}
			select {
			case jobs <- job{body: body, alerts: n}:
				left -= n
			case <-produceCtx.Done():
				// This webhook is never sent: do not count its states.
				gen.distinct, gen.dups = distinct, dups
				return
			}
		}
	}()

	var sent, sentAlerts, ok, accepted, failed atomic.Int64
	stats := make([]senderStats, c.Senders)
	start := time.Now()
	var lastAnswer atomic.Int64 // unix nanos
	var wg sync.WaitGroup
	for i := range c.Senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := &stats[i]
			st.failures = map[string]int{}
			st.lat = make([]time.Duration, 0, c.Alerts/c.PerWebhook/c.Senders+16)
			for j := range jobs {
				sent.Add(1)
				sentAlerts.Add(int64(j.alerts))
				code, n, lat, err := post(ctx, client, target, c.Token, j)
				lastAnswer.Store(time.Now().UnixNano())
				switch {
				case err != nil:
					st.failures["transport"]++
					failed.Add(1)
					continue
				case code < 200 || code > 299:
					st.failures[strconv.Itoa(code)]++
					failed.Add(1)
				default:
					ok.Add(1)
					accepted.Add(int64(n))
				}
				st.lat = append(st.lat, lat)
			}
		}()
	}

	done := make(chan struct{})
	var progWG sync.WaitGroup
	if c.Progress != nil {
		progWG.Add(1)
		go func() {
			defer progWG.Done()
			t := time.NewTicker(c.ProgressEvery)
			defer t.Stop()
			var prev int64
			for {
				select {
				case <-done:
					return
				case now := <-t.C:
					a := accepted.Load()
					fmt.Fprintf(c.Progress, "[%6.1fs] alerts accepted %d (%.0f/s last interval), webhooks %d sent, %d 2xx, %d failed\n",
						now.Sub(start).Seconds(), a, float64(a-prev)/c.ProgressEvery.Seconds(), sent.Load(), ok.Load(), failed.Load())
					prev = a
				}
			}
		}()
	}
	wg.Wait()
	close(done)
	progWG.Wait()
	if genErr != nil {
		return nil, fmt.Errorf("encode webhook: %w", genErr)
	}

	if last := lastAnswer.Load(); last > 0 {
		rep.Elapsed = time.Unix(0, last).Sub(start)
	}
	var all []time.Duration
	for _, st := range stats {
		all = append(all, st.lat...)
		for k, v := range st.failures {
			rep.Failures[k] += v
		}
	}
	rep.Latency = summarize(all)
	rep.Webhooks, rep.AlertsSent = int(sent.Load()), int(sentAlerts.Load())
	rep.WebhooksOK, rep.AlertsAccepted = int(ok.Load()), int(accepted.Load())
	rep.Distinct, rep.Duplicates = gen.distinct, gen.dups
	switch {
	case ctx.Err() != nil:
		rep.StoppedBy = "interrupted"
	case rep.AlertsSent < c.Alerts:
		rep.StoppedBy = fmt.Sprintf("duration (%s) reached", c.Duration)
	default:
		rep.StoppedBy = "all alerts sent"
	}
	if c.PID != 0 {
		m, err := ReadProcMem(c.PID)
		if err != nil {
			rep.MemErr = err.Error()
		} else {
			m.Description = "target pid " + strconv.Itoa(c.PID)
			rep.Mem = &m
		}
	}
	return rep, nil
}

// post sends one webhook and returns the status code, the accepted count of
// a 2xx answer and the latency.
func post(ctx context.Context, client *http.Client, target, token string, j job) (code, accepted int, lat time.Duration, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(j.body))
	if err != nil {
		return 0, 0, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("User-Agent", "salve-load/"+Version)
	t0 := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return 0, 0, 0, err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	_ = resp.Body.Close()
	lat = time.Since(t0)
	if err != nil {
		return 0, 0, 0, err
	}
	if resp.StatusCode/100 == 2 {
		var a struct {
			Accepted *int `json:"accepted"`
		}
		if json.Unmarshal(body, &a) == nil && a.Accepted != nil {
			accepted = *a.Accepted
		} else {
			accepted = j.alerts
		}
	}
	return resp.StatusCode, accepted, lat, nil
}

// ---- embedded mode ----

// Embedded is a NATS JetStream server with Salve's streams and the real
// triggers.Ingest (store and audit = bus.Publisher) on a loopback HTTP
// server, all in this process: the ingest path of `salve dev` without
// Temporal and the trigger consumer.
type Embedded struct {
	URL   string // base URL of the HTTP server
	Token string
	JS    jetstream.JetStream

	dir string
	ns  *devnats.NATS
	nc  *nats.Conn
	hs  *http.Server
}

// StartEmbedded starts the embedded target on a temporary directory that
// Close removes. log receives the ingest handler's log; nil = discard.
func StartEmbedded(ctx context.Context, log *slog.Logger) (_ *Embedded, err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dir, err := os.MkdirTemp("", "salve-load-*")
	if err != nil {
		return nil, err
	}
	e := &Embedded{dir: dir}
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	if e.ns, err = devnats.Start(devnats.Options{StoreDir: filepath.Join(dir, "nats")}); err != nil {
		return nil, err
	}
	if e.nc, err = nats.Connect(e.ns.URL(), nats.Name("salve-load")); err != nil {
		return nil, fmt.Errorf("connect to NATS: %w", err)
	}
	if e.JS, err = jetstream.New(e.nc); err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	if err := bus.EnsureStreams(ctx, e.JS, bus.StreamOptions{}); err != nil {
		return nil, err
	}
	pub := bus.NewPublisher(e.JS)
	var tok [16]byte
	_, _ = rand.Read(tok[:])
	e.Token = fmt.Sprintf("%x", tok)
	mux := http.NewServeMux()
	mux.Handle("POST "+DefaultPath, &triggers.Ingest{Store: pub, Audit: pub, Token: e.Token, Log: log.With("component", "ingest")})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	e.URL = "http://" + ln.Addr().String()
	e.hs = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = e.hs.Serve(ln) }()
	return e, nil
}

// Close stops the HTTP server and NATS and removes the store.
func (e *Embedded) Close() {
	if e.hs != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = e.hs.Shutdown(ctx)
		cancel()
	}
	if e.nc != nil {
		e.nc.Close()
	}
	if e.ns != nil {
		e.ns.Stop()
	}
	if e.dir != "" {
		_ = os.RemoveAll(e.dir)
	}
}

// StreamCounts returns the message count of ALERTS.
func (e *Embedded) StreamCounts(ctx context.Context) (StreamCounts, error) {
	var sc StreamCounts
	for name, dst := range map[string]*uint64{bus.StreamAlerts: &sc.Alerts} {
		s, err := e.JS.Stream(ctx, name)
		if err != nil {
			return sc, fmt.Errorf("stream %s: %w", name, err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			return sc, fmt.Errorf("stream %s: %w", name, err)
		}
		*dst = info.State.Msgs
	}
	return sc, nil
}

// RawStream is the stream the raw publish floor writes to: configured like
// ALERTS, on the same server.
const RawStream = "SALVE_LOAD_RAW"

// RawReport is the outcome of RawPublish.
type RawReport struct {
	Senders int
	Msgs    int // acknowledged
	Failed  int
	Bytes   int // payload size of each message
	Elapsed time.Duration
	Latency Latency
	Errors  []string // the first few
}

// MsgsPerSec is the acknowledged publish rate.
func (r *RawReport) MsgsPerSec() float64 { return perSec(r.Msgs, r.Elapsed) }

// RawPublish is the floor ingest is compared with: senders goroutines each
// publish with js.PublishMsg (waiting for the ack, with a distinct
// Nats-Msg-Id) until n messages of data are stored or maxDur passes. It
// writes to RawStream, created with the ALERTS stream's configuration.
func RawPublish(ctx context.Context, js jetstream.JetStream, senders, n int, data []byte, maxDur time.Duration) (*RawReport, error) {
	alerts, err := js.Stream(ctx, bus.StreamAlerts)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", bus.StreamAlerts, err)
	}
	cfg := alerts.CachedInfo().Config
	cfg.Name, cfg.Subjects = RawStream, []string{"salve-load.raw.>"}
	cfg.Description = "salve-load: raw JetStream publish floor, configured like " + bus.StreamAlerts
	if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
		return nil, fmt.Errorf("create stream %s: %w", RawStream, err)
	}
	var run [4]byte
	_, _ = rand.Read(run[:])
	prefix := fmt.Sprintf("raw-%x-", run)
	dctx, cancel := context.WithTimeout(ctx, maxDur)
	defer cancel()

	var next, okN, failN atomic.Int64
	lats := make([][]time.Duration, senders)
	var errMu sync.Mutex
	var errs []string
	var wg sync.WaitGroup
	start := time.Now()
	for i := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lats[i] = make([]time.Duration, 0, n/senders+16)
			for dctx.Err() == nil {
				k := next.Add(1)
				if k > int64(n) {
					return
				}
				msg := &nats.Msg{Subject: "salve-load.raw.firing", Data: data,
					Header: nats.Header{jetstream.MsgIDHeader: []string{prefix + strconv.FormatInt(k, 10)}}}
				pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
				t0 := time.Now()
				_, err := js.PublishMsg(pctx, msg)
				lat := time.Since(t0)
				pcancel()
				if err != nil {
					failN.Add(1)
					errMu.Lock()
					if len(errs) < 5 {
						errs = append(errs, err.Error())
					}
					errMu.Unlock()
					continue
				}
				okN.Add(1)
				lats[i] = append(lats[i], lat)
			}
		}()
	}
	wg.Wait()
	r := &RawReport{Senders: senders, Msgs: int(okN.Load()), Failed: int(failN.Load()), Bytes: len(data), Elapsed: time.Since(start), Errors: errs}
	r.Latency = summarize(slices.Concat(lats...))
	return r, nil
}

// sampleAlertMessage is an ALERTS message as ingest publishes it for the
// generator's alerts: the payload size the raw floor uses.
func sampleAlertMessage(c Config) ([]byte, error) {
	g := newGenerator(c)
	body, err := g.webhook([]alertState{g.next()})
	if err != nil {
		return nil, err
	}
	_, evs, err := triggers.DecodeWebhook(body, time.Now())
	if err != nil {
		return nil, err
	}
	return json.Marshal(evs[0])
}

// RunEmbedded starts the embedded target, runs c against it (c.URL,
// c.Token and c.PID are ignored), counts what the streams stored, measures
// the raw publish floor with the same concurrency and as many messages as
// alerts were sent, and reports this process's memory.
func RunEmbedded(ctx context.Context, c Config, log *slog.Logger) (*Report, error) {
	startMem, startMemErr := ReadProcMem(0)
	e, err := StartEmbedded(ctx, log)
	if err != nil {
		return nil, err
	}
	defer e.Close()
	c.URL, c.Token, c.PID = e.URL, e.Token, 0
	rep, err := Run(ctx, c)
	if err != nil {
		return nil, err
	}
	rep.Embedded = true
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	sc, err := e.StreamCounts(sctx)
	if err != nil {
		return nil, err
	}
	rep.Stored = &sc
	if ctx.Err() == nil {
		c.defaults()
		data, err := sampleAlertMessage(c)
		if err != nil {
			return nil, err
		}
		if rep.Raw, err = RawPublish(ctx, e.JS, c.Senders, max(rep.AlertsSent, 1), data, c.Duration); err != nil {
			return nil, err
		}
	}
	if m, err := ReadProcMem(0); err != nil {
		rep.MemErr = err.Error()
	} else {
		m.Description = "this process: NATS server + ingest + load generator"
		rep.Mem = &m
	}
	if startMemErr == nil {
		rep.StartMem = &startMem
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	rep.GoHeapInuse, rep.GoSys = ms.HeapInuse, ms.Sys
	return rep, nil
}

// ---- report ----

// Print writes the human-readable report.
func (r *Report) Print(w io.Writer) {
	mode := ""
	if r.Embedded {
		mode = "  (embedded: NATS JetStream file store + triggers.Ingest in this process)"
	}
	fmt.Fprintf(w, "salve-load ingest %s\n", Version)
	fmt.Fprintf(w, "target              %s%s\n", r.URL, mode)
	incidents := "every alert a new fingerprint"
	if r.Incidents > 0 {
		incidents = fmt.Sprintf("%d incidents (flapping firing/resolved)", r.Incidents)
	}
	fmt.Fprintf(w, "load                %d senders, %d alerts/webhook, dup-ratio %.2f, %s\n", r.Senders, r.PerWebhook, r.DupRatio, incidents)
	fmt.Fprintf(w, "stopped             %s\n", r.StoppedBy)
	fmt.Fprintf(w, "alerts sent         %d (%d distinct states, %d duplicates)\n", r.AlertsSent, r.Distinct, r.Duplicates)
	fmt.Fprintf(w, "alerts accepted     %d (2xx after JetStream ack)\n", r.AlertsAccepted)
	fmt.Fprintf(w, "webhooks            %d sent, %d 2xx\n", r.Webhooks, r.WebhooksOK)
	if len(r.Failures) == 0 {
		fmt.Fprintf(w, "failed webhooks     none\n")
	} else {
		keys := make([]string, 0, len(r.Failures))
		for k := range r.Failures {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, 0, len(keys))
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s: %d", k, r.Failures[k]))
		}
		fmt.Fprintf(w, "failed webhooks     %s\n", strings.Join(parts, ", "))
	}
	fmt.Fprintf(w, "elapsed             %s\n", r.Elapsed.Round(time.Millisecond))
	fmt.Fprintf(w, "throughput          %.0f alerts/s, %.0f webhooks/s\n", r.AlertsPerSec(), r.WebhooksPerSec())
	fmt.Fprintf(w, "webhook latency     %s\n", r.Latency)
	if r.Stored != nil {
		verdict := "ok"
		switch {
		case r.Lost():
			verdict = fmt.Sprintf("MISMATCH: %d distinct alert states were accepted", r.Distinct)
		case r.Failed() || r.StoppedBy == "interrupted":
			verdict = "not checked: some webhooks failed"
		}
		fmt.Fprintf(w, "stored              ALERTS %d msgs, expected %d: %s\n", r.Stored.Alerts, r.Distinct, verdict)
	}
	if r.Raw != nil {
		fmt.Fprintf(w, "raw JetStream       %.0f msgs/s: %d senders, js.PublishMsg of %d msgs of %d B, each with Nats-Msg-Id; %d failed\n",
			r.Raw.MsgsPerSec(), r.Raw.Senders, r.Raw.Msgs, r.Raw.Bytes, r.Raw.Failed)
		fmt.Fprintf(w, "raw publish latency %s\n", r.Raw.Latency)
		for _, e := range r.Raw.Errors {
			fmt.Fprintf(w, "raw publish error   %s\n", e)
		}
		if raw := r.Raw.MsgsPerSec(); raw > 0 {
			fmt.Fprintf(w, "ratio ingest/raw    %.3f  (alerts/s ÷ raw msgs/s; each alert is 1 acknowledged publish to ALERTS, whose alert.accepted record the audit recorder derives)\n", r.AlertsPerSec()/raw)
		}
	}
	switch {
	case r.Mem != nil:
		fmt.Fprintf(w, "memory              VmHWM %.1f MiB, VmRSS %.1f MiB (%s)\n", mib(r.Mem.VmHWM), mib(r.Mem.VmRSS), r.Mem.Description)
	case r.MemErr != "":
		fmt.Fprintf(w, "memory              unknown: %s\n", r.MemErr)
	}
	if r.StartMem != nil {
		fmt.Fprintf(w, "memory at start     VmRSS %.1f MiB before NATS started (linked packages and their init)\n", mib(r.StartMem.VmRSS))
	}
	if r.GoSys > 0 {
		fmt.Fprintf(w, "go runtime          heap in use %.1f MiB, obtained from the OS %.1f MiB\n", mib(int64(r.GoHeapInuse)), mib(int64(r.GoSys)))
	}
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// ---- command line ----

const usage = `salve-load generates Alertmanager webhook load against Salve's ingest path
and prints the figures DESIGN §6 measures Salve by. It only loads loopback
targets and always stops by itself (--alerts and --duration bound a run).

Usage:
  salve-load ingest [flags]     post webhooks and report throughput and latency
  salve-load storm [flags]      run the whole pipeline under an alert storm, with the raw Temporal floor
  salve-load version            print the version

Examples:
  salve-load ingest --url http://127.0.0.1:8080 --token-file .salve/webhook-token --pid $(pgrep -n salve)
  salve-load ingest --embedded --senders 8 --alerts 20000
  salve-load ingest --url http://127.0.0.1:8080 --token T --alerts 10000 --dup-ratio 0.2 --incidents 100
  salve-load storm --alerts 10000 --incidents 100
  salve-load storm --alerts 2000 --incidents 2000

Run 'salve-load ingest --help' for the flags.
`

const ingestUsage = `Usage: salve-load ingest [flags]

Posts Alertmanager v4 webhooks to POST /v1/alertmanager from --senders
concurrent senders until --alerts alerts are sent or --duration passes,
prints a progress line every second on stderr and a report on stdout.
Exit status 1 if any webhook failed (non-2xx or no answer).

With --embedded it starts its own NATS JetStream (temporary file store) and
the real ingest handler in this process, runs the same load, checks that
the ALERTS stream holds every distinct alert state once, then
measures raw JetStream publish/s on the same server with the same
concurrency and prints the ratio ingest/raw.

Flags:
`

// Main runs salve-load with args (without the program name) and returns
// the exit status: 0 success, 1 failed webhooks or run error, 2 usage.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	top := flag.NewFlagSet("salve-load", flag.ContinueOnError)
	top.SetOutput(stderr)
	showVersion := top.Bool("version", false, "print the version and exit")
	top.Usage = func() { fmt.Fprint(stderr, usage) }
	if err := top.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *showVersion {
		printVersion(stdout)
		return 0
	}
	rest := top.Args()
	if len(rest) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch rest[0] {
	case "ingest":
		return ingestMain(ctx, rest[1:], stdout, stderr)
	case "version":
		printVersion(stdout)
		return 0
	case "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "salve-load: unknown command %q\nRun 'salve-load --help' for usage.\n", rest[0])
		return 2
	}
}

func printVersion(w io.Writer) {
	v := Version
	if bi, ok := debug.ReadBuildInfo(); ok && v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = bi.Main.Version
	}
	fmt.Fprintf(w, "salve-load %s (%s %s/%s)\n", v, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

func ingestMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("salve-load ingest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, ingestUsage)
		fs.PrintDefaults()
	}
	var c Config
	var tokenFile string
	var embedded, quiet bool
	fs.StringVar(&c.URL, "url", "http://127.0.0.1:8080", "Salve base URL or full webhook URL (loopback only)")
	fs.StringVar(&c.Token, "token", "", "webhook bearer token (default $SALVE_WEBHOOK_TOKEN)")
	fs.StringVar(&tokenFile, "token-file", "", "read the webhook token from this file (salve dev keeps it in .salve/webhook-token)")
	fs.IntVar(&c.Senders, "senders", 8, fmt.Sprintf("concurrent senders (1..%d)", MaxSenders))
	fs.IntVar(&c.Alerts, "alerts", 20000, fmt.Sprintf("alerts to send in total, duplicates included (1..%d)", MaxAlerts))
	fs.IntVar(&c.PerWebhook, "per-webhook", 1, fmt.Sprintf("alerts per webhook (1..%d)", triggers.MaxAlertsPerWebhook))
	fs.DurationVar(&c.Duration, "duration", DefaultDuration, fmt.Sprintf("stop sending after this long even if not every alert was sent (at most %s)", MaxDuration))
	fs.Float64Var(&c.DupRatio, "dup-ratio", 0, "share of alerts that repeat an already generated alert state (Alertmanager retries, HA pairs), in [0, 1)")
	fs.IntVar(&c.Incidents, "incidents", 0, "draw every alert from this many fingerprints, each flapping firing/resolved (the storm scenario); 0 = every alert is new")
	fs.StringVar(&c.Alertname, "alertname", "SalveLoad", "alertname label of the generated alerts (match it in a runbook to load the trigger path too)")
	fs.IntVar(&c.PID, "pid", 0, "report VmHWM and VmRSS of this process (the Salve under test) from /proc/PID/status")
	fs.Uint64Var(&c.Seed, "seed", 0, "random seed of the duplicate choice (0 = random); fingerprints always differ per run")
	fs.DurationVar(&c.RequestTimeout, "timeout", 30*time.Second, "timeout of one webhook request")
	fs.BoolVar(&embedded, "embedded", false, "start an embedded NATS JetStream and ingest handler, and also measure the raw JetStream publish floor")
	fs.BoolVar(&quiet, "quiet", false, "no progress lines on stderr")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "salve-load ingest: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if err := c.validateLoad(); err != nil {
		fmt.Fprintf(stderr, "salve-load ingest: %v\n", err)
		return 2
	}
	if !quiet {
		c.Progress = stderr
	}
	var rep *Report
	var err error
	if embedded {
		if c.PID != 0 {
			fmt.Fprintln(stderr, "salve-load ingest: --pid does not apply to --embedded (this process's memory is reported)")
			return 2
		}
		rep, err = RunEmbedded(ctx, c, slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	} else {
		if c.Token == "" && tokenFile != "" {
			b, rerr := os.ReadFile(tokenFile)
			if rerr != nil {
				fmt.Fprintf(stderr, "salve-load ingest: %v\n", rerr)
				return 2
			}
			c.Token = strings.TrimSpace(string(b))
		}
		if c.Token == "" {
			c.Token = os.Getenv("SALVE_WEBHOOK_TOKEN")
		}
		rep, err = Run(ctx, c)
	}
	if err != nil {
		fmt.Fprintf(stderr, "salve-load ingest: %v\n", err)
		return 1
	}
	rep.Print(stdout)
	if rep.Failed() || rep.Lost() || (rep.Raw != nil && rep.Raw.Failed > 0) {
		return 1
	}
	return 0
}
