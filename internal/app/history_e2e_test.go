package app_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/internal/runs"
	"github.com/salve-sre/salve/triggers"
)

const manyRunbook = `apiVersion: salve/v1
kind: Runbook
metadata: {name: many}
spec:
  trigger:
    matchers: ['alertname="Many"']
    incidentKey: '{{ .Labels.service }}'
  params:
    url: {fromAnnotation: target, required: true, pattern: 'http://127\.0\.0\.1:[0-9]+'}
  steps:
    - {name: hold, action: http.request, with: {url: '{{ .Params.url }}/hold', method: POST}, timeout: 10m}
    - {name: done, action: http.request, with: {url: '{{ .Params.url }}/done', method: POST}}
`

// One incident keeps firing new alerts while its run is busy: 100,000 of
// them, the first thousands one per webhook (each its own signal if
// nothing bounded them), the rest in large groups. The run's Temporal
// history must stay bounded (past its limit Temporal would terminate the
// run mid-step), the run must finish normally, and every alert must still
// be recorded as a join.
func TestRunJoinedBy100000AlertsCompletes(t *testing.T) {
	release := make(chan struct{})
	var hits sync.Map
	tg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := hits.LoadOrStore(r.URL.Path, new(int64))
		*(n.(*int64))++ // one run calls each path once
		if r.URL.Path == "/hold" {
			<-release
		}
		_, _ = io.WriteString(w, `{"ok":true}`)
	}))
	defer tg.Close()
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	dir := t.TempDir()
	writeRunbook(t, dir, "many", manyRunbook)
	d := startDev(t, dir)

	t0 := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339Nano)
	alert := func(i int) string {
		return fmt.Sprintf(`{"status":"firing","labels":{"alertname":"Many","service":"checkout","pod":"p%06d"},"annotations":{"target":%q},"startsAt":%q,"fingerprint":"%016x"}`, i, tg.URL, t0, 0x6d000000+i)
	}
	send := func(alerts []string) {
		body := `{"version":"4","groupKey":"g","status":"firing","receiver":"salve","alerts":[` + strings.Join(alerts, ",") + `]}`
		require.Equal(t, http.StatusOK, postWebhook(t, d.URL, d.WebhookToken, body))
	}
	const total, trickle, group = 100_000, 3_000, 500
	send([]string{alert(0)})
	const wf = "salve/many/checkout"
	waitRunStatus(t, d.URL, wf, runs.StatusRunning, time.Minute)
	require.Eventually(t, func() bool { _, ok := hits.Load("/hold"); return ok }, time.Minute, 20*time.Millisecond)

	jobs := make(chan []string)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for a := range jobs {
				send(a)
			}
		})
	}
	sent := time.Now()
	for i := 1; i < trickle; i++ {
		jobs <- []string{alert(i)}
	}
	for i := trickle; i < total; i += group {
		var a []string
		for j := i; j < min(i+group, total); j++ {
			a = append(a, alert(j))
		}
		jobs <- a
	}
	close(jobs)
	wg.Wait()
	t.Logf("sent %d alerts in %s", total, time.Since(sent).Round(time.Millisecond))

	joined := `salve_trigger_decisions_total{decision="joined",runbook="many"}`
	require.Eventually(t, func() bool { return metricLine(t, d.URL, joined) == strconv.Itoa(total-1) },
		5*time.Minute, 500*time.Millisecond, "every repeat is recorded as a join")
	t.Logf("all %d repeats decided after %s", total-1, time.Since(sent).Round(time.Millisecond))

	close(release)
	run := waitRunStatus(t, d.URL, wf, runs.StatusSucceeded, 2*time.Minute)
	require.NotNil(t, run.Run)
	require.Equal(t, "succeeded", run.Run.State)
	require.LessOrEqual(t, run.Run.AlertsSeen, triggers.MaxToldPerRun, "the run is told of a bounded number of alerts")
	require.Len(t, listRuns(t, d.URL), 1, "one run for the incident")
	v, _ := hits.Load("/done")
	require.NotNil(t, v, "the run's last step ran")

	h := fetchHistory(t, d.TemporalAddr, wf, run.RunID)
	t.Logf("run history: %d events for %d alerts (Temporal warns at 10,240 and terminates at 51,200)", len(h.Events), total)
	require.Less(t, len(h.Events), 10_240, "the run's history stays bounded")
}
