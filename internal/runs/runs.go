// Package runs starts runbook runs in Temporal and reads them back. It
// implements triggers.Starter and the API's run reader.
package runs

import (
	"context"
	"errors"
	"fmt"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	taskqueuepb "go.temporal.io/api/taskqueue/v1"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/internal/tracing"
	"github.com/salve-sre/salve/runbooks"
	"github.com/salve-sre/salve/triggers"
	"github.com/salve-sre/salve/workflows"
)

// DefaultTaskQueue is where workers poll for runbook runs.
const DefaultTaskQueue = "salve-runbooks"

// Runs talks to Temporal on behalf of triggers and the API.
type Runs struct {
	c         client.Client
	namespace string
	taskQueue string
	identity  string
	// Signer signs every runbook snapshot a run is started with
	// (internal/snapshot); workers refuse unsigned ones.
	Signer Signer
	// OpenApprovals, when set, names the runs that may wait for an
	// approval (workflowID + "/" + runID), read from the audit log in
	// one query: PendingApprovals then asks only those runs, not every
	// running one. Nil: every running run is asked.
	OpenApprovals func(ctx context.Context) (map[string]bool, error)

	revisions revisionCache
}

// Signer signs runbook snapshots.
type Signer interface {
	Sign(rb runbooks.Runbook) (string, error)
}

// sign signs in's snapshot; without a signer it fails, since no worker
// would run the snapshot.
func (r *Runs) sign(in *workflows.Input) error {
	if r.Signer == nil {
		return errors.New("no runbook signing key: runs cannot be started")
	}
	sig, err := r.Signer.Sign(in.Runbook)
	if err != nil {
		return err
	}
	in.RunbookSignature = sig
	return nil
}

// New returns a Runs for a namespace and task queue.
func New(c client.Client, namespace, taskQueue, identity string) *Runs {
	if taskQueue == "" {
		taskQueue = DefaultTaskQueue
	}
	return &Runs{c: c, namespace: namespace, taskQueue: taskQueue, identity: identity}
}

// StartOrJoin starts the incident's run or joins the running one.
//
// It calls the StartWorkflowExecution RPC directly because two options it
// needs are not exposed by the SDK's ExecuteWorkflow: a caller-chosen
// request ID (so a redelivered alert maps to the run it already started,
// even after that run closed) and OnConflictOptions.AttachRequestId (so
// the same holds for an alert that joined a running run).
func (r *Runs) StartOrJoin(ctx context.Context, req triggers.StartRequest) (_ triggers.StartResult, err error) {
	ctx, span, header, traceparent := traceStart(ctx, req.WorkflowID, req.Runbook.Name(), req.IncidentKey)
	defer func() { tracing.Fail(span, err); span.End() }()
	alert := req.Alert
	rb := *req.Runbook
	if req.ApprovalReason != "" && !rb.Spec.Safety.DryRun() {
		// The envelope asks for a person's approval this runbook does not
		// itself require: the run carries that requirement in its input.
		a := runbooks.Approval{Required: true}
		if cur := rb.Spec.Safety.Approval; cur != nil {
			a.Timeout, a.OnTimeout = cur.Timeout, cur.OnTimeout
		}
		rb.Spec.Safety.Approval = &a
	}
	in := workflows.Input{
		Runbook:        rb,
		IncidentKey:    req.IncidentKey,
		Alert:          &alert,
		Actor:          domain.Actor{Kind: domain.ActorAlert, Name: alert.Name()},
		DryRun:         req.DryRun,
		DryRunReason:   req.DryRunReason,
		Target:         req.Target,
		TargetWait:     req.TargetWait,
		ApprovalReason: req.ApprovalReason,
		Revision:       r.startRevision(ctx),
	}
	markShadow(&in)
	if err := r.sign(&in); err != nil {
		return triggers.StartResult{}, triggers.Permanent(fmt.Errorf("sign runbook %s: %w", rb.Name(), err))
	}
	payloads, err := converter.GetDefaultDataConverter().ToPayloads(in)
	if err != nil {
		return triggers.StartResult{}, fmt.Errorf("encode run input: %w", err)
	}
	onConflict := &workflowpb.OnConflictOptions{AttachRequestId: true}
	if req.Quiet {
		// Attaching a request ID is a history event too: a quiet join
		// adds nothing to the run's history.
		onConflict = nil
	}
	reuse := enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE
	if req.JoinOnly {
		// Join the running run, or start the admitted one if it never
		// started; never start after an ended run.
		reuse = enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE
	}
	resp, err := r.c.WorkflowService().StartWorkflowExecution(ctx, &workflowservice.StartWorkflowExecutionRequest{
		Namespace:                r.namespace,
		WorkflowId:               req.WorkflowID,
		WorkflowType:             &commonpb.WorkflowType{Name: workflows.WorkflowName},
		TaskQueue:                &taskqueuepb.TaskQueue{Name: r.taskQueue, Kind: enumspb.TASK_QUEUE_KIND_NORMAL},
		Input:                    payloads,
		Memo:                     runMemo(req.IncidentKey, traceparent),
		Header:                   header,
		Identity:                 r.identity,
		RequestId:                req.RequestID,
		WorkflowIdReusePolicy:    reuse,
		WorkflowIdConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		OnConflictOptions:        onConflict,
	})
	var ended *serviceerror.WorkflowExecutionAlreadyStarted
	if req.JoinOnly && errors.As(err, &ended) {
		return triggers.StartResult{}, triggers.ErrRunEnded
	}
	if err != nil {
		return triggers.StartResult{}, classify(fmt.Errorf("start workflow %s: %w", req.WorkflowID, err))
	}
	if resp.GetStarted() {
		return triggers.StartResult{RunID: resp.GetRunId(), Started: true, Trace: traceparent}, nil
	}
	span.SetName("SignalWithStartWorkflow:" + workflows.WorkflowName) // it joined: the run was going
	if req.Quiet {
		return triggers.StartResult{RunID: resp.GetRunId(), Started: false}, nil
	}
	// Joined: hand the alert to the running run. If it closed in the
	// meantime, it already ran for this incident; nothing is lost.
	if err := r.c.SignalWorkflow(ctx, req.WorkflowID, resp.GetRunId(), workflows.SignalAlerts, workflows.AlertRefs([]domain.AlertEvent{alert})); err != nil && !isNotFound(err) {
		return triggers.StartResult{}, classify(fmt.Errorf("signal run %s: %w", req.WorkflowID, err))
	}
	return triggers.StartResult{RunID: resp.GetRunId(), Started: false}, nil
}

// Notify signals alerts to the running run of workflowID, if any, in one
// signal of compact references (never whole annotations), so repeats of
// an incident add one history event per batch, not one per alert.
func (r *Runs) Notify(ctx context.Context, workflowID string, evs ...domain.AlertEvent) (bool, error) {
	err := r.c.SignalWorkflow(ctx, workflowID, "", workflows.SignalAlerts, workflows.AlertRefs(evs))
	if isNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, classify(fmt.Errorf("signal run %s: %w", workflowID, err))
	}
	return true, nil
}

// markShadow makes a shadow runbook's run a dry run in its input too: a
// worker of an older version, which knows no shadow mode and reads
// "shadow" as enforce, honours the input's flag and acts on nothing (it
// plans, without the watch). A reason the safety envelope gave is kept.
func markShadow(in *workflows.Input) {
	if !in.Runbook.Spec.Safety.Shadow() {
		return
	}
	in.DryRun = true
	if in.DryRunReason == "" {
		in.DryRunReason = "shadow mode: the runbook acts on nothing yet; this run records what it would have done"
	}
}

// runMemo keeps the incident key as it was in the run's memo (a workflow
// ID may carry only a hashed form of it: domain.WorkflowID) and, when
// tracing is on, the run's trace as a W3C traceparent.
func runMemo(key, traceparent string) *commonpb.Memo {
	m := &commonpb.Memo{Fields: map[string]*commonpb.Payload{}}
	for k, v := range map[string]string{memoIncidentKey: key, memoTrace: traceparent} {
		if v == "" && k == memoTrace {
			continue
		}
		if p, err := converter.GetDefaultDataConverter().ToPayload(v); err == nil { // a string always encodes
			m.Fields[k] = p
		}
	}
	return m
}

const (
	memoIncidentKey = "incidentKey"
	memoTrace       = "trace"
)

// memoKey reads the incident key from a run's memo; "" when absent (runs
// started before the memo existed have plain keys in their IDs).
func memoKey(m *commonpb.Memo) string { return memoString(m, memoIncidentKey) }

// memoTraceID reads a run's trace ID from its memo; "" when it was
// started with tracing off.
func memoTraceID(m *commonpb.Memo) string {
	sc := tracing.SpanContextOf(memoString(m, memoTrace))
	if !sc.IsValid() {
		return ""
	}
	return sc.TraceID().String()
}

func memoString(m *commonpb.Memo, field string) string {
	p := m.GetFields()[field]
	if p == nil {
		return ""
	}
	var k string
	if converter.GetDefaultDataConverter().FromPayload(p, &k) != nil {
		return ""
	}
	return k
}

// classify marks errors no retry can fix: Temporal refused the request
// itself (an invalid argument, a payload over its limits). Anything else
// (unavailable, timeouts, resource exhausted) may pass on a retry.
func classify(err error) error {
	var invalid *serviceerror.InvalidArgument
	if errors.As(err, &invalid) {
		return triggers.Permanent(err)
	}
	return err
}

func isNotFound(err error) bool {
	var nf *serviceerror.NotFound
	return errors.As(err, &nf)
}

// Run statuses as the API shows them.
const (
	StatusRunning    = "running"
	StatusSucceeded  = "succeeded"
	StatusFailed     = "failed"
	StatusCancelled  = "cancelled"
	StatusTerminated = "terminated"
	StatusTimedOut   = "timed_out"
	StatusUnknown    = "unknown"
)

// Summary is one run in a list.
type Summary struct {
	WorkflowID  string    `json:"workflowId"`
	RunID       string    `json:"runId"`
	Runbook     string    `json:"runbook"`
	IncidentKey string    `json:"incidentKey"`
	Status      string    `json:"status"`
	StartTime   time.Time `json:"startTime"`
	CloseTime   time.Time `json:"closeTime,omitzero"`
	// TraceID is the run's OpenTelemetry trace, when it was started with
	// tracing on.
	TraceID string `json:"traceId,omitempty"`
}

// Detail is one run with its step outcomes.
type Detail struct {
	Summary
	Run *workflows.Status `json:"run,omitempty"`
	// RunError says why Run is missing (e.g. no worker to answer a query).
	RunError string `json:"runError,omitempty"`
	// TraceURL links to the run's trace in the tracing UI the config's
	// tracing.traceURL names; "" without one or without a trace.
	TraceURL string `json:"traceUrl,omitempty"`
}

// ErrNotFound is returned for an unknown run.
var ErrNotFound = errors.New("run not found")

// List returns runs, newest first. pageToken is opaque; an empty next token
// means the last page.
func (r *Runs) List(ctx context.Context, pageSize int, pageToken []byte) ([]Summary, []byte, error) {
	return r.ListFiltered(ctx, ListFilter{}, pageSize, pageToken)
}

// ListFiltered returns the runs f selects, newest first.
func (r *Runs) ListFiltered(ctx context.Context, f ListFilter, pageSize int, pageToken []byte) ([]Summary, []byte, error) {
	if pageSize <= 0 || pageSize > 1000 {
		pageSize = 100
	}
	q, err := f.query()
	if err != nil {
		return nil, nil, err
	}
	resp, err := r.c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
		Namespace:     r.namespace,
		PageSize:      int32(pageSize),
		NextPageToken: pageToken,
		Query:         q,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("list runs: %w", err)
	}
	out := make([]Summary, 0, len(resp.GetExecutions()))
	for _, e := range resp.GetExecutions() {
		out = append(out, summary(e))
	}
	return out, resp.GetNextPageToken(), nil
}

// Get returns one run; runID "" means the latest run of workflowID.
func (r *Runs) Get(ctx context.Context, workflowID, runID string) (Detail, error) {
	desc, err := r.c.DescribeWorkflowExecution(ctx, workflowID, runID)
	if isNotFound(err) {
		return Detail{}, fmt.Errorf("%w: %s", ErrNotFound, workflowID)
	}
	if err != nil {
		return Detail{}, fmt.Errorf("describe run %s: %w", workflowID, err)
	}
	d := Detail{Summary: summary(desc.GetWorkflowExecutionInfo())}
	// A query replays the run on a worker; it works for closed runs too.
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	val, err := r.c.QueryWorkflow(qctx, workflowID, d.RunID, workflows.QueryStatus)
	if err == nil {
		var st workflows.Status
		if err = val.Get(&st); err == nil {
			d.Run = &st
			return d, nil
		}
	}
	d.RunError = "step details unavailable: " + err.Error()
	return d, nil
}

func summary(e *workflowpb.WorkflowExecutionInfo) Summary {
	s := Summary{
		WorkflowID: e.GetExecution().GetWorkflowId(),
		RunID:      e.GetExecution().GetRunId(),
		Status:     status(e.GetStatus()),
	}
	s.Runbook, s.IncidentKey, _ = domain.ParseWorkflowID(s.WorkflowID)
	if k := memoKey(e.GetMemo()); k != "" {
		s.IncidentKey = k
	}
	s.TraceID = memoTraceID(e.GetMemo())
	if t := e.GetStartTime(); t != nil {
		s.StartTime = t.AsTime()
	}
	if t := e.GetCloseTime(); t != nil {
		s.CloseTime = t.AsTime()
	}
	return s
}

func status(s enumspb.WorkflowExecutionStatus) string {
	switch s {
	case enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING:
		return StatusRunning
	case enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED:
		return StatusSucceeded
	case enumspb.WORKFLOW_EXECUTION_STATUS_FAILED:
		return StatusFailed
	case enumspb.WORKFLOW_EXECUTION_STATUS_CANCELED:
		return StatusCancelled
	case enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED:
		return StatusTerminated
	case enumspb.WORKFLOW_EXECUTION_STATUS_TIMED_OUT:
		return StatusTimedOut
	}
	return StatusUnknown
}
