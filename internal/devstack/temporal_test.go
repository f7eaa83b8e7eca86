package devstack

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

const testTaskQueue = "devstack-temporal-test"

// approvalWorkflow records an "approve" Update, then waits for the "go"
// signal and reports both, so the result shows state survived a restart.
func approvalWorkflow(ctx workflow.Context, name string) (string, error) {
	approvedBy := ""
	if err := workflow.SetUpdateHandler(ctx, "approve", func(ctx workflow.Context, who string) (string, error) {
		approvedBy = who
		return "approved by " + who, nil
	}); err != nil {
		return "", err
	}
	var word string
	workflow.GetSignalChannel(ctx, "go").Receive(ctx, &word)
	return fmt.Sprintf("%s: %s (approved by %s)", name, word, approvedBy), nil
}

// testLogger goes to stderr, not t.Output: server goroutines may still log
// while a test finishes, which t's writer does not allow.
func testLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func startTestTemporal(t *testing.T, ctx context.Context, opts TemporalOptions) *Temporal {
	t.Helper()
	began := time.Now()
	srv, err := StartTemporal(ctx, opts)
	require.NoError(t, err)
	t.Logf("temporal started on %s in %s (db %q)", srv.HostPort(), time.Since(began).Round(time.Millisecond), opts.DBPath)
	t.Cleanup(func() { _ = srv.Stop() })
	return srv
}

// connect dials srv and runs a worker for approvalWorkflow until cleanup.
func connect(t *testing.T, srv *Temporal) (client.Client, worker.Worker) {
	t.Helper()
	c, err := client.Dial(client.Options{
		HostPort:  srv.HostPort(),
		Namespace: srv.Namespace(),
		Logger:    sdklog.NewStructuredLogger(testLogger()),
	})
	require.NoError(t, err)
	w := worker.New(c, testTaskQueue, worker.Options{})
	w.RegisterWorkflow(approvalWorkflow)
	require.NoError(t, w.Start())
	t.Cleanup(func() { w.Stop(); c.Close() })
	return c, w
}

func TestTemporalDurableAcrossRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dbPath := filepath.Join(t.TempDir(), "temporal.db")
	workflowID := "durable-" + time.Now().Format("150405.000000")

	// First server: start the workflow and get an Update accepted by it, which
	// also proves a worker ran it here before the restart.
	srv1 := startTestTemporal(t, ctx, TemporalOptions{DBPath: dbPath, Logger: testLogger()})
	require.Equal(t, "default", srv1.Namespace())
	c1, w1 := connect(t, srv1)
	run, err := c1.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: workflowID, TaskQueue: testTaskQueue}, approvalWorkflow, "deploy")
	require.NoError(t, err)
	upd, err := c1.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID:   workflowID,
		UpdateName:   "approve",
		Args:         []any{"alice"},
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	require.NoError(t, err)
	var updResult string
	require.NoError(t, upd.Get(ctx, &updResult))
	require.Equal(t, "approved by alice", updResult)

	w1.Stop()
	c1.Close()
	stopBegan := time.Now()
	require.NoError(t, srv1.Stop())
	require.NoError(t, srv1.Stop(), "second Stop must be a no-op")
	t.Logf("temporal stopped in %s", time.Since(stopBegan).Round(time.Millisecond))

	// Second server on the same file: the workflow is still waiting.
	srv2 := startTestTemporal(t, ctx, TemporalOptions{DBPath: dbPath, Logger: testLogger()})
	c2, _ := connect(t, srv2)
	require.NoError(t, c2.SignalWorkflow(ctx, workflowID, run.GetRunID(), "go", "shipped"))
	var result string
	require.NoError(t, c2.GetWorkflow(ctx, workflowID, run.GetRunID()).Get(ctx, &result))
	require.Equal(t, "deploy: shipped (approved by alice)", result)

	// Visibility (SQLite) lists it; it is updated asynchronously, so poll.
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		resp, err := c2.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Namespace: srv2.Namespace(),
			Query:     fmt.Sprintf("WorkflowId = '%s'", workflowID),
		})
		require.NoError(ct, err)
		require.Len(ct, resp.GetExecutions(), 1)
		require.Equal(ct, enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED, resp.GetExecutions()[0].GetStatus())
	}, 30*time.Second, 100*time.Millisecond)
}

func TestTemporalInMemoryCustomNamespace(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv := startTestTemporal(t, ctx, TemporalOptions{Namespace: "salve-test"})
	require.Equal(t, "salve-test", srv.Namespace())
	c, _ := connect(t, srv)
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{TaskQueue: testTaskQueue}, approvalWorkflow, "mem")
	require.NoError(t, err)
	require.NoError(t, c.SignalWorkflow(ctx, run.GetID(), run.GetRunID(), "go", "done"))
	var result string
	require.NoError(t, run.Get(ctx, &result))
	require.Equal(t, "mem: done (approved by )", result)
}

// A taken frontend port must come back as an error: Temporal reports it via
// logger.Fatal, which would otherwise exit or crash the process.
func TestTemporalPortInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err = StartTemporal(ctx, TemporalOptions{Port: l.Addr().(*net.TCPAddr).Port})
	require.ErrorContains(t, err, "address already in use")
}
