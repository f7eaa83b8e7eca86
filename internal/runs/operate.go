package runs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	taskqueuepb "go.temporal.io/api/taskqueue/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/internal/tracing"
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
//
// requestID makes a retried request (same ID) find the run it started:
// started is then false and nothing new runs.
func (r *Runs) Launch(ctx context.Context, rb *runbooks.Runbook, incidentKey string, params map[string]string, actor domain.Actor, reason, requestID string) (workflowID, runID string, started bool, err error) {
	workflowID = rb.WorkflowID(incidentKey)
	ctx, span, header, traceparent := traceStart(ctx, workflowID, rb.Name(), incidentKey)
	defer func() { tracing.Fail(span, err); span.End() }()
	in := workflows.Input{Runbook: *rb, IncidentKey: incidentKey, Params: params, Actor: actor, Reason: reason, Revision: r.startRevision(ctx)}
	markShadow(&in)
	if err := r.sign(&in); err != nil {
		return "", "", false, fmt.Errorf("sign runbook %s: %w", rb.Name(), err)
	}
	payloads, err := converter.GetDefaultDataConverter().ToPayloads(in)
	if err != nil {
		return "", "", false, fmt.Errorf("encode run input: %w", err)
	}
	resp, err := r.c.WorkflowService().StartWorkflowExecution(ctx, &workflowservice.StartWorkflowExecutionRequest{
		Namespace:                r.namespace,
		WorkflowId:               workflowID,
		WorkflowType:             &commonpb.WorkflowType{Name: workflows.WorkflowName},
		TaskQueue:                &taskqueuepb.TaskQueue{Name: r.taskQueue, Kind: enumspb.TASK_QUEUE_KIND_NORMAL},
		Input:                    payloads,
		Memo:                     runMemo(incidentKey, traceparent),
		Header:                   header,
		Identity:                 actor.Name + "@salve-api",
		RequestId:                requestID,
		WorkflowIdReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		WorkflowIdConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
	})
	var already *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &already) {
		return workflowID, already.RunId, false, fmt.Errorf("%w: a run for incident %q of runbook %s is already running (run %s): watch or cancel it, or launch with another incident key", ErrConflict, incidentKey, rb.Name(), already.RunId)
	}
	if err != nil {
		return "", "", false, fmt.Errorf("start run %s: %w", workflowID, err)
	}
	return workflowID, resp.GetRunId(), resp.GetStarted(), nil
}

// Cancel asks the latest run of workflowID to stop. The run cancels its
// current step and still runs its onFailure steps.
//
// runID "" means the latest run; a given one makes sure a request meant
// for an earlier run never stops a later run of the same incident.
func (r *Runs) Cancel(ctx context.Context, workflowID, runID, reason, identity string) (string, error) {
	desc, err := r.c.DescribeWorkflowExecution(ctx, workflowID, runID)
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

// Decide sends a person's decision to the approval a run waits for
// (runID "" = the latest run of workflowID). The run's validator answers
// at once: a refusal is ErrConflict (nothing waits), ErrForbidden or
// ErrBadRequest. The same person sending the same decision again joins
// the first request (the update ID is derived from it), so a retry never
// decides twice.
func (r *Runs) Decide(ctx context.Context, workflowID, runID string, d workflows.Decision) (workflows.DecisionAck, string, error) {
	// Bounded: without a worker the update would wait for one.
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	sum := sha256.Sum256([]byte(strings.Join([]string{workflowID, runID, d.Step, d.Actor.Name, strconv.FormatBool(d.Approve)}, "\x00")))
	h, err := r.c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		UpdateID:     "decision-" + hex.EncodeToString(sum[:12]),
		WorkflowID:   workflowID,
		RunID:        runID,
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
	var timeout *client.WorkflowUpdateServiceTimeoutOrCanceledError
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
		if _, derr := r.c.DescribeWorkflowExecution(ctx, workflowID, runID); isNotFound(derr) {
			return workflows.DecisionAck{}, "", fmt.Errorf("%w: %s", ErrNotFound, workflowID)
		}
		return workflows.DecisionAck{}, "", fmt.Errorf("%w: run %s has ended: there is nothing to approve", ErrNotRunning, workflowID)
	case errors.As(err, &timeout), errors.Is(err, context.DeadlineExceeded):
		return workflows.DecisionAck{}, "", fmt.Errorf("%w: no worker answered the decision for %s within 15s; it may still be applied when a worker picks it up: check the run (salve runs show) before deciding again", ErrNoWorker, workflowID)
	}
	return workflows.DecisionAck{}, "", fmt.Errorf("decide on run %s: %w", workflowID, err)
}

// query builds a visibility query for f.
func (f ListFilter) query() (string, error) {
	for name, v := range map[string]string{"runbook": f.Runbook, "incidentKey": f.IncidentKey} {
		if strings.IndexFunc(v, unicode.IsControl) >= 0 || len(v) > 300 {
			return "", fmt.Errorf("%w: %s must be at most 300 printable characters", ErrBadRequest, name)
		}
	}
	conds := []string{fmt.Sprintf("WorkflowType = %q", workflows.WorkflowName)}
	switch {
	case f.Runbook != "" && f.IncidentKey != "":
		// The incident's runs, and its shadow runs.
		conds = append(conds, "(WorkflowId = "+quote(domain.WorkflowID(f.Runbook, f.IncidentKey))+" OR WorkflowId = "+quote(domain.ShadowWorkflowID(f.Runbook, f.IncidentKey))+")")
	case f.Runbook != "":
		conds = append(conds, "WorkflowId STARTS_WITH "+quote(domain.WorkflowIDPrefix+f.Runbook+"/"))
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

// quote makes a string literal for Temporal's visibility query language,
// which understands only \\ and \" as escapes (not Go's %q ones).
func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
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
	if r.OpenApprovals != nil {
		open, err := r.OpenApprovals(ctx)
		if err != nil {
			return nil, fmt.Errorf("read open approvals: %w", err)
		}
		waiting := running[:0]
		for _, s := range running {
			if open[s.WorkflowID+"/"+s.RunID] {
				waiting = append(waiting, s)
			}
		}
		running = waiting
	}
	var (
		mu  sync.Mutex
		out = []PendingApproval{}
		wg  sync.WaitGroup
		sem = make(chan struct{}, 8)
	)
	qctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	unanswered := 0
	for _, s := range running {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			st, err := r.status(qctx, s.WorkflowID, s.RunID)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				unanswered++
				return
			}
			if st.Approval == nil {
				return
			}
			out = append(out, PendingApproval{
				WorkflowID: s.WorkflowID, RunID: s.RunID, Runbook: s.Runbook, IncidentKey: s.IncidentKey,
				Step: st.Approval.Step, RequestedAt: st.Approval.RequestedAt, Deadline: st.Approval.Deadline,
				OnTimeout: st.Approval.OnTimeout, LaunchedBy: st.LaunchedBy,
			})
		}()
	}
	wg.Wait()
	if unanswered > 0 {
		// Never claim that nothing waits when some runs could not say.
		return out, fmt.Errorf("%w: %d of %d running runs did not answer (is a worker running?)", ErrNoWorker, unanswered, len(running))
	}
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
