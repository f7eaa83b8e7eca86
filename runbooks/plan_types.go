package runbooks

// Plan is what a run of a runbook would do with given params: the answer
// to a dry-run launch. It is computed without running anything.
type Plan struct {
	Runbook     string            `json:"runbook"`
	RunbookHash string            `json:"runbookHash"`
	IncidentKey string            `json:"incidentKey"`
	Mode        string            `json:"mode"` // enforce, dry-run or shadow
	Params      map[string]string `json:"params"`
	Steps       []PlannedStep     `json:"steps"`
	OnFailure   []PlannedStep     `json:"onFailure,omitempty"`
	// Approvals are the approvals the run would wait for, in order.
	Approvals []PlannedApproval `json:"approvals,omitempty"`
	// Credentials are the credentials that would be requested.
	Credentials []PlannedCredential `json:"credentials,omitempty"`
	// Safety lists the safety settings that would apply to the run.
	Safety []SafetyCheck `json:"safety,omitempty"`
	// SLO is the SLO the runbook's policy reads (spec.slo), its burn now,
	// and what a run an alert started now would do; the API fills Now
	// and AlertRun from Prometheus.
	SLO *PlannedSLO `json:"slo,omitempty"`
}

// PlannedSLO is a plan's view of the runbook's SLO policy.
type PlannedSLO struct {
	Name string `json:"name"`
	// Now is the burn read now, with its figures, or why it could not be
	// read.
	Now string `json:"now,omitempty"`
	// AlertRun is what a run an alert started now would do: act,
	// approve or notify. A manual launch acts as launched.
	AlertRun string `json:"alertRun,omitempty"`
}

// PlannedStep is one step of a plan.
type PlannedStep struct {
	Name     string `json:"name"`
	Action   string `json:"action"`
	Mutating bool   `json:"mutating"`
	// With is the step's params rendered with the launch params; outputs
	// of earlier steps are not known yet and render empty.
	With map[string]any `json:"with,omitempty"`
	// When is the step's guard, unevaluated when it reads step outputs.
	When string `json:"when,omitempty"`
	// Credential is the source the step would obtain a credential from.
	Credential string `json:"credential,omitempty"`
	Approval   bool   `json:"approval,omitempty"`
	// Note says what the plan could not know (e.g. a render problem).
	Note string `json:"note,omitempty"`
}

// PlannedApproval is one approval a run would wait for.
type PlannedApproval struct {
	Step      string   `json:"step,omitempty"` // "" = before the first step
	Timeout   Duration `json:"timeout"`
	OnTimeout string   `json:"onTimeout"`
}

// PlannedCredential is one credential a run would request.
type PlannedCredential struct {
	Source string   `json:"source"` // e.g. kubernetes
	Role   string   `json:"role"`
	TTL    Duration `json:"ttl,omitempty"`
	Steps  []string `json:"steps"` // steps that would use it
}

// SafetyCheck is one safety setting that applies to a run.
type SafetyCheck struct {
	Name    string `json:"name"`    // e.g. cooldown
	Setting string `json:"setting"` // e.g. 30m
	// Enforced is false for settings this version parses but does not
	// enforce yet; Setting says when a limit applies.
	Enforced bool `json:"enforced"`
}
