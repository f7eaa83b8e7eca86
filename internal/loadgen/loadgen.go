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
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

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
	// Tracing turns tracing on in the embedded ingest (RunEmbedded), to
	// the exporter the OTEL_* variables name.
	Tracing bool
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
