package storm

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/salve-sre/salve/internal/devstack"
)

// Floor is the raw floor of the embedded Temporal that salve dev runs:
// one-step workflows started and completed per second with nothing of
// Salve's around them (no NATS, trigger, safety checks or audit), on the
// same SQLite settings. Salve's runs/s is read against it.
type Floor struct {
	Workflows   int
	Concurrency int
	Took        time.Duration
	PerSec      float64
	StartsPerS  float64
}

const (
	floorWorkflow = "salve-floor"
	floorActivity = "salve-floor.act"
)

func floorWF(ctx workflow.Context) error {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: time.Minute})
	return workflow.ExecuteActivity(ctx, floorActivity).Get(ctx, nil)
}

func floorAct(context.Context) error { return nil }

// MeasureFloor starts n one-step workflows from `concurrency` starters on a
// fresh embedded Temporal (SQLite file in a temp dir) and times them from
// the first start to the last completion.
func MeasureFloor(ctx context.Context, n, concurrency int) (*Floor, error) {
	dir, err := os.MkdirTemp("", "salve-floor-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	ts, err := devstack.StartTemporal(ctx, devstack.TemporalOptions{DBPath: filepath.Join(dir, "temporal.db")})
	if err != nil {
		return nil, err
	}
	defer ts.Stop()
	return MeasureFloorAt(ctx, ts.HostPort(), ts.Namespace(), "floor-", n, concurrency)
}

// MeasureFloorAt measures the same floor on a running Temporal server
// (e.g. one on PostgreSQL): workflow IDs start with idPrefix, the task
// queue is the prefix too, so it can run more than once on one server.
func MeasureFloorAt(ctx context.Context, hostPort, namespace, idPrefix string, n, concurrency int) (*Floor, error) {
	c, err := client.Dial(client.Options{HostPort: hostPort, Namespace: namespace,
		Logger: sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler))})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	w := worker.New(c, idPrefix, worker.Options{})
	w.RegisterWorkflowWithOptions(floorWF, workflow.RegisterOptions{Name: floorWorkflow})
	w.RegisterActivityWithOptions(floorAct, activity.RegisterOptions{Name: floorActivity})
	if err := w.Start(); err != nil {
		return nil, err
	}
	defer w.Stop()

	jobs := make(chan int)
	runs := make(chan client.WorkflowRun, n)
	var startErr error
	var once sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	for range concurrency {
		wg.Go(func() {
			for i := range jobs {
				r, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: idPrefix + strconv.Itoa(i), TaskQueue: idPrefix}, floorWorkflow)
				if err != nil {
					once.Do(func() { startErr = err })
					continue
				}
				runs <- r
			}
		})
	}
	for i := range n {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	started := time.Since(start)
	close(runs)
	if startErr != nil {
		return nil, fmt.Errorf("floor: start workflow: %w", startErr)
	}
	for r := range runs {
		if err := r.Get(ctx, nil); err != nil {
			return nil, fmt.Errorf("floor: workflow %s: %w", r.GetID(), err)
		}
	}
	took := time.Since(start)
	return &Floor{Workflows: n, Concurrency: concurrency, Took: took,
		PerSec: float64(n) / took.Seconds(), StartsPerS: float64(n) / started.Seconds()}, nil
}
