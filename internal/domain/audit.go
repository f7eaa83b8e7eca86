package domain

import "time"

// Audit actions. Names are stable: they are stored, filtered on and exported.
const (
	ActionAlertAccepted     = "alert.accepted"
	ActionAlertTruncated    = "alert.truncated"
	ActionAlertUndecodable  = "alert.undecodable"
	ActionTriggerMatched    = "trigger.matched"
	ActionTriggerNoMatch    = "trigger.no_match"
	ActionTriggerSuppressed = "trigger.suppressed"
	ActionTriggerFailed     = "trigger.failed"  // no retry can fix it: parked for a person
	ActionTriggerRetried    = "trigger.retried" // a person sent a parked alert back
	ActionRunStarted        = "run.started"
	ActionRunJoined         = "run.joined"
	ActionRunSignalled      = "run.signalled"
	ActionRunFinished       = "run.finished"
	ActionRunRefused        = "run.refused" // its runbook snapshot was not signed by Salve: nothing ran
	ActionStepStarted       = "step.started"
	ActionStepSucceeded     = "step.succeeded"
	ActionStepFailed        = "step.failed"
	ActionStepSkipped       = "step.skipped"
	ActionStepPlanned       = "step.planned" // a mutating step not run: dry-run mode
	ActionRunbookLoaded     = "runbook.loaded"
	ActionRunbookRejected   = "runbook.rejected"
	ActionRunbookRemoved    = "runbook.removed"

	ActionApprovalRequested = "approval.requested"
	ActionApprovalGranted   = "approval.granted"
	ActionApprovalRejected  = "approval.rejected"
	ActionApprovalTimedOut  = "approval.timed_out"
	ActionApprovalSkipped   = "approval.skipped"          // the alert resolved while waiting (onResolved: finish)
	ActionRunLaunched       = "run.launched"              // a person launched a run (API)
	ActionRunPlanned        = "run.planned"               // a person asked for a dry-run plan
	ActionRunCancelRequest  = "run.cancel_requested"      // a person asked to cancel a run
	ActionAuthDenied        = "auth.denied"               // an API request was refused (401/403)
	ActionRunbookReload     = "runbook.reload_requested"  // a person asked to re-read the runbooks
	ActionBreakerReset      = "breaker.reset"             // an admin closed a runbook's circuit breaker
	ActionTargetWaiting     = "target.waiting"            // a run waits for another run to release its target
	ActionTargetAcquired    = "target.acquired"           // a waiting run took its target
	ActionShadowEvidence    = "shadow.evidence"           // what a shadow run would have done, and what happened instead
	ActionRunbookPromoted   = "runbook.promoted"          // an admin promoted a runbook a rung up the trust ladder
	ActionPromotionRefused  = "runbook.promotion_refused" // a promotion below the evidence threshold, without an override

	ActionCredentialIssued       = "credential.issued"
	ActionCredentialRevoked      = "credential.revoked"
	ActionCredentialRevokeFailed = "credential.revoke_failed"
)

// Actor kinds: who caused an action.
const (
	ActorSystem = "system"
	ActorAlert  = "alert"
	ActorUser   = "user"
)

// Actor is who or what caused an audited action.
type Actor struct {
	Kind string `json:"kind"`
	Name string `json:"name,omitempty"`
}

// AuditEvent is one audited action. ID is deterministic for the action it
// records, so an event published twice (retries, redelivery, replays) is
// stored once.
type AuditEvent struct {
	ID          string            `json:"id"`
	Time        time.Time         `json:"time"`
	Actor       Actor             `json:"actor"`
	Action      string            `json:"action"`
	Runbook     string            `json:"runbook,omitempty"`
	RunbookHash string            `json:"runbookHash,omitempty"`
	WorkflowID  string            `json:"workflowId,omitempty"`
	RunID       string            `json:"runId,omitempty"`
	IncidentKey string            `json:"incidentKey,omitempty"`
	Step        string            `json:"step,omitempty"`
	Target      string            `json:"target,omitempty"`
	Outcome     string            `json:"outcome,omitempty"`
	Error       string            `json:"error,omitempty"`
	Detail      map[string]string `json:"detail,omitempty"`
}
