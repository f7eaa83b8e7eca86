package step

import "time"

// TargetActivity is the Temporal activity a run calls to take its target
// (runbook safety.target) when another run held it at admission. Never
// rename it: it is part of history.
const TargetActivity = "safety.acquire_target"

// TargetRequest asks for a target on behalf of a run.
type TargetRequest struct {
	Target     string `json:"target"`
	Runbook    string `json:"runbook"`
	WorkflowID string `json:"workflowId"`
}

// TargetResult says whether the run holds the target now, and if not who
// does.
type TargetResult struct {
	Acquired         bool      `json:"acquired"`
	HolderWorkflowID string    `json:"holderWorkflowId,omitempty"`
	HolderRunbook    string    `json:"holderRunbook,omitempty"`
	HolderSince      time.Time `json:"holderSince,omitzero"`
}
