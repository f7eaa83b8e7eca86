// Package step is the contract between runbooks, the workflow and the code
// that performs each action: a step kind is a Spec in a Registry, called as
// the Temporal activity ActivityName(kind). It stays free of Temporal, NATS
// and network imports so that workflows and validation can use it.
package step

import (
	"context"
	"errors"
	"time"
)

// Errors an Executor returns (wrapped) to say a retry cannot help. The
// activity adapter maps them to non-retryable Temporal errors in one place.
var (
	ErrInvalidParams = errors.New("invalid step parameters")
	ErrPermanent     = errors.New("permanent step failure")
)

// Request is what one step attempt receives. Params are already rendered
// from templates; they never contain credentials.
type Request struct {
	WorkflowID string         `json:"workflowId"`
	RunID      string         `json:"runId"`
	Runbook    string         `json:"runbook"`
	Step       string         `json:"step"`
	Kind       string         `json:"kind"`
	Params     map[string]any `json:"params"`
	// IdempotencyKey is <workflowID>/<runID>/<step> (plus "/onFailure" for
	// compensation): the same for every attempt, so a mutating executor can
	// make a retried attempt safe.
	IdempotencyKey string `json:"idempotencyKey"`
	// Credentials are the credentials the runbook selects, by source
	// ("kubernetes"): which role to ask for, never a secret. The executor
	// of a kind that needs one obtains it for this attempt alone.
	Credentials map[string]CredentialRef `json:"credentials,omitempty"`
	// DryRun asks for the plan only: a mutating kind must not act.
	DryRun bool `json:"dryRun,omitempty"`
	// ScheduledAt is when the workflow first scheduled the step: the same
	// for every retry. The adapter sets it; it is not part of history.
	// Executors use it to tell their own earlier attempt's effects (e.g.
	// pods created since) from the world as it was.
	ScheduledAt time.Time `json:"-"`
}

// CredentialRef names the credential a step asks its source for.
type CredentialRef struct {
	Role string        `json:"role"`
	TTL  time.Duration `json:"ttl,omitempty"`
}

// Result is what a step hands to later steps ({{ .Steps.<name>.Output.x }}).
type Result struct {
	Output map[string]any `json:"output,omitempty"`
	// Attempt is the attempt that succeeded (1 = the first); the adapter
	// sets it.
	Attempt int32 `json:"attempt,omitempty"`
}

// Executor performs one step kind.
type Executor interface {
	Execute(ctx context.Context, req Request) (Result, error)
}

// ExecutorFunc adapts a function to Executor.
type ExecutorFunc func(ctx context.Context, req Request) (Result, error)

// Execute calls f.
func (f ExecutorFunc) Execute(ctx context.Context, r Request) (Result, error) { return f(ctx, r) }

// Spec describes a step kind.
type Spec struct {
	Kind       string      // "http.request"
	Summary    string      // one line, for `salve runbook steps` and docs
	Params     ParamSchema // checked when runbooks load, not mid-incident
	Mutating   bool        // carries an idempotency key; approval and blast-radius policies apply
	Credential string      // credential source it needs; "" = none
	Executor   Executor
}

// ActivityName is the stable Temporal activity type of a step kind: renaming
// Go code never changes workflow history.
func ActivityName(kind string) string { return "step." + kind }

// PermanentStatus reports whether an HTTP answer with this status will not
// change on retry: a 4xx other than 408 (request timeout) and 429 (too
// many requests). The one rule for every step kind that calls HTTP.
func PermanentStatus(code int) bool {
	return code >= 400 && code < 500 && code != 408 && code != 429
}
