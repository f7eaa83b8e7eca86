package app_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"

	"github.com/salve-sre/salve/activities"
	"github.com/salve-sre/salve/internal/bus"
	"github.com/salve-sre/salve/internal/devstack"
	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/internal/runs"
	"github.com/salve-sre/salve/internal/snapshot"
	"github.com/salve-sre/salve/internal/testenv"
	"github.com/salve-sre/salve/runbooks"
	"github.com/salve-sre/salve/triggers"
	"github.com/salve-sre/salve/workers"
)

// startTemporal starts an embedded Temporal server; with an empty DBPath
// it is in memory. The test may Stop it early (an outage); Stop is safe
// to call twice.
func startTemporal(t *testing.T, opts devstack.TemporalOptions) *devstack.Temporal {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ts, err := devstack.StartTemporal(ctx, opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = ts.Stop() })
	return ts
}

func temporalClient(t *testing.T, ts *devstack.Temporal) client.Client {
	t.Helper()
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	c, err := client.Dial(client.Options{HostPort: ts.HostPort(), Namespace: ts.Namespace(), Logger: sdklog.NewStructuredLogger(log)})
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c
}

// countingStarter counts start attempts, successful or not.
type countingStarter struct {
	triggers.Starter
	attempts atomic.Int32
}

func (c *countingStarter) StartOrJoin(ctx context.Context, req triggers.StartRequest) (triggers.StartResult, error) {
	c.attempts.Add(1)
	return c.Starter.StartOrJoin(ctx, req)
}

// Temporal is down when an alert arrives: the webhook is still accepted
// (JetStream stored it), the trigger keeps the message and retries, and the
// run starts, once, when Temporal is back.
func TestTemporalOutageRedeliversUntilTheRunStarts(t *testing.T) {
	tg := newTarget(t)
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	_, js := testenv.NATS(t)
	pub := bus.NewPublisher(js)

	tOpts := devstack.TemporalOptions{DBPath: filepath.Join(t.TempDir(), "temporal.db"), Port: testenv.FreePort(t)}
	ts := startTemporal(t, tOpts)
	tc := temporalClient(t, ts)

	reg, err := activities.NewRegistry()
	require.NoError(t, err)
	rb, err := runbooks.Parse("outage.yaml", []byte(amRunbook), reg)
	require.NoError(t, err)
	set, err := runbooks.NewSet(rb)
	require.NoError(t, err)
	key := snapshot.Random()
	acts := activities.New(reg, pub, log)
	acts.VerifySnapshot = key.Verify
	w, err := workers.New(tc, runs.DefaultTaskQueue, reg, acts, nil)
	require.NoError(t, err)
	require.NoError(t, w.Start())
	t.Cleanup(w.Stop)

	rs := runs.New(tc, ts.Namespace(), runs.DefaultTaskQueue, "test")
	rs.Signer = key
	starter := &countingStarter{Starter: rs}
	ctx, cancel := context.WithCancel(context.Background())
	consumerDone := make(chan struct{})
	go func() {
		defer close(consumerDone)
		c := &triggers.Consumer{JS: js, Audit: pub, Log: log, MaxBackoff: 500 * time.Millisecond,
			Trigger: &triggers.Trigger{Runbooks: triggers.StaticRunbooks{Set: set}, Starter: starter, Audit: pub, Log: log}}
		_ = c.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-consumerDone })

	ingest := httptest.NewServer(&triggers.Ingest{Store: pub, Audit: pub, Token: "tok", Log: log})
	t.Cleanup(ingest.Close)

	require.NoError(t, ts.Stop())
	body := webhook("firing", "SalveE2E", "db-9", "beef", time.Now().Add(-time.Minute), map[string]string{"target": tg.URL})
	req, err := http.NewRequest(http.MethodPost, ingest.URL, stringsReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer tok")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "JetStream is up, so the alert is accepted")

	// The trigger tries, fails and keeps the message.
	require.Eventually(t, func() bool { return starter.attempts.Load() >= 2 }, 30*time.Second, 50*time.Millisecond)
	require.Zero(t, tg.count("/fix"))

	ts2 := startTemporal(t, tOpts) // same DB file, same port
	require.Eventually(t, func() bool { return tg.count("/fix") == 1 }, 90*time.Second, 100*time.Millisecond, "run never acted after Temporal came back")

	wfID := domain.WorkflowID("am-e2e", fingerprintOf("beef"))
	require.Eventually(t, func() bool {
		d, err := tc.DescribeWorkflowExecution(context.Background(), wfID, "")
		return err == nil && d.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED
	}, 30*time.Second, 100*time.Millisecond)
	list, _, err := rs.List(context.Background(), 100, nil)
	require.NoError(t, err)
	require.Len(t, list, 1, "exactly one run")
	require.Equal(t, 1, tg.count("/fix"))
	_ = ts2
}
