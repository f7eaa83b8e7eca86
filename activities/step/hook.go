package step

import "time"

// HookActivity is the Temporal activity the workflow calls at run-level
// events (started, needs approval, finished, ...). The worker sends the
// event to every configured notification hook that wants it; with none
// configured it does nothing. Never rename it: it is part of history.
const HookActivity = "notify.hook"

// Run-level events a hook can subscribe to.
const (
	HookStarted          = "started"
	HookApprovalNeeded   = "approval_needed"
	HookApprovalTimedOut = "approval_timed_out"
	HookSucceeded        = "succeeded"
	HookFailed           = "failed"
	HookCancelled        = "cancelled"
	HookRejected         = "rejected"
)

// HookEvents lists every event, in the order a run can meet them.
var HookEvents = []string{HookStarted, HookApprovalNeeded, HookApprovalTimedOut, HookSucceeded, HookFailed, HookCancelled, HookRejected}

// HookEvent is what the workflow hands the hook activity. Like every
// activity input it is in history: it never carries secrets.
type HookEvent struct {
	Event       string    `json:"event"`
	Time        time.Time `json:"time"`
	Runbook     string    `json:"runbook"`
	WorkflowID  string    `json:"workflowId"`
	RunID       string    `json:"runId"`
	IncidentKey string    `json:"incidentKey"`
	// Step is the step waiting for approval ("" = the whole run).
	Step string `json:"step,omitempty"`
	// State is the run's state when the event happened.
	State string `json:"state"`
	// Error is why the run failed, or the rejection reason.
	Error string `json:"error,omitempty"`
	// Actor is who launched, approved or rejected ("" for alert runs).
	Actor string `json:"actor,omitempty"`
	// Summary is one human line, e.g. "needs approval before step scale".
	Summary string `json:"summary,omitempty"`
}

// Prepared is what a run learns from its worker before it starts
// (workflows.PrepareActivity): the run-level events some notification
// hook wants for its runbook. A run schedules no hook activity for the
// others.
type Prepared struct {
	HookEvents []string `json:"hookEvents,omitempty"`
}
