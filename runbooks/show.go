package runbooks

import (
	"bytes"
	"fmt"
	"time"

	"gopkg.in/yaml.v3"
)

// Defaults the workflow applies to activity steps without a retry policy.
const (
	DefaultInitialInterval = time.Second
	DefaultMaxInterval     = time.Minute
)

// WithDefaults returns a copy of the runbook with every default written
// out, so people see exactly what runs.
func WithDefaults(rb *Runbook) Runbook {
	out := *rb
	spec := rb.Spec
	if len(spec.Trigger.Matchers) > 0 {
		if spec.Trigger.IncidentKey == "" {
			spec.Trigger.IncidentKey = "{{ .Alert.Fingerprint }}"
		}
		if spec.Trigger.OnResolved == "" {
			spec.Trigger.OnResolved = OnResolvedIgnore
		}
	}
	params := make(map[string]Param, len(spec.Params))
	for k, p := range spec.Params {
		p.Type = p.typeOf()
		params[k] = p
	}
	if len(params) > 0 {
		spec.Params = params
	}
	if spec.Safety.Mode == "" {
		spec.Safety.Mode = ModeEnforce
	}
	spec.Safety.Approval = approvalDefaults(spec.Safety.Approval)
	spec.Steps = stepDefaults(spec.Steps)
	spec.OnFailure = stepDefaults(spec.OnFailure)
	out.Spec = spec
	return out
}

func approvalDefaults(a *Approval) *Approval {
	if a == nil || !a.Required {
		return a
	}
	c := a.Effective()
	return &c
}

// Effective is the approval as it runs: its timeout and what happens then,
// defaults filled in. The one home of these defaults: the workflow, the
// dashboard and `salve runbook show` all read them here.
func (a Approval) Effective() Approval {
	if a.Timeout <= 0 {
		a.Timeout = Duration(DefaultApprovalTimeout)
	}
	if a.OnTimeout == "" {
		a.OnTimeout = ApprovalTimeoutFail
	}
	return a
}

func stepDefaults(steps []Step) []Step {
	if steps == nil {
		return nil
	}
	out := make([]Step, len(steps))
	for i, s := range steps {
		out[i] = s.Effective()
	}
	return out
}

// Effective is the step as it runs, defaults filled in: its approval's,
// and for an activity (every action but sleep) its timeout and retry
// policy. The workflow schedules steps from it; `salve runbook show`
// prints it.
func (s Step) Effective() Step {
	s.Approval = approvalDefaults(s.Approval)
	if s.Action == ActionSleep {
		return s
	}
	if s.Timeout <= 0 {
		s.Timeout = Duration(DefaultStepTimeout)
	}
	r := Retry{}
	if s.Retry != nil {
		r = *s.Retry
	}
	if r.MaxAttempts <= 0 {
		r.MaxAttempts = DefaultMaxAttempts
	}
	if r.InitialInterval <= 0 {
		r.InitialInterval = Duration(DefaultInitialInterval)
	}
	if r.MaxInterval <= 0 {
		r.MaxInterval = Duration(DefaultMaxInterval)
	}
	s.Retry = &r
	return s
}

// Show renders a runbook with its defaults as YAML, headed by where it came
// from and its content hash.
func Show(rb *Runbook) ([]byte, error) {
	full := WithDefaults(rb)
	var b bytes.Buffer
	fmt.Fprintf(&b, "# %s from %s (sha256 %s), with defaults filled in\n", rb.Name(), rb.Source, rb.Hash)
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(full); err != nil {
		return nil, err
	}
	return b.Bytes(), enc.Close()
}

// MarshalYAML writes "30s".
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }
