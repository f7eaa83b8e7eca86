// Package runbooks defines Salve's runbook language (apiVersion salve/v1):
// strict parsing with file:line errors, validation against the step
// registry, trigger matching, and the deterministic template rendering the
// workflow uses. It must stay deterministic: no clocks, I/O beyond Parse's
// input, network or Temporal client imports (see the import-rule test).
package runbooks

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/alertmanager/pkg/labels"
	"github.com/salve-sre/salve/internal/domain"
	"gopkg.in/yaml.v3"
)

// APIVersion and Kind every runbook file declares.
const (
	APIVersion = "salve/v1"
	Kind       = "Runbook"
)

// ActionSleep is the built-in step that waits on a durable workflow timer
// rather than running an activity.
const ActionSleep = "sleep"

// Runbook is one parsed runbook. The workflow receives a copy of it (a
// snapshot) at start, so editing files never changes a running run.
type Runbook struct {
	APIVersion string   `yaml:"apiVersion" json:"apiVersion"`
	Kind       string   `yaml:"kind" json:"kind"`
	Metadata   Metadata `yaml:"metadata" json:"metadata"`
	Spec       Spec     `yaml:"spec" json:"spec"`

	// Source and Hash are set by Parse: the file it came from and the
	// sha256 of its bytes, which names this version in audit events.
	Source string `yaml:"-" json:"source,omitempty"`
	Hash   string `yaml:"-" json:"hash,omitempty"`

	matchers labels.Matchers
}

// Metadata names and describes a runbook.
type Metadata struct {
	Name        string            `yaml:"name" json:"name"`
	Description string            `yaml:"description,omitempty" json:"description,omitempty"`
	Owner       string            `yaml:"owner,omitempty" json:"owner,omitempty"`
	Labels      map[string]string `yaml:"labels,omitempty" json:"labels,omitempty"`
}

// Spec is what a runbook does and when.
type Spec struct {
	Trigger Trigger          `yaml:"trigger,omitempty" json:"trigger"`
	Params  map[string]Param `yaml:"params,omitempty" json:"params,omitempty"`
	Toil    Toil             `yaml:"toil,omitempty" json:"toil"`
	Safety  Safety           `yaml:"safety,omitempty" json:"safety"`
	// Access narrows who may launch and approve this runbook's runs,
	// beyond what their role allows.
	Access Access `yaml:"access,omitempty" json:"access"`
	// Credentials says which credential each source issues for this
	// runbook's steps, e.g. kubernetes: {vaultRole: 'salve-{{ .Params.namespace }}'}.
	Credentials map[string]Credential `yaml:"credentials,omitempty" json:"credentials,omitempty"`
	Steps       []Step                `yaml:"steps" json:"steps"`
	OnFailure   []Step                `yaml:"onFailure,omitempty" json:"onFailure,omitempty"`
	// SLO makes an alert's new run act by how fast the named SLO's error
	// budget burns, read from Prometheus when the run would start.
	SLO *SLOPolicy `yaml:"slo,omitempty" json:"slo,omitempty"`
}

// SLOPolicy is what a new run does at each speed of the SLO's budget
// burn: act (as the runbook says), approve (wait for a person first) or
// notify (plan the mutating steps, run only the read-only ones, such as
// notify). The speeds are the generated alerts' own conditions: fast =
// the page alert's, slow = the ticket alert's.
type SLOPolicy struct {
	// Name is the SLO (metadata.name of a kind: SLO file next to the
	// runbooks).
	Name       string `yaml:"name" json:"name"`
	OnFastBurn string `yaml:"onFastBurn,omitempty" json:"onFastBurn,omitempty"` // default act
	OnSlowBurn string `yaml:"onSlowBurn,omitempty" json:"onSlowBurn,omitempty"` // default approve
	Otherwise  string `yaml:"otherwise,omitempty" json:"otherwise,omitempty"`   // default notify
	// OnUnknown applies when the figures cannot be read (Prometheus down,
	// no data): default approve.
	OnUnknown string `yaml:"onUnknown,omitempty" json:"onUnknown,omitempty"`
}

// What a run does under an SLO policy.
const (
	SLOAct     = "act"
	SLOApprove = "approve"
	SLONotify  = "notify"
)

// Action is what the policy says at a burn speed (fast, slow, none or
// unknown), with the defaults filled in.
func (p SLOPolicy) Action(speed string) string {
	pick := func(v, def string) string {
		if v == "" {
			return def
		}
		return v
	}
	switch speed {
	case "fast":
		return pick(p.OnFastBurn, SLOAct)
	case "slow":
		return pick(p.OnSlowBurn, SLOApprove)
	case "none":
		return pick(p.Otherwise, SLONotify)
	}
	return pick(p.OnUnknown, SLOApprove)
}

// Trigger says which alerts start this runbook and how they group into
// incidents.
type Trigger struct {
	// Matchers in Alertmanager syntax; all must match. None = manual only.
	Matchers []string `yaml:"matchers,omitempty" json:"matchers,omitempty"`
	// IncidentKey is a template over the alert; alerts with the same key
	// share one run. Default: the alert fingerprint.
	IncidentKey string `yaml:"incidentKey,omitempty" json:"incidentKey,omitempty"`
	// OnResolved says what a running run does when its alert resolves:
	// ignore (default: finish what was started, verify steps included),
	// finish (run no further steps; the run succeeds) or cancel (stop the
	// current step; onFailure compensation runs; the run is cancelled).
	OnResolved string `yaml:"onResolved,omitempty" json:"onResolved,omitempty"`
}

// What a running run does when its alert resolves.
const (
	OnResolvedIgnore = "ignore"
	OnResolvedFinish = "finish"
	OnResolvedCancel = "cancel"
)

// Param is one runbook parameter, filled from launch params, the alert's
// labels or annotations, or its default, in that order.
//
// Values reach templates as strings ({{ .Params.replicas }}), but are
// checked against Type and the bounds first, so a bad value fails before
// any step runs.
type Param struct {
	Description    string `yaml:"description,omitempty" json:"description,omitempty"`
	Type           string `yaml:"type,omitempty" json:"type,omitempty"` // string (default), int, bool, duration, enum
	FromLabel      string `yaml:"fromLabel,omitempty" json:"fromLabel,omitempty"`
	FromAnnotation string `yaml:"fromAnnotation,omitempty" json:"fromAnnotation,omitempty"`
	Default        string `yaml:"default,omitempty" json:"default,omitempty"`
	Required       bool   `yaml:"required,omitempty" json:"required,omitempty"`
	// Values lists the allowed values of an enum.
	Values []string `yaml:"values,omitempty" json:"values,omitempty"`
	// Min and Max bound an int (e.g. 1) or a duration (e.g. 30s).
	Min string `yaml:"min,omitempty" json:"min,omitempty"`
	Max string `yaml:"max,omitempty" json:"max,omitempty"`
	// Pattern is a regular expression a string must match in full.
	Pattern string `yaml:"pattern,omitempty" json:"pattern,omitempty"`
}

// Parameter types.
const (
	ParamString   = "string"
	ParamInt      = "int"
	ParamBool     = "bool"
	ParamDuration = "duration"
	ParamEnum     = "enum"
	// ParamDNSLabel is an RFC 1123 label (a Kubernetes namespace);
	// ParamK8sName an RFC 1123 subdomain (most Kubernetes object names).
	ParamDNSLabel = "dnsLabel"
	ParamK8sName  = "k8sName"
)

// ParamTypes lists the parameter types in documentation order.
var ParamTypes = []string{ParamString, ParamInt, ParamBool, ParamDuration, ParamEnum, ParamDNSLabel, ParamK8sName}

// Toil is what a person would spend doing the runbook by hand.
type Toil struct {
	ManualMinutes float64 `yaml:"manualMinutes,omitempty" json:"manualMinutes,omitempty"`
}

// Credential selects the credential a source issues for each step attempt
// that needs it. It names a role, never a secret.
type Credential struct {
	// VaultRole is a template over params, e.g. 'salve-{{ .Params.namespace }}'.
	VaultRole string `yaml:"vaultRole" json:"vaultRole"`
	// TTL of the issued credential; default the step timeout plus a margin.
	TTL Duration `yaml:"ttl,omitempty" json:"ttl,omitempty"`
}

// Safety is the runbook's safety envelope. It is parsed and validated
// here; the trigger and the workflow enforce it.
type Safety struct {
	// Mode "dry-run" runs the full plan without mutating anything; mode
	// "shadow" does too, takes no place from real runs, and then watches
	// what happens (see ShadowWindow) to gather evidence for promotion.
	Mode string `yaml:"mode,omitempty" json:"mode,omitempty"`
	// ShadowWindow is how long a shadow run watches its alert and targets
	// after planning: until the alert resolves or this much time after
	// the run started (default DefaultShadowWindow).
	ShadowWindow Duration `yaml:"shadowWindow,omitempty" json:"shadowWindow,omitempty"`
	// Cooldown suppresses a new run for an incident key for this long after
	// the previous run for it finished.
	Cooldown       Duration        `yaml:"cooldown,omitempty" json:"cooldown,omitempty"`
	MaxRunsPerHour int             `yaml:"maxRunsPerHour,omitempty" json:"maxRunsPerHour,omitempty"`
	MaxRunsPerDay  int             `yaml:"maxRunsPerDay,omitempty" json:"maxRunsPerDay,omitempty"`
	MaxConcurrent  int             `yaml:"maxConcurrent,omitempty" json:"maxConcurrent,omitempty"`
	CircuitBreaker *CircuitBreaker `yaml:"circuitBreaker,omitempty" json:"circuitBreaker,omitempty"`
	Approval       *Approval       `yaml:"approval,omitempty" json:"approval,omitempty"`
	// Target names what a run acts on, as a template over params and
	// labels, e.g. '{{ .Params.cluster }}/{{ .Params.namespace }}/{{ .Params.deployment }}'.
	// Runs of any runbook with the same target never act at once, and
	// BlastRadius counts distinct targets.
	Target     string      `yaml:"target,omitempty" json:"target,omitempty"`
	TargetLock *TargetLock `yaml:"targetLock,omitempty" json:"targetLock,omitempty"`
	// BlastRadius bounds how many distinct targets the runbook acts on
	// within a window.
	BlastRadius *BlastRadius `yaml:"blastRadius,omitempty" json:"blastRadius,omitempty"`
	// RespectSilences: a run is not started while an Alertmanager silence
	// matches the alert (needs the alertmanager URL in Salve's config).
	RespectSilences bool `yaml:"respectSilences,omitempty" json:"respectSilences,omitempty"`
}

// TargetLock says what a run does when another run holds its target.
type TargetLock struct {
	// OnBusy is "wait" (default: the run starts and waits, bounded by
	// MaxWait, before its first step) or "suppress" (no run).
	OnBusy string `yaml:"onBusy,omitempty" json:"onBusy,omitempty"`
	// MaxWait bounds the wait; default DefaultTargetLockWait. A run that
	// waited this long fails without acting.
	MaxWait Duration `yaml:"maxWait,omitempty" json:"maxWait,omitempty"`
}

// Target lock policies.
const (
	TargetBusyWait        = "wait"
	TargetBusySuppress    = "suppress"
	DefaultTargetLockWait = 10 * time.Minute
)

// BlastRadius bounds the distinct targets of a runbook within Window.
type BlastRadius struct {
	MaxTargets int      `yaml:"maxTargets" json:"maxTargets"`
	Window     Duration `yaml:"window" json:"window"`
	// OnExceed is "refuse" (default: no run) or "approve" (the run waits
	// for a person's approval first).
	OnExceed string `yaml:"onExceed,omitempty" json:"onExceed,omitempty"`
}

// Blast radius policies.
const (
	BlastRefuse  = "refuse"
	BlastApprove = "approve"
)

// LockPolicy returns the target lock policy with its defaults.
func (s Safety) LockPolicy() TargetLock {
	l := TargetLock{OnBusy: TargetBusyWait, MaxWait: Duration(DefaultTargetLockWait)}
	if s.TargetLock != nil {
		if s.TargetLock.OnBusy != "" {
			l.OnBusy = s.TargetLock.OnBusy
		}
		if s.TargetLock.MaxWait > 0 {
			l.MaxWait = s.TargetLock.MaxWait
		}
	}
	return l
}

// Run modes.
const (
	ModeEnforce = "enforce"
	ModeDryRun  = "dry-run"
	ModeShadow  = "shadow"
	// DefaultShadowWindow and MaxShadowWindow bound a shadow run's watch.
	DefaultShadowWindow = 30 * time.Minute
	MaxShadowWindow     = 24 * time.Hour
)

// DryRun reports whether the runbook is in dry-run mode.
func (s Safety) DryRun() bool { return s.Mode == ModeDryRun }

// Shadow reports whether the runbook is in shadow mode.
func (s Safety) Shadow() bool { return s.Mode == ModeShadow }

// WorkflowID names the one run of the runbook for an incident: a shadow
// runbook's runs have IDs of their own (domain.ShadowWorkflowID).
func (r *Runbook) WorkflowID(incidentKey string) string {
	if r.Spec.Safety.Shadow() {
		return domain.ShadowWorkflowID(r.Name(), incidentKey)
	}
	return domain.WorkflowID(r.Name(), incidentKey)
}

// Acts reports whether the runbook's runs may change anything: not in
// dry-run or shadow mode.
func (s Safety) Acts() bool { return !s.DryRun() && !s.Shadow() }

// EffectiveShadowWindow is the shadow window with its default.
func (s Safety) EffectiveShadowWindow() time.Duration {
	if s.ShadowWindow > 0 {
		return s.ShadowWindow.D()
	}
	return DefaultShadowWindow
}

// CircuitBreaker stops a runbook acting after Failures failed runs within
// Window, until an admin resets it.
type CircuitBreaker struct {
	Failures int      `yaml:"failures" json:"failures"`
	Window   Duration `yaml:"window" json:"window"`
}

// Access lists who may launch and approve runs of one runbook. Entries are
// token subjects ("alice") or groups ("group:sre"). Empty lists leave it to
// the caller's role.
type Access struct {
	Launchers []string `yaml:"launchers,omitempty" json:"launchers,omitempty"`
	Approvers []string `yaml:"approvers,omitempty" json:"approvers,omitempty"`
	// AllowSelfApproval lets the person who launched a run approve it. Off
	// by default: an approval is a second pair of eyes.
	AllowSelfApproval bool `yaml:"allowSelfApproval,omitempty" json:"allowSelfApproval,omitempty"`
}

// Approval makes a run (or one step) wait for a person.
type Approval struct {
	Required bool `yaml:"required" json:"required"`
	// Timeout bounds the wait; default DefaultApprovalTimeout.
	Timeout Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	// OnTimeout is "fail" (default) or "continue".
	OnTimeout string `yaml:"onTimeout,omitempty" json:"onTimeout,omitempty"`
}

// Approval timeouts and what happens when they pass.
const (
	DefaultApprovalTimeout = 15 * time.Minute
	ApprovalTimeoutFail    = "fail"
	ApprovalTimeoutGoOn    = "continue"
)

// Step is one action of a runbook.
type Step struct {
	Name            string         `yaml:"name" json:"name"`
	Action          string         `yaml:"action" json:"action"`
	With            map[string]any `yaml:"with,omitempty" json:"with,omitempty"`
	When            string         `yaml:"when,omitempty" json:"when,omitempty"`
	Timeout         Duration       `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	Retry           *Retry         `yaml:"retry,omitempty" json:"retry,omitempty"`
	ContinueOnError bool           `yaml:"continueOnError,omitempty" json:"continueOnError,omitempty"`
	// Approval makes this step wait for a person before it acts.
	Approval *Approval `yaml:"approval,omitempty" json:"approval,omitempty"`
}

// Retry bounds how a failed step attempt is retried.
type Retry struct {
	MaxAttempts     int      `yaml:"maxAttempts,omitempty" json:"maxAttempts,omitempty"`
	InitialInterval Duration `yaml:"initialInterval,omitempty" json:"initialInterval,omitempty"`
	MaxInterval     Duration `yaml:"maxInterval,omitempty" json:"maxInterval,omitempty"`
}

// Defaults applied when a step leaves them out.
const (
	DefaultStepTimeout = time.Minute
	DefaultMaxAttempts = 3
	MaxMaxAttempts     = 100
)

// Name returns the runbook's name.
func (r *Runbook) Name() string { return r.Metadata.Name }

// NeedsApproval reports whether a run of r waits for a person at any
// point: the runbook's own approval, or any step's — onFailure steps
// included. The workflow, the plan, the API and the dashboard all ask
// this one rule.
func (r *Runbook) NeedsApproval() bool {
	if a := r.Spec.Safety.Approval; a != nil && a.Required {
		return true
	}
	for _, steps := range [][]Step{r.Spec.Steps, r.Spec.OnFailure} {
		for _, s := range steps {
			if s.Approval != nil && s.Approval.Required {
				return true
			}
		}
	}
	return false
}

// Matches reports whether an alert with these labels triggers the runbook.
// A runbook without matchers is launched by hand only.
func (r *Runbook) Matches(lset map[string]string) bool {
	if len(r.matchers) == 0 {
		return false
	}
	for _, m := range r.matchers {
		if !m.Matches(lset[m.Name]) {
			return false
		}
	}
	return true
}

// Duration is a time.Duration written as "30s" in YAML and JSON.
type Duration time.Duration

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String is the duration as written in runbooks, e.g. 30m0s.
func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalYAML accepts Go duration strings.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	// A *yaml.TypeError with the line lets yaml.v3 carry on and report the
	// file's other problems too.
	var s string
	if err := n.Decode(&s); err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: want a duration such as \"30s\"", n.Line)}}
	}
	v, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil || v < 0 {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: want a duration such as \"30s\", got %q", n.Line, s)}}
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes "30s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads "30s".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// IsZero lets omitempty drop unset durations.
func (d Duration) IsZero() bool { return d == 0 }
