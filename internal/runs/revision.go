package runs

import (
	"context"
	"sync"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	taskqueuepb "go.temporal.io/api/taskqueue/v1"
	"go.temporal.io/api/workflowservice/v1"

	"github.com/salve-sre/salve/workflows"
)

// revisionTTL is how long the revision read from the pollers is reused;
// fallbackTTL how long the oldest revision is, when none could be read
// (at most one lookup at a time: starts wait for it, not for one each).
const (
	revisionTTL = 15 * time.Second
	fallbackTTL = 2 * time.Second
)

// revisionCache remembers the revision new runs start with.
type revisionCache struct {
	mu   sync.Mutex
	rev  int
	read time.Time
}

// startRevision is the workflow revision a new run starts with: the newest
// every worker polling the task queue runs (workflows.StartRevision), so a
// rolling upgrade never hands a run to a worker that would run it in an
// older shape. Read from Temporal at most every revisionTTL; when it
// cannot be read, or no worker polls, the oldest revision still started,
// which every worker runs.
func (r *Runs) startRevision(ctx context.Context) int {
	r.revisions.mu.Lock()
	defer r.revisions.mu.Unlock()
	if r.revisions.rev != 0 && time.Since(r.revisions.read) < revisionTTL {
		return r.revisions.rev
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := r.c.WorkflowService().DescribeTaskQueue(ctx, &workflowservice.DescribeTaskQueueRequest{
		Namespace:     r.namespace,
		TaskQueue:     &taskqueuepb.TaskQueue{Name: r.taskQueue, Kind: enumspb.TASK_QUEUE_KIND_NORMAL},
		TaskQueueType: enumspb.TASK_QUEUE_TYPE_WORKFLOW,
	})
	if err != nil || len(resp.GetPollers()) == 0 {
		// Kept briefly only: workers may be starting.
		r.revisions.rev, r.revisions.read = workflows.OldestRevision, time.Now().Add(fallbackTTL-revisionTTL)
		return r.revisions.rev
	}
	ids := make([]string, 0, len(resp.GetPollers()))
	for _, p := range resp.GetPollers() {
		ids = append(ids, p.GetIdentity())
	}
	r.revisions.rev, r.revisions.read = workflows.StartRevision(ids), time.Now()
	return r.revisions.rev
}
