package runs

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	taskqueuepb "go.temporal.io/api/taskqueue/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/runbooks"
	"github.com/salve-sre/salve/workflows"
)

// Errors of operations on runs; the API maps each to one HTTP status.
var (
	ErrConflict   = errors.New("conflict")      // 409: e.g. a run for the incident is already running
	ErrNotRunning = errors.New("not running")   // 409: the run has finished
	ErrForbidden  = errors.New("forbidden")     // 403: the runbook's policy refuses this person
	ErrBadRequest = errors.New("bad request")   // 400
	ErrNoWorker   = errors.New("no answer yet") // 503: no worker picked the request up in time
)

// Launch starts a manual run of rb for incidentKey. Unlike an alert, a
// launch never joins a running run: a run for the same incident already
// in progress is an ErrConflict naming it.
func (r *Runs) Launch(ctx context.Context, rb *runbooks.Runbook, incidentKey string, params map[string]string, actor domain.Actor, reason, requestID string) (workflowID, runID string, err error) {
	workflowID = domain.WorkflowID(rb.Name(), incidentKey)
	in := workflows.Input{Runbook: *rb, IncidentKey: incidentKey, Params: params, Actor: actor, Reason: reason}
	payloads, err := converter.GetDefaultDataConverter().ToPayloads(in)
	if err != nil {
		return "", "", fmt.Errorf("encode run input: %w", err)
	}
	resp, err := r.c.WorkflowService().StartWorkflowExecution(ctx, &workflowservice.StartWorkflowExecutionRequest{
		Namespace:                r.namespace,
		WorkflowId:               workflowID,
		WorkflowType:             &commonpb.WorkflowType{Name: workflows.WorkflowName},
		TaskQueue:                &taskqueuepb.TaskQueue{Name: r.taskQueue, Kind: enumspb.TASK_QUEUE_KIND_NORMAL},
		Input:                    payloads,
		Identity:                 actor.Name + "@salve-api",
		RequestId:                requestID,
		WorkflowIdReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		WorkflowIdConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
	})
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &started) {
		return workflowID, started.RunId, fmt.Errorf("%w: a run for incident %q of runbook %s is already running (run %s): watch or cancel it, or launch with another incident key", ErrConflict, incidentKey, rb.Name(), started.RunId)
	}
	if err != nil {
		return "", "", fmt.Errorf("start run %s: %w", workflowID, err)
	}
	return workflowID, resp.GetRunId(), nil
}

// Cancel asks the latest run of workflowID to stop. The run cancels its
// current step and still runs its onFailure steps.
func (r *Runs) Cancel(ctx context.Context, workflowID, reason, identity string) (runID string, err error) {
	desc, err := r.c.DescribeWorkflowExecution(ctx, workflowID, "")
	if isNotFound(err) {
		return "", fmt.Errorf("%w: %s", ErrNotFound, workflowID)
	}
	if err != nil {
		return "", fmt.Errorf("describe run %s: %w", workflowID, err)
	}
	info := desc.GetWorkflowExecutionInfo()
	runID = info.GetExecution().GetRunId()
	if info.GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		return runID, fmt.Errorf("%w: run %s already ended (%s)", ErrNotRunning, workflowID, status(info.GetStatus()))
	}
	_, err = r.c.WorkflowService().RequestCancelWorkflowExecution(ctx, &workflowservice.RequestCancelWorkflowExecutionRequest{
		Namespace:         r.namespace,
		WorkflowExecution: &commonpb.WorkflowExecution{WorkflowId: workflowID, RunId: runID},
		Identity:          identity,
		Reason:            reason,
	})
	if isNotFound(err) {
		return runID, fmt.Errorf("%w: run %s already ended", ErrNotRunning, workflowID)
	}
	if err != nil {
		return runID, fmt.Errorf("cancel run %s: %w", workflowID, err)
	}
	return runID, nil
}

// Decide sends a person's decision to the approval the latest run of
// workflowID waits for. The run's validator answers at once: a refusal is
// ErrNotRunning/ErrConflict (nothing waits), ErrForbidden or ErrBadRequest.
func (r *Runs) Decide(ctx context.Context, workflowID string, d workflows.Decision) (workflows.DecisionAck, string, error) {
	h, err := r.c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID:   workflowID,
		UpdateName:   workflows.UpdateApproval,
		Args:         []any{d},
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err == nil {
		var ack workflows.DecisionAck
		if err = h.Get(ctx, &ack); err == nil {
			return ack, h.RunID(), nil
		}
	}
	var appErr *temporal.ApplicationError
	var nf *serviceerror.NotFound
	switch {
	case errors.As(err, &appErr):
		switch appErr.Type() {
		case workflows.ErrTypeForbidden:
			return workflows.DecisionAck{}, "", fmt.Errorf("%w: %s", ErrForbidden, appErr.Message())
		case workflows.ErrTypeBadRequest:
			return workflows.DecisionAck{}, "", fmt.Errorf("%w: %s", ErrBadRequest, appErr.Message())
		case workflows.ErrTypeNotWaiting:
			return workflows.DecisionAck{}, "", fmt.Errorf("%w: %s", ErrConflict, appErr.Message())
		}
	case errors.As(err, &nf):
		// An unknown workflow, or one that has closed.
		if _, derr := r.c.DescribeWorkflowExecution(ctx, workflowID, ""); isNotFound(derr) {
			return workflows.DecisionAck{}, "", fmt.Errorf("%w: %s", ErrNotFound, workflowID)
		}
		return workflows.DecisionAck{}, "", fmt.Errorf("%w: run %s has ended: there is nothing to approve", ErrNotRunning, workflowID)
	case errors.Is(err, context.DeadlineExceeded):
		return workflows.DecisionAck{}, "", fmt.Errorf("%w: no worker answered the decision for %s in time; it was not recorded, try again", ErrNoWorker, workflowID)
	}
	return workflows.DecisionAck{}, "", fmt.Errorf("decide on run %s: %w", workflowID, err)
}

// query builds a visibility query for f.
func (f ListFilter) query() (string, error) {
	conds := []string{fmt.Sprintf("WorkflowType = %q", workflows.WorkflowName)}
	switch {
	case f.Runbook != "" && f.IncidentKey != "":
		conds = append(conds, fmt.Sprintf("WorkflowId = %q", domain.WorkflowID(f.Runbook, f.IncidentKey)))
	case f.Runbook != "":
		conds = append(conds, fmt.Sprintf("WorkflowId STARTS_WITH %q", domain.WorkflowID(f.Runbook, "")))
	case f.IncidentKey != "":
		return "", fmt.Errorf("%w: incidentKey needs runbook too (an incident key is per runbook)", ErrBadRequest)
	}
	if f.Status != "" {
		s, ok := temporalStatus[f.Status]
		if !ok {
			return "", fmt.Errorf("%w: status %q: want one of %s", ErrBadRequest, f.Status, strings.Join(statusNames(), ", "))
		}
		conds = append(conds, fmt.Sprintf("ExecutionStatus = %q", s))
	}
	if !f.Since.IsZero() {
		conds = append(conds, fmt.Sprintf("StartTime >= %q", f.Since.UTC().Format(time.RFC3339Nano)))
	}
	return strings.Join(conds, " AND "), nil
}

var temporalStatus = map[string]string{
	StatusRunning:    "Running",
	StatusSucceeded:  "Completed",
	StatusFailed:     "Failed",
	StatusCancelled:  "Canceled",
	StatusTerminated: "Terminated",
	StatusTimedOut:   "TimedOut",
}

func statusNames() []string {
	out := make([]string, 0, len(temporalStatus))
	for k := range temporalStatus {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// PendingApprovals lists the runs waiting for a person. It asks each
// running run for its status; the number of running runs is bounded by
// the safety limits, so this stays cheap.
func (r *Runs) PendingApprovals(ctx context.Context) ([]PendingApproval, error) {
	var running []Summary
	var token []byte
	for {
		page, next, err := r.ListFiltered(ctx, ListFilter{Status: StatusRunning}, 1000, token)
		if err != nil {
			return nil, err
		}
		running = append(running, page...)
		if len(next) == 0 || len(running) >= 10000 {
			break
		}
		token = next
	}
	var (
		mu  sync.Mutex
		out = []PendingApproval{}
		wg  sync.WaitGroup
		sem = make(chan struct{}, 8)
	)
	for _, s := range running {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			st, err := r.status(ctx, s.WorkflowID, s.RunID)
			if err != nil || st.Approval == nil {
				return // a run without a worker to answer is not listed
			}
			mu.Lock()
			out = append(out, PendingApproval{
				WorkflowID: s.WorkflowID, RunID: s.RunID, Runbook: s.Runbook, IncidentKey: s.IncidentKey,
				Step: st.Approval.Step, RequestedAt: st.Approval.RequestedAt, Deadline: st.Approval.Deadline,
				OnTimeout: st.Approval.OnTimeout, LaunchedBy: st.LaunchedBy,
			})
			mu.Unlock()
		}()
	}
	wg.Wait()
	sort.Slice(out, func(i, j int) bool { return out[i].RequestedAt.Before(out[j].RequestedAt) })
	return out, nil
}

func (r *Runs) status(ctx context.Context, workflowID, runID string) (workflows.Status, error) {
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var st workflows.Status
	val, err := r.c.QueryWorkflow(qctx, workflowID, runID, workflows.QueryStatus)
	if err != nil {
		return st, err
	}
	return st, val.Get(&st)
}

// Stats summarises the latest runs (at most limit) of a runbook.
func (r *Runs) Stats(ctx context.Context, runbook string, limit int) ([]Summary, RunbookStats, error) {
	list, _, err := r.ListFiltered(ctx, ListFilter{Runbook: runbook}, limit, nil)
	if err != nil {
		return nil, RunbookStats{}, err
	}
	var st RunbookStats
	for _, s := range list {
		st.Runs++
		switch s.Status {
		case StatusSucceeded:
			st.Succeeded++
		case StatusFailed, StatusTimedOut, StatusTerminated:
			st.Failed++
		case StatusRunning:
			st.Running++
		}
	}
	if n := st.Succeeded + st.Failed; n > 0 {
		rate := float64(st.Succeeded) / float64(n)
		st.SuccessRate = &rate
	}
	return list, st, nil
}
