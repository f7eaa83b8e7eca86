package workflows

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/salve-sre/salve/activities/step"
	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/runbooks"
)

// Names that are part of Salve's contract with Temporal history: never
// rename them.
const (
	WorkflowName = "Runbook"
	// SignalAlert carried one whole alert per signal; runs started by older
	// versions may still receive it, so it is still read.
	SignalAlert = "alert"
	// SignalAlerts carries a batch of compact alert references: one
	// history event per batch, never the alerts' annotations.
	SignalAlerts = "alerts"
	QueryStatus  = "status"
	// AuditActivity records a run-level audit event and, for run.finished,
	// also applies the finished run to the safety state: what runs of
	// revision 2 and earlier call (see RecordActivity).
	AuditActivity = "audit.record"
	// RecordActivity records a run-level audit event, and only that. Runs
	// of revision 3 and later call it, and RunFinishedActivity for the
	// effect on the safety state.
	RecordActivity = "audit.record_event"
	// RunFinishedActivity applies a finished run to the safety state: it
	// frees the run's place, starts its incident's cooldown and counts a
	// failure for the circuit breaker. Idempotent.
	RunFinishedActivity = "safety.run_finished"
	// VerifyActivity is the local activity that checks the snapshot's
	// signature (internal/snapshot) before a run does anything.
	VerifyActivity = "runbook.verify"
	// PrepareActivity is the local activity that runs of CurrentRevision
	// call instead: it checks the signature too, and says which
	// run-level events the worker's notification hooks want.
	PrepareActivity     = "runbook.prepare"
	StepStateSucceeded  = "succeeded"
	StepStateFailed     = "failed"
	StepStateSkipped    = "skipped"
	StepStateRunning    = "running"
	RunStateRunning     = "running"
	RunStateSucceeded   = "succeeded"
	RunStateFailed      = "failed"
	RunStateCancelled   = "cancelled"
	RunStateRejected    = "rejected" // a person rejected an approval
	StepStateWaiting    = "waiting_approval"
	onFailureKeySuffix  = "/onFailure"
	maxAlertsRemembered = 1000
)

// Workflow versions: a change that adds or moves commands gets a new
// version, so runs started by older code replay exactly as they ran.
const (
	versionChangeID = "salve-runbook"
	// versionApprovals waits for approvals (instead of refusing runbooks
	// that need them) and calls notification hooks.
	versionApprovals workflow.Version = 1
	// verifyChangeID: runs check their runbook's signature first. Runs
	// started before this version replay without the check.
	verifyChangeID                  = "salve-runbook-verify"
	versionVerify  workflow.Version = 1
)

// CurrentRevision is the shape of run new starts ask for (Input.Revision).
// A run's shape is fixed by its input, so it needs no GetVersion markers:
// each of those costs history events and a search-attribute write per run.
// Revision 1 (the zero value: runs started before revisions existed) is
// decided by GetVersion as it always was. Revision 2 runs approvals,
// checks the signature and writes run-level audit events in local
// activities (no task round trip of their own), and schedules a hook
// activity only for events some hook wants. Revision 3 applies a finished
// run to the safety state in an activity of its own (RunFinishedActivity)
// instead of as a side effect of recording run.finished.
const CurrentRevision = 3

const (
	revisionLean     = 2
	revisionExplicit = 3
)

// Input starts a run. It carries the runbook snapshot: the run never reads
// runbook files.
type Input struct {
	Runbook runbooks.Runbook `json:"runbook"`
	// RunbookSignature is Salve's signature of Runbook (internal/snapshot):
	// a worker runs no step of a snapshot it cannot verify.
	RunbookSignature string             `json:"runbookSignature,omitempty"`
	IncidentKey      string             `json:"incidentKey"`
	Alert            *domain.AlertEvent `json:"alert,omitempty"` // nil for a manual launch
	Params           map[string]string  `json:"params,omitempty"`
	Actor            domain.Actor       `json:"actor"`
	// Reason is why a person launched the run.
	Reason string `json:"reason,omitempty"`
	// DryRun makes this run a plan that changes nothing, whatever the
	// runbook's mode, for DryRunReason (e.g. its circuit breaker is open).
	DryRun       bool   `json:"dryRun,omitempty"`
	DryRunReason string `json:"dryRunReason,omitempty"`
	// Target is what the run acts on (the runbook's safety.target). With
	// TargetWait > 0, another run held it at admission: the run acquires
	// it before acting, waiting at most TargetWait.
	Target     string        `json:"target,omitempty"`
	TargetWait time.Duration `json:"targetWait,omitempty"`
	// ApprovalReason is why the safety envelope made this run wait for
	// approval (its runbook then carries a required approval).
	ApprovalReason string `json:"approvalReason,omitempty"`
	// Revision is the shape of run the starter asked for (see
	// CurrentRevision); 0 for runs started by older versions.
	Revision int `json:"revision,omitempty"`
}

// Status is the run's live state (query "status") and its result.
type Status struct {
	Runbook     string            `json:"runbook"`
	RunbookHash string            `json:"runbookHash"`
	IncidentKey string            `json:"incidentKey"`
	State       string            `json:"state"`
	Params      map[string]string `json:"params,omitempty"`
	Steps       []StepStatus      `json:"steps"`
	OnFailure   []StepStatus      `json:"onFailure,omitempty"`
	// Alerts are the first notifications the run heard of (at most
	// 1,000); AlertsSeen counts them all.
	Alerts     []AlertRef `json:"alerts,omitempty"`
	AlertsSeen int        `json:"alertsSeen,omitempty"`
	Resolved   bool       `json:"resolved"`
	// StopReason says why the run stopped early (e.g. its alert resolved).
	StopReason string `json:"stopReason,omitempty"`
	Error      string `json:"error,omitempty"`
	// DryRun: the run changed nothing (runbook mode or safety envelope);
	// DryRunReason says why when the safety envelope decided it.
	DryRun       bool   `json:"dryRun,omitempty"`
	DryRunReason string `json:"dryRunReason,omitempty"`
	// Target is what the run acts on; WaitingFor says what it waits for
	// before acting (another run holding its target).
	Target     string `json:"target,omitempty"`
	WaitingFor string `json:"waitingFor,omitempty"`
	// ApprovalReason is why the safety envelope required an approval.
	ApprovalReason string `json:"approvalReason,omitempty"`
	// LaunchedBy is the person who launched the run; "" for alert runs.
	LaunchedBy string `json:"launchedBy,omitempty"`
	Reason     string `json:"reason,omitempty"`
	// Shadow: a shadow run, which acts on nothing and gathers Evidence
	// (set when its watch ended).
	Shadow   bool      `json:"shadow,omitempty"`
	Evidence *Evidence `json:"evidence,omitempty"`
	// Approval is the approval the run waits for now, if any.
	Approval  *ApprovalWait    `json:"approval,omitempty"`
	Approvals []ApprovalRecord `json:"approvals,omitempty"`
}

// StepStatus is one step's outcome.
type StepStatus struct {
	Name       string         `json:"name"`
	Action     string         `json:"action"`
	State      string         `json:"state"`
	StartedAt  time.Time      `json:"startedAt,omitzero"`
	FinishedAt time.Time      `json:"finishedAt,omitzero"`
	Output     map[string]any `json:"output,omitempty"`
	Error      string         `json:"error,omitempty"`
	// Attempts is how many attempts the step took (0 = not known).
	Attempts int `json:"attempts,omitempty"`
}

// AlertRef records an alert notification the run has seen. It is also
// what SignalAlerts carries: small and bounded whatever the alert holds.
type AlertRef struct {
	ID          string    `json:"id"`
	Fingerprint string    `json:"fingerprint,omitempty"`
	Status      string    `json:"status"`
	StartsAt    time.Time `json:"startsAt,omitzero"`
	ReceivedAt  time.Time `json:"receivedAt"`
}

// maxRefID bounds an ID in a reference. Alert IDs are fingerprint|status|
// startsAt (well under this); a longer one is cut, which at worst makes
// the run count two notifications as one.
const maxRefID = 256

// AlertRefs makes the compact references that SignalAlerts carries.
func AlertRefs(evs []domain.AlertEvent) []AlertRef {
	refs := make([]AlertRef, 0, len(evs))
	for _, ev := range evs {
		refs = append(refs, AlertRef{
			ID: truncate(ev.ID, maxRefID), Fingerprint: truncate(ev.Fingerprint, maxRefID),
			Status: truncate(ev.Status, 16), StartsAt: ev.StartsAt, ReceivedAt: ev.ReceivedAt,
		})
	}
	return refs
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// Runbook is the workflow. It returns the final Status; a failed run also
// returns an error so Temporal marks the execution failed.
func Runbook(ctx workflow.Context, in Input) (Status, error) {
	checkRevision(in)
	r := newRun(ctx, in)
	if r.lean {
		r.version = versionApprovals
	} else {
		r.version = workflow.GetVersion(ctx, versionChangeID, workflow.DefaultVersion, versionApprovals)
	}
	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (Status, error) { return r.status, nil }); err != nil {
		return r.status, err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateApproval, r.setDecision,
		workflow.UpdateHandlerOptions{Validator: r.validateDecision}); err != nil {
		return r.status, err
	}
	// Repeats of the alert and its resolution arrive as signals; record
	// them for the whole life of the run. A workflow goroutine, not `go`.
	// execCtx is cancelled by a resolved alert under onResolved: cancel.
	execCtx, cancelExec := workflow.WithCancel(ctx)
	one, batch := workflow.GetSignalChannel(ctx, SignalAlert), workflow.GetSignalChannel(ctx, SignalAlerts)
	notified := func(refs []AlertRef) {
		for _, ref := range refs {
			if r.addAlert(ref) && ref.Status == domain.StatusResolved && r.status.State == RunStateRunning {
				if r.isShadow() {
					// A shadow run watches on: the resolution is evidence.
					// It plans no more than a real run would still do.
					if r.shadow.resolvedAt.IsZero() {
						r.shadow.resolvedAt = workflow.Now(ctx)
					}
					r.onResolvedShadow()
					continue
				}
				r.onResolved(cancelExec)
			}
		}
	}
	workflow.Go(ctx, func(ctx workflow.Context) {
		sel := workflow.NewSelector(ctx)
		sel.AddReceive(one, func(c workflow.ReceiveChannel, _ bool) {
			var ev domain.AlertEvent
			c.Receive(ctx, &ev)
			notified(AlertRefs([]domain.AlertEvent{ev}))
		})
		sel.AddReceive(batch, func(c workflow.ReceiveChannel, _ bool) {
			var refs []AlertRef
			c.Receive(ctx, &refs)
			notified(refs)
		})
		for {
			sel.Select(ctx)
		}
	})

	if r.lean {
		if err := r.prepare(ctx); err != nil {
			r.status.State, r.status.Error = RunStateFailed, err.Error()
			r.audit(ctx, domain.ActionRunRefused, "", RunStateFailed, errString(err))
			return r.status, temporal.NewNonRetryableApplicationError(r.status.Error, "RunbookNotSigned", nil)
		}
	} else if workflow.GetVersion(ctx, verifyChangeID, workflow.DefaultVersion, versionVerify) >= versionVerify {
		if err := verify(ctx, in); err != nil {
			// Not a runbook Salve loaded (or changed on the way): nothing
			// runs, not even a hook, and the refusal is audited.
			r.status.State, r.status.Error = RunStateFailed, err.Error()
			r.audit(ctx, domain.ActionRunRefused, "", RunStateFailed, errString(err))
			return r.status, temporal.NewNonRetryableApplicationError(r.status.Error, "RunbookNotSigned", nil)
		}
	}
	r.audit(ctx, domain.ActionRunStarted, "", "", nil)
	r.hook(ctx, step.HookStarted, "", in.DryRunReason, in.Actor.Name)
	err := r.execute(execCtx)
	cancelled := err != nil && errors.Is(execCtx.Err(), workflow.ErrCanceled)
	// A rejection of a compensation step later does not make a failed run
	// a rejected one: what counts is how the steps ended.
	rejected := err != nil && r.rejected
	hookEvent := step.HookSucceeded
	switch {
	case err == nil:
		r.status.State = RunStateSucceeded
	case cancelled:
		r.status.State, hookEvent = RunStateCancelled, step.HookCancelled
	case rejected:
		r.status.State, hookEvent = RunStateRejected, step.HookRejected
	default:
		r.status.State, hookEvent = RunStateFailed, step.HookFailed
	}
	if err != nil {
		r.status.Error = err.Error()
		// Compensate only if a step acted; it must run even after a cancel.
		// A shadow run acted on nothing.
		if r.acted() && !r.isShadow() {
			dctx, cancel := workflow.NewDisconnectedContext(ctx)
			defer cancel()
			_ = r.runSteps(dctx, in.Runbook.Spec.OnFailure, &r.status.OnFailure, onFailureKeySuffix)
		}
	}
	// The finishing audit event is written even after a cancel.
	actx, cancel := workflow.NewDisconnectedContext(ctx)
	defer cancel()
	finished := r.auditWith(actx, domain.ActionRunFinished, "", r.status.State, errString(err), r.in.Actor, r.finishDetail(actx))
	if r.explicit {
		r.runFinished(actx, finished)
	}
	hookErr := r.status.Error
	if rejected {
		hookErr = r.status.StopReason
	}
	r.hook(actx, hookEvent, "", hookErr, "")
	r.waitHooks(actx)
	switch {
	case cancelled, rejected:
		// Temporal records the run as cancelled, not failed, so a person
		// stopping or rejecting a run never counts as a runbook failure.
		return r.status, temporal.NewCanceledError(r.status.Error)
	case err != nil:
		return r.status, temporal.NewNonRetryableApplicationError(r.status.Error, "RunFailed", nil)
	}
	return r.status, nil
}

// verify checks the snapshot's signature in a local activity: the worker's
// key stays out of workflow code, and replays read the recorded answer.
func verify(ctx workflow.Context, in Input) error {
	lctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		ScheduleToCloseTimeout: time.Minute,
		RetryPolicy:            &temporal.RetryPolicy{InitialInterval: time.Second, MaximumAttempts: 5},
	})
	if err := workflow.ExecuteLocalActivity(lctx, VerifyActivity, in.Runbook, in.RunbookSignature).Get(ctx, nil); err != nil {
		return fmt.Errorf("refused: %s", errorMessage(err))
	}
	return nil
}

// prepare checks the snapshot's signature and learns which run-level
// events the worker's hooks want, in one local activity.
func (r *run) prepare(ctx workflow.Context) error {
	lctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		ScheduleToCloseTimeout: time.Minute,
		RetryPolicy:            &temporal.RetryPolicy{InitialInterval: time.Second, MaximumAttempts: 5},
	})
	var p step.Prepared
	if err := workflow.ExecuteLocalActivity(lctx, PrepareActivity, r.in.Runbook, r.in.RunbookSignature).Get(ctx, &p); err != nil {
		return fmt.Errorf("refused: %s", errorMessage(err))
	}
	r.hookEvents = p.HookEvents
	return nil
}

// finishDetail is what the dashboard and metrics need of a finished run:
// its duration, the time it waited for people, and the toil it saved (an
// automated run that succeeded saves the runbook's manual minutes, minus
// the people's time it still took to approve it).
func (r *run) finishDetail(ctx workflow.Context) map[string]string {
	dur := workflow.Now(ctx).Sub(r.info.WorkflowStartTime)
	d := map[string]string{
		"durationSeconds":     strconv.FormatFloat(dur.Seconds(), 'f', 3, 64),
		"approvalWaitSeconds": strconv.FormatFloat(r.approvalWait.Seconds(), 'f', 3, 64),
	}
	if o := r.in.Runbook.Metadata.Owner; o != "" {
		d["owner"] = o
	}
	if r.status.State == RunStateSucceeded && r.in.Actor.Kind == domain.ActorAlert && !r.dryRun() {
		toil := time.Duration(r.in.Runbook.Spec.Toil.ManualMinutes*float64(time.Minute)) - r.approvalWait
		d["toilSeconds"] = strconv.FormatFloat(max(toil, 0).Seconds(), 'f', 3, 64)
	}
	return d
}

// acted reports whether any step started (and so may have changed
// something that compensation should undo).
func (r *run) acted() bool {
	for _, s := range r.status.Steps {
		if s.Action != runbooks.ActionSleep && s.State != StepStateSkipped && !s.StartedAt.IsZero() {
			return true
		}
	}
	return false
}

type run struct {
	in     Input
	info   *workflow.Info
	status Status
	data   runbooks.TemplateData
	seen   map[string]bool
	finish bool // stop before the next step: the alert resolved
	creds  map[string]step.CredentialRef

	version workflow.Version
	// lean: a run of revisionLean or later (see CurrentRevision).
	lean bool
	// explicit: a run of revisionExplicit or later records audit events
	// with RecordActivity and calls RunFinishedActivity.
	explicit bool
	// hookEvents are the run-level events some hook wants (lean runs).
	hookEvents []string
	decision   *Decision // the answer to the approval waited for now
	rejected   bool      // a person rejected an approval
	// approvalWait is the time spent waiting for people's decisions.
	approvalWait time.Duration
	hooks        []workflow.Future
	shadow       shadow
}

func newRun(ctx workflow.Context, in Input) *run {
	info := workflow.GetInfo(ctx)
	r := &run{
		in:       in,
		info:     info,
		lean:     in.Revision >= revisionLean,
		explicit: in.Revision >= revisionExplicit,
		seen:     map[string]bool{},
		status: Status{
			Runbook:        in.Runbook.Name(),
			RunbookHash:    in.Runbook.Hash,
			IncidentKey:    in.IncidentKey,
			State:          RunStateRunning,
			Reason:         in.Reason,
			DryRun:         !in.Runbook.Spec.Safety.Acts() || in.DryRun,
			Shadow:         in.Runbook.Spec.Safety.Shadow(),
			DryRunReason:   in.DryRunReason,
			Target:         in.Target,
			ApprovalReason: in.ApprovalReason,
		},
		data: runbooks.TemplateData{
			Steps: map[string]runbooks.StepData{},
			Run: runbooks.RunData{
				Runbook:     in.Runbook.Name(),
				WorkflowID:  info.WorkflowExecution.ID,
				IncidentKey: in.IncidentKey,
			},
		},
	}
	if in.Actor.Kind == domain.ActorUser {
		r.status.LaunchedBy = in.Actor.Name
	}
	if in.Alert != nil {
		r.data.Alert = *in.Alert
		r.data.Labels = in.Alert.Labels
		r.data.Annotations = in.Alert.Annotations
		r.addAlert(AlertRefs([]domain.AlertEvent{*in.Alert})[0])
	}
	return r
}

// onResolved applies the runbook's resolved-alert policy to a running run.
func (r *run) onResolved(cancelExec workflow.CancelFunc) {
	switch r.in.Runbook.Spec.Trigger.OnResolved {
	case runbooks.OnResolvedCancel:
		r.status.StopReason = "alert resolved (onResolved: cancel)"
		cancelExec()
	case runbooks.OnResolvedFinish:
		r.status.StopReason = "alert resolved (onResolved: finish)"
		r.finish = true
	}
}

// addAlert records a notification and reports whether it was new.
func (r *run) addAlert(ref AlertRef) bool {
	if r.seen[ref.ID] {
		return false // a redelivered or re-signalled notification
	}
	r.seen[ref.ID] = true
	r.status.AlertsSeen++
	if len(r.status.Alerts) < maxAlertsRemembered {
		r.status.Alerts = append(r.status.Alerts, ref)
	}
	r.status.Resolved = ref.Status == domain.StatusResolved
	return true
}

// dryRun: no step may act (dry-run or shadow mode, or the safety
// envelope said so).
func (r *run) dryRun() bool { return !r.in.Runbook.Spec.Safety.Acts() || r.in.DryRun }

// errApprovalUnsupported refuses runbooks that ask for a person's approval:
// until this version can wait for one, running such a runbook would act
// without the approval its authors required.
var errApprovalUnsupported = errors.New("this runbook requires approval, and this version of Salve cannot wait for approvals yet: nothing was run (remove approval to run it automatically, or set safety.mode: dry-run)")

func (r *run) needsApproval() bool { return r.in.Runbook.NeedsApproval() }

func (r *run) execute(ctx workflow.Context) error {
	if r.version < versionApprovals && r.needsApproval() && !r.dryRun() {
		return errApprovalUnsupported
	}
	params, err := r.in.Runbook.ResolveParams(r.in.Alert, r.in.Params)
	if err != nil {
		return err
	}
	r.status.Params = params
	r.data.Params = params
	// Credential roles are rendered once, before any step: a bad role
	// template fails the run before anything acts.
	for _, name := range workflow.DeterministicKeys(r.in.Runbook.Spec.Credentials) {
		c := r.in.Runbook.Spec.Credentials[name]
		role, err := runbooks.RenderString(c.VaultRole, r.data)
		if err != nil {
			return fmt.Errorf("credentials.%s.vaultRole: %w", name, err)
		}
		if r.creds == nil {
			r.creds = map[string]step.CredentialRef{}
		}
		r.creds[name] = step.CredentialRef{Role: role, TTL: c.TTL.D()}
	}
	if r.in.TargetWait > 0 && !r.dryRun() {
		if err := r.awaitTarget(ctx); err != nil {
			return err
		}
	}
	if a := r.in.Runbook.Spec.Safety.Approval; a != nil && a.Required {
		if r.isShadow() {
			r.shadow.evidence.Approvals = append(r.shadow.evidence.Approvals, "run")
		} else if !r.dryRun() && r.version >= versionApprovals {
			if err := r.awaitApproval(ctx, "", a, true); err != nil {
				return err
			}
		}
	}
	err = r.runSteps(ctx, r.in.Runbook.Spec.Steps, &r.status.Steps, "")
	if r.isShadow() {
		// Where a real run would have stopped is evidence, not the
		// shadow run's failure.
		return r.watchShadow(ctx, err)
	}
	return err
}

// runSteps runs steps in order and stops at the first failure that the
// step does not allow to continue past.
func (r *run) runSteps(ctx workflow.Context, steps []runbooks.Step, out *[]StepStatus, keySuffix string) error {
	for _, s := range steps {
		if r.finish && keySuffix == "" {
			// The alert resolved: the remaining steps are not needed.
			*out = append(*out, StepStatus{Name: s.Name, Action: s.Action, State: StepStateSkipped, Error: r.status.StopReason})
			continue
		}
		*out = append(*out, StepStatus{Name: s.Name, Action: s.Action})
		st := &(*out)[len(*out)-1]
		err := r.runStep(ctx, s, st, keySuffix)
		r.data.Steps[s.Name] = runbooks.StepData{Status: st.State, Output: st.Output}
		if err != nil && !s.ContinueOnError {
			// The step's own message, without Temporal's error envelope:
			// this text is what people read in the run and the audit log.
			return fmt.Errorf("step %q: %s", s.Name, st.Error)
		}
	}
	return nil
}

func (r *run) runStep(ctx workflow.Context, s runbooks.Step, st *StepStatus, keySuffix string) error {
	ok, err := runbooks.EvalWhen(s.When, r.data)
	if err != nil {
		st.State, st.Error = StepStateFailed, err.Error()
		return err
	}
	if !ok {
		st.State = StepStateSkipped
		r.audit(ctx, domain.ActionStepSkipped, s.Name, StepStateSkipped, nil)
		return nil
	}
	render := runbooks.Render
	if r.dryRun() {
		// Outputs of steps that did not act are missing: render them empty
		// rather than fail the plan.
		render = runbooks.RenderLenient
	}
	params, err := render(s.With, r.data)
	if err != nil {
		// Nothing was started: a rendering error never triggers onFailure.
		st.State, st.Error = StepStateFailed, err.Error()
		return err
	}
	if s.Approval != nil && s.Approval.Required && r.isShadow() && keySuffix == "" {
		r.shadow.evidence.Approvals = append(r.shadow.evidence.Approvals, s.Name)
	}
	if s.Approval != nil && s.Approval.Required && !r.dryRun() && r.version >= versionApprovals {
		st.State = StepStateWaiting
		if err := r.awaitApproval(ctx, s.Name, s.Approval, keySuffix == ""); err != nil {
			st.State, st.Error = StepStateFailed, err.Error()
			if errors.Is(err, errRejected) {
				st.State, st.Error = StepStateSkipped, r.status.StopReason
			}
			return err
		}
		if r.finish && keySuffix == "" {
			// The alert resolved while the step waited: it never acts.
			st.State, st.Error = StepStateSkipped, r.status.StopReason
			return nil
		}
	}
	st.State, st.StartedAt = StepStateRunning, workflow.Now(ctx)
	defer func() { st.FinishedAt = workflow.Now(ctx) }()
	if s.Action == runbooks.ActionSleep {
		err = r.sleep(ctx, params)
	} else {
		err = r.activity(ctx, s, params, st, keySuffix)
	}
	if err != nil {
		st.State, st.Error = StepStateFailed, errorMessage(err)
	} else {
		st.State = StepStateSucceeded
	}
	if r.isShadow() && keySuffix == "" && s.Action != runbooks.ActionSleep {
		if planned, _ := st.Output["dryRun"].(bool); planned {
			r.plannedShadow(ctx, s, params)
		} else {
			r.readOnlyDone(*st)
		}
	}
	return err
}

// sleep is a durable timer: it survives worker and server restarts.
func (r *run) sleep(ctx workflow.Context, params map[string]any) error {
	d, err := step.Duration(params["duration"])
	if err != nil {
		return fmt.Errorf("sleep duration: %w", err)
	}
	return workflow.Sleep(ctx, d)
}

func (r *run) activity(ctx workflow.Context, s runbooks.Step, params map[string]any, st *StepStatus, keySuffix string) error {
	eff := s.Effective()
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: eff.Timeout.D(),
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    eff.Retry.InitialInterval.D(),
			BackoffCoefficient: 2,
			MaximumInterval:    eff.Retry.MaxInterval.D(),
			MaximumAttempts:    int32(eff.Retry.MaxAttempts),
		},
	})
	req := step.Request{
		WorkflowID: r.info.WorkflowExecution.ID,
		RunID:      r.info.WorkflowExecution.RunID,
		Runbook:    r.in.Runbook.Name(),
		Step:       s.Name,
		Kind:       s.Action,
		Params:     params,
		// The run ID is part of the key: a later incident reuses the
		// workflow ID, and must not be mistaken for a retry of this run.
		IdempotencyKey: r.info.WorkflowExecution.ID + "/" + r.info.WorkflowExecution.RunID + "/" + s.Name + keySuffix,
		Credentials:    r.creds,
		DryRun:         r.dryRun(),
	}
	var res step.Result
	if err := workflow.ExecuteActivity(actx, step.ActivityName(s.Action), req).Get(ctx, &res); err != nil {
		var appErr *temporal.ApplicationError
		var attempt int32
		if errors.As(err, &appErr) && appErr.HasDetails() && appErr.Details(&attempt) == nil {
			st.Attempts = int(attempt)
		}
		return err
	}
	st.Output = res.Output
	st.Attempts = int(res.Attempt)
	return nil
}

// audit records a run-level action. Step-level events are written by the
// activity adapter around the action itself.
func (r *run) audit(ctx workflow.Context, action, stepName, outcome string, err *string) {
	r.auditWith(ctx, action, stepName, outcome, err, r.in.Actor, nil)
}

// auditWith records a run-level action done by actor, and returns the
// event recorded.
func (r *run) auditWith(ctx workflow.Context, action, stepName, outcome string, err *string, actor domain.Actor, detail map[string]string) domain.AuditEvent {
	ev := domain.AuditEvent{
		ID:          r.info.WorkflowExecution.ID + "/" + r.info.WorkflowExecution.RunID + "/" + action,
		Time:        workflow.Now(ctx),
		Actor:       actor,
		Action:      action,
		Runbook:     r.in.Runbook.Name(),
		RunbookHash: r.in.Runbook.Hash,
		WorkflowID:  r.info.WorkflowExecution.ID,
		RunID:       r.info.WorkflowExecution.RunID,
		IncidentKey: r.in.IncidentKey,
		Step:        stepName,
		Outcome:     outcome,
		Detail:      detail,
	}
	if stepName != "" {
		ev.ID += "/" + stepName
	}
	if err != nil {
		ev.Error = *err
	}
	name := AuditActivity
	if r.explicit {
		name = RecordActivity
	}
	if aerr := r.runLevel(ctx, name, ev); aerr != nil {
		workflow.GetLogger(ctx).Error("audit event not recorded", "action", action, "error", aerr)
	}
	return ev
}

// runFinished applies the finished run to the safety state.
func (r *run) runFinished(ctx workflow.Context, finished domain.AuditEvent) {
	if err := r.runLevel(ctx, RunFinishedActivity, finished); err != nil {
		workflow.GetLogger(ctx).Error("finished run not applied to the safety state", "error", err)
	}
}

// runLevel runs a run-level activity with ev until it succeeds: an audit
// or safety-state outage delays the run, it never drops the record. In a
// lean run it is a local activity: one publish needs no task round trip
// of its own; run again after a worker crash, it takes effect once (event
// IDs are the audit stream's message IDs, and the safety state's updates
// are idempotent).
func (r *run) runLevel(ctx workflow.Context, name string, ev domain.AuditEvent) error {
	retry := &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute}
	if r.lean {
		return workflow.ExecuteLocalActivity(workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
			StartToCloseTimeout: 30 * time.Second,
			RetryPolicy:         retry,
		}), name, ev).Get(ctx, nil)
	}
	return workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy:         retry,
	}), name, ev).Get(ctx, nil)
}

func errString(err error) *string {
	if err == nil {
		return nil
	}
	s := errorMessage(err)
	return &s
}

// errorMessage unwraps Temporal's activity error envelope to the cause a
// person needs to read.
func errorMessage(err error) string {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return appErr.Message()
	}
	return err.Error()
}
