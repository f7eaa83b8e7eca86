package runs

import (
	"time"

	"github.com/salve-sre/salve/runbooks"
)

// The API's request and response bodies for operating runs. They live here,
// next to the code that does the work, so the server and the CLI's client
// share one definition.

// LaunchRequest is the body of POST /v1/runbooks/{name}/launch.
type LaunchRequest struct {
	Params map[string]string `json:"params,omitempty"`
	// DryRun returns the plan and starts nothing.
	DryRun bool   `json:"dryRun,omitempty"`
	Reason string `json:"reason,omitempty"`
	// IncidentKey names the incident; default "manual-<random>". A running
	// run for the same runbook and key is a conflict, not a join.
	IncidentKey string `json:"incidentKey,omitempty"`
}

// LaunchResult answers a launch: the run started, or the plan of a dry run.
type LaunchResult struct {
	WorkflowID  string         `json:"workflowId,omitempty"`
	RunID       string         `json:"runId,omitempty"`
	Runbook     string         `json:"runbook"`
	IncidentKey string         `json:"incidentKey"`
	URL         string         `json:"url,omitempty"` // the run in the API
	Plan        *runbooks.Plan `json:"plan,omitempty"`
}

// PendingApproval is a run waiting for a person (GET /v1/approvals).
type PendingApproval struct {
	WorkflowID  string `json:"workflowId"`
	RunID       string `json:"runId"`
	Runbook     string `json:"runbook"`
	IncidentKey string `json:"incidentKey"`
	// Step is the step waiting; "" = the whole run, before its first step.
	Step        string    `json:"step,omitempty"`
	RequestedAt time.Time `json:"requestedAt"`
	Deadline    time.Time `json:"deadline"`
	OnTimeout   string    `json:"onTimeout"`
	// LaunchedBy is the subject who launched the run; "" for alert runs.
	LaunchedBy string `json:"launchedBy,omitempty"`
}

// DecisionRequest is the body of POST /v1/runs/{id}/approve and /reject.
type DecisionRequest struct {
	Reason string `json:"reason"`
	// Step, when set, must name the step waiting ("" with RunID set means
	// any): a guard against approving a later step than the one the
	// caller looked at.
	Step string `json:"step,omitempty"`
	// RunID, when set, must be the run waiting: a decision meant for an
	// earlier run of the incident never lands on a later one.
	RunID string `json:"runId,omitempty"`
}

// DecisionResult answers an accepted decision.
type DecisionResult struct {
	WorkflowID string `json:"workflowId"`
	RunID      string `json:"runId"`
	Step       string `json:"step,omitempty"`
	Decision   string `json:"decision"` // "approved" or "rejected"
	By         string `json:"by"`
}

// CancelRequest is the body of POST /v1/runs/{id}/cancel.
type CancelRequest struct {
	Reason string `json:"reason,omitempty"`
	// RunID, when set, must be the run to cancel (default: the latest).
	RunID string `json:"runId,omitempty"`
}

// CancelResult answers an accepted cancel request.
type CancelResult struct {
	WorkflowID string `json:"workflowId"`
	RunID      string `json:"runId"`
	Status     string `json:"status"` // "cancel_requested"
}

// ListFilter selects runs (GET /v1/runs query parameters).
type ListFilter struct {
	Runbook     string    // runbook name
	Status      string    // one of the Status* values
	IncidentKey string    // exact incident key (needs Runbook)
	Since       time.Time // started at or after
}

// RunbookStats summarises a runbook's recent runs.
type RunbookStats struct {
	Runs      int `json:"runs"`
	Succeeded int `json:"succeeded"`
	Failed    int `json:"failed"`
	Running   int `json:"running"`
	// SuccessRate is succeeded / (succeeded + failed) of closed runs; nil
	// when none closed.
	SuccessRate *float64 `json:"successRate"`
}
