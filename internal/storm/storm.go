// Package storm is the alert-storm benchmark (`salve-load storm`): it runs a
// whole `salve dev` in this process, sends thousands of alerts for a few
// incidents (duplicates, flaps, resolutions) through the real webhook, and
// measures what the issue asks: accepted alerts/s, runs started, the time
// from an alert to its run's first step (p50/p99), the time to drain, peak
// memory — and checks that no incident ran twice and no step acted twice.
package storm

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/salve-sre/salve/internal/app"
	"github.com/salve-sre/salve/internal/audit"
	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/internal/loadgen"
)

// Config sizes the storm.
type Config struct {
	Alerts    int // total alert notifications; default 10000
	Incidents int // distinct incidents; default 100
	Batch     int // alerts per webhook; default 10
	Senders   int // concurrent webhook senders; default 8
	Timeout   time.Duration
	Log       *slog.Logger
	// Getenv is the environment salve dev reads its tracing settings
	// from; nil = the process's (tracing.Off keeps tracing off).
	Getenv func(string) string
}

// Report is what the storm measured.
type Report struct {
	Alerts, Incidents          int
	Webhooks, Accepted         int
	SendTime                   time.Duration
	AcceptedPerSec             float64
	WebhookP50, WebhookP99     time.Duration
	RunsStarted, RunsFinished  int
	Suppressed                 int // alerts the cooldown kept from starting a second run
	Joined                     int
	RunsPerSec                 float64
	FirstStepP50, FirstStepP99 time.Duration
	Drain                      time.Duration // first alert sent to last run finished
	DuplicateActions           int           // idempotency keys the target saw more than once
	PeakRSSMiB                 float64
}

const runbook = `apiVersion: salve/v1
kind: Runbook
metadata: {name: storm, owner: bench}
spec:
  trigger: {matchers: ['alertname="Storm"'], incidentKey: '{{ .Labels.instance }}'}
  params: {target: {fromAnnotation: target, required: true, pattern: 'http://127\.0\.0\.1:[0-9]+'}}
  toil: {manualMinutes: 10}
  safety: {cooldown: 1h}
  steps:
    - {name: act, action: http.request, with: {url: '{{ .Params.target }}/act', method: POST}}
`

// Run runs the storm and returns its figures.
func Run(ctx context.Context, c Config) (*Report, error) {
	if c.Alerts <= 0 {
		c.Alerts = 10000
	}
	if c.Incidents <= 0 {
		c.Incidents = 100
	}
	if c.Batch <= 0 {
		c.Batch = 10
	}
	if c.Senders <= 0 {
		c.Senders = 8
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Minute
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()

	var mu sync.Mutex
	keys := map[string]int{}
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		keys[r.Header.Get("Idempotency-Key")]++
		mu.Unlock()
	}))
	defer target.Close()

	dir, err := os.MkdirTemp("", "salve-storm-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	rbDir := filepath.Join(dir, "runbooks")
	if err := os.MkdirAll(rbDir, 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(rbDir, "storm.yaml"), []byte(runbook), 0o600); err != nil {
		return nil, err
	}
	d, err := app.Start(ctx, app.Config{
		DataDir: filepath.Join(dir, "data"), Listen: "127.0.0.1:0", WebhookToken: "test-token-6f1c0d9e7a3b42c8a6e1f0d4b7c9e2a1", RunbooksDir: rbDir,
		RunbookReload: -1, TemporalPort: -1, NATSPort: -1, DisableUI: true, Version: "storm", Log: c.Log, Getenv: c.Getenv,
	})
	if err != nil {
		return nil, err
	}
	defer d.Close()
	if err := waitReady(ctx, d.URL); err != nil {
		return nil, err
	}

	rep := &Report{Alerts: c.Alerts, Incidents: c.Incidents}
	// The alerts: each incident fires, repeats (Alertmanager's
	// re-notifications and HA duplicates), flaps (a new occurrence) and
	// resolves, spread over the storm.
	base := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	alerts := make([]string, c.Alerts)
	for i := range alerts {
		inc := i % c.Incidents
		round := i / c.Incidents
		status, start := "firing", base
		switch {
		case round%10 == 7:
			start = base.Add(time.Minute) // a flap: a new occurrence of the incident
		case round%10 == 9:
			status = "resolved"
		}
		a := map[string]any{
			"status": status, "labels": map[string]string{"alertname": "Storm", "instance": "i-" + strconv.Itoa(inc)},
			"annotations": map[string]string{"target": target.URL}, "startsAt": start.Format(time.RFC3339),
			"fingerprint": fmt.Sprintf("%016x", inc),
		}
		if status == "resolved" {
			a["endsAt"] = start.Add(30 * time.Minute).Format(time.RFC3339)
		}
		b, _ := json.Marshal(a)
		alerts[i] = string(b)
	}
	jobs := make(chan []string)
	var lats []time.Duration
	var latMu sync.Mutex
	var accepted, webhooks atomic.Int64
	var sendErr atomic.Value
	start := time.Now()
	var wg sync.WaitGroup
	for range c.Senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for batch := range jobs {
				body := `{"version":"4","groupKey":"storm","status":"firing","receiver":"salve","alerts":[` + strings.Join(batch, ",") + `]}`
				t0 := time.Now()
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, d.URL+"/v1/alertmanager", strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer test-token-6f1c0d9e7a3b42c8a6e1f0d4b7c9e2a1")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					sendErr.Store(err)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				lat := time.Since(t0)
				if resp.StatusCode == http.StatusOK {
					accepted.Add(int64(len(batch)))
					webhooks.Add(1)
				} else {
					sendErr.Store(fmt.Errorf("webhook answered %d", resp.StatusCode))
				}
				latMu.Lock()
				lats = append(lats, lat)
				latMu.Unlock()
			}
		}()
	}
	for i := 0; i < len(alerts); i += c.Batch {
		jobs <- alerts[i:min(i+c.Batch, len(alerts))]
	}
	close(jobs)
	wg.Wait()
	rep.SendTime = time.Since(start)
	rep.Accepted, rep.Webhooks = int(accepted.Load()), int(webhooks.Load())
	rep.AcceptedPerSec = float64(rep.Accepted) / rep.SendTime.Seconds()
	sort.Slice(lats, func(i, j int) bool { return lats[i] < lats[j] })
	rep.WebhookP50, rep.WebhookP99 = pct(lats, 0.50), pct(lats, 0.99)
	if err, _ := sendErr.Load().(error); err != nil {
		return rep, fmt.Errorf("sending the storm: %w", err)
	}

	// Drain: every alert processed (each has a trigger record) and every
	// run finished.
	// The log is read incrementally: re-reading all of it every poll would
	// cost Salve more than the storm does and distort what is measured.
	var recs []audit.Record
	for {
		var after int64
		if len(recs) > 0 {
			after = recs[len(recs)-1].Seq
		}
		more, err := records(ctx, d.URL, d.AdminToken, after)
		if err != nil {
			return rep, err
		}
		recs = append(recs, more...)
		rep.RunsStarted, rep.RunsFinished, rep.Suppressed, rep.Joined = 0, 0, 0, 0
		decided := 0
		for _, r := range recs {
			switch r.Event.Action {
			case domain.ActionTriggerMatched:
				rep.RunsStarted++
				decided++
			case domain.ActionRunJoined:
				rep.Joined++
				decided++
			case domain.ActionTriggerSuppressed:
				rep.Suppressed++
				decided++
			case domain.ActionRunSignalled:
				decided++
			case domain.ActionRunFinished:
				rep.RunsFinished++
			}
		}
		if rep.RunsStarted > 0 && rep.RunsFinished == rep.RunsStarted && decided >= distinctAlerts(alerts) {
			rep.Drain = time.Since(start)
			rep.RunsPerSec = float64(rep.RunsStarted) / rep.Drain.Seconds()
			rep.FirstStepP50, rep.FirstStepP99 = firstStep(recs)
			break
		}
		select {
		case <-ctx.Done():
			return rep, fmt.Errorf("the storm did not drain in %s: %d runs started, %d finished, %d of %d alerts decided", c.Timeout, rep.RunsStarted, rep.RunsFinished, decided, distinctAlerts(alerts))
		case <-time.After(500 * time.Millisecond):
		}
	}
	mu.Lock()
	for _, n := range keys {
		if n > 1 {
			rep.DuplicateActions++
		}
	}
	mu.Unlock()
	rep.PeakRSSMiB = peakRSS()
	return rep, nil
}

// distinctAlerts counts the distinct notifications (duplicates collapse in
// JetStream by fingerprint, status and start).
func distinctAlerts(alerts []string) int {
	seen := map[string]bool{}
	for _, a := range alerts {
		var v struct {
			Status, StartsAt, Fingerprint string
		}
		_ = json.Unmarshal([]byte(a), &v)
		seen[v.Fingerprint+v.Status+v.StartsAt] = true
	}
	return len(seen)
}

// firstStep is the time from Salve accepting the alert that started a
// run to that run's first step starting.
func firstStep(recs []audit.Record) (p50, p99 time.Duration) {
	accepted := map[string]time.Time{} // alert ID -> accepted
	started := map[string]string{}     // run ID -> alert ID
	first := map[string]time.Time{}    // run ID -> first step.started
	for _, r := range recs {
		ev := r.Event
		switch ev.Action {
		case domain.ActionAlertAccepted:
			if _, ok := accepted[ev.Detail["alertId"]]; !ok {
				accepted[ev.Detail["alertId"]] = ev.Time
			}
		case domain.ActionTriggerMatched:
			started[ev.RunID] = ev.Detail["alertId"]
		case domain.ActionStepStarted:
			if t, ok := first[ev.RunID]; !ok || ev.Time.Before(t) {
				first[ev.RunID] = ev.Time
			}
		}
	}
	var ds []time.Duration
	for run, alertID := range started {
		a, ok1 := accepted[alertID]
		f, ok2 := first[run]
		if ok1 && ok2 {
			ds = append(ds, f.Sub(a))
		}
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return pct(ds, 0.5), pct(ds, 0.99)
}

// records reads the audit records after seq after.
func records(ctx context.Context, base, token string, after int64) ([]audit.Record, error) {
	var out []audit.Record
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/v1/audit?limit=10000&after=%d", base, after), nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, err
		}
		var body struct {
			Events []audit.Record `json:"events"`
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
		out = append(out, body.Events...)
		if len(body.Events) < 10000 {
			return out, nil
		}
		after = body.Events[len(body.Events)-1].Seq
	}
}

func waitReady(ctx context.Context, base string) error {
	for {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("salve never became ready: %w", ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func pct(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p)
	return sorted[i]
}

// peakRSS is this process's peak resident memory (VmHWM), in MiB; 0 when
// it cannot be read.
func peakRSS() float64 {
	m, err := loadgen.ReadProcMem(0)
	if err != nil {
		return 0
	}
	return float64(m.VmHWM) / (1 << 20)
}

// Print writes the report for people.
func (r *Report) Print(w io.Writer) {
	fmt.Fprintf(w, `storm: %d alerts for %d incidents, %d webhooks (the whole of salve dev in this process)
  ingest          %d accepted in %s: %.0f alerts/s; webhook p50 %s, p99 %s
  runs            %d started, %d finished (%.1f runs/s); %d alerts joined a running run; %d suppressed by the cooldown
  alert -> step   p50 %s, p99 %s (alert accepted to its run's first step)
  drain           %s (first alert sent to last run finished)
  duplicates      %d mutating calls repeated at the target
  peak RSS        %.0f MiB (Salve, NATS and Temporal together)
`, r.Alerts, r.Incidents, r.Webhooks, r.Accepted, r.SendTime.Round(time.Millisecond), r.AcceptedPerSec, r.WebhookP50.Round(time.Microsecond), r.WebhookP99.Round(time.Microsecond),
		r.RunsStarted, r.RunsFinished, r.RunsPerSec, r.Joined, r.Suppressed, r.FirstStepP50.Round(time.Millisecond), r.FirstStepP99.Round(time.Millisecond),
		r.Drain.Round(time.Millisecond), r.DuplicateActions, r.PeakRSSMiB)
}
