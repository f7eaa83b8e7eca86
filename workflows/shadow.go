package workflows

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/runbooks"
)

// Shadow verdicts: what a shadow run's evidence says, in order of weight.
const (
	// VerdictAgreed: a person changed a target the run would have acted
	// on, the way the run would have.
	VerdictAgreed = "agreed"
	// VerdictDisagreed: a person changed such a target another way.
	VerdictDisagreed = "disagreed"
	// VerdictResolvedOnItsOwn: the run would have acted, nobody did, and
	// the alert resolved within the window.
	VerdictResolvedOnItsOwn = "resolved_on_its_own"
	// VerdictUnresolved: the run would have acted, nobody did, and the
	// alert still fired when the window ended.
	VerdictUnresolved = "unresolved"
	// VerdictWouldNotAct: no mutating step would have run.
	VerdictWouldNotAct = "would_not_act"
)

// Evidence is what one shadow run gathered: what it would have done, and
// what happened while it watched instead.
type Evidence struct {
	Verdict string `json:"verdict"`
	// Summary says the verdict in a sentence, for people.
	Summary string `json:"summary"`
	// Planned are the mutating steps a real run would have run, with the
	// parameters it would have used.
	Planned []PlannedAction `json:"planned,omitempty"`
	// Approvals are the approvals a real run would have waited for
	// ("run" for the runbook's own, else the step's name).
	Approvals []string `json:"approvals,omitempty"`
	Window    string   `json:"window"`
	// Resolved: the alert resolved within the window; ResolvedAfter is
	// how long after the run started (when Salve would have acted).
	Resolved      bool   `json:"resolved"`
	ResolvedAfter string `json:"resolvedAfter,omitempty"`
	// Changes are changes people made to the planned steps' targets while
	// the run watched.
	Changes []TargetChange `json:"changes,omitempty"`
	// Verify is how the read-only steps after the first planned action
	// ended: "passed", "failed", or "" when there were none.
	Verify string `json:"verify,omitempty"`
	// Stopped says where a real run would have stopped early: a step
	// that failed (it would then have run its onFailure steps), or the
	// alert's resolution under onResolved: finish or cancel.
	Stopped string `json:"stopped,omitempty"`
	// Cancelled: a person cancelled the shadow run during its watch; the
	// evidence is what it saw until then.
	Cancelled bool `json:"cancelled,omitempty"`
	// Target is the run's safety target ("" when the runbook names
	// none) and Since when its watch began (the run's start): a person's
	// launch of a runbook on that target within the watch is evidence too
	// (internal/trust reads it from the audit log).
	Target string    `json:"target,omitempty"`
	Since  time.Time `json:"since"`
}

// PlannedAction is one mutating step a shadow run did not run.
type PlannedAction struct {
	Step   string         `json:"step"`
	Action string         `json:"action"`
	Params map[string]any `json:"params,omitempty"`
	// Target is the workload the run watched for it ("" when the action
	// has no workload Salve can watch).
	Target string `json:"target,omitempty"`
	// Would is the change the action makes (restarted, scaled, rolled).
	Would string `json:"would,omitempty"`
	// before is the workload's replicas when the step was planned (for a
	// scale to absolute replicas).
	before float64
}

// TargetChange is a change seen on a watched workload.
type TargetChange struct {
	Step   string `json:"step"`
	Target string `json:"target"`
	// Change is restarted, scaled, rolled or changed; Detail says what
	// moved.
	Change string `json:"change"`
	Detail string `json:"detail,omitempty"`
	// BySalve: Salve itself made the change (a real run of another
	// runbook): it is no person's, and weighs nothing.
	BySalve bool `json:"bySalve,omitempty"`
	// Replicas is how many replicas a scale added (negative: removed).
	Replicas float64 `json:"replicas,omitempty"`
}

// Workload changes, as a shadow run classifies them.
const (
	ChangeRestarted = "restarted"
	ChangeScaled    = "scaled"
	ChangeRolled    = "rolled"
	ChangeOther     = "changed"
)

// watchedActions maps the mutating workload actions a shadow run can
// watch to the change each makes. Their params name the workload as
// kubernetes.get does.
var watchedActions = map[string]string{
	"kubernetes.restart":  ChangeRestarted,
	"kubernetes.scale":    ChangeScaled,
	"kubernetes.rollback": ChangeRolled,
}

const kubernetesGet = "kubernetes.get"

// shadowWatch is a planned action's workload and its state before.
type shadowWatch struct {
	action PlannedAction
	get    map[string]any // the kubernetes.get params
	before map[string]any // nil: the read failed
}

// shadow is a shadow run's notebook.
type shadow struct {
	evidence   Evidence
	watches    []shadowWatch
	resolvedAt time.Time
	// afterPlan: a mutating step was planned, so later read-only steps
	// are what a real run would have verified with.
	afterPlan bool
	verify    []string
}

func (r *run) isShadow() bool { return r.in.Runbook.Spec.Safety.Shadow() }

// plannedShadow notes a mutating step a shadow run does not run, and
// reads its workload's state to compare at the end of the watch.
func (r *run) plannedShadow(ctx workflow.Context, s runbooks.Step, params map[string]any) {
	pa := PlannedAction{Step: s.Name, Action: s.Action, Params: params, Would: watchedActions[s.Action]}
	r.shadow.afterPlan = true
	if pa.Would == "" {
		r.shadow.evidence.Planned = append(r.shadow.evidence.Planned, pa)
		return
	}
	get := map[string]any{}
	for _, k := range []string{"cluster", "namespace", "name", "kind"} {
		if v, ok := params[k]; ok {
			get[k] = v
		}
	}
	pa.Target = fmt.Sprintf("%v/%v", get["namespace"], get["name"])
	before, _ := r.readWorkload(ctx, s, get, "before")
	pa.before = number(before["replicas"])
	r.shadow.evidence.Planned = append(r.shadow.evidence.Planned, pa)
	r.shadow.watches = append(r.shadow.watches, shadowWatch{action: pa, get: get, before: before})
}

// readWorkload runs kubernetes.get for a watched step, as a step of its
// own (audited, with the run's credentials).
func (r *run) readWorkload(ctx workflow.Context, s runbooks.Step, get map[string]any, when string) (map[string]any, error) {
	name := s.Name + "#" + when
	var st StepStatus
	err := r.activity(ctx, runbooks.Step{Name: name, Action: kubernetesGet, Timeout: s.Timeout}, get, &st, "")
	if err != nil {
		workflow.GetLogger(ctx).Warn("shadow run could not read its target", "step", name, "error", errorMessage(err))
		return nil, err
	}
	return st.Output, nil
}

// notifyKind is the notify step kind (activities/notify, which workflows
// may not import): it reads nothing, so it verifies nothing.
const notifyKind = "notify"

// onResolvedShadow: under onResolved finish or cancel a real run would
// not start another step once the alert resolved; a shadow run plans no
// more either.
func (r *run) onResolvedShadow() {
	switch r.in.Runbook.Spec.Trigger.OnResolved {
	case runbooks.OnResolvedCancel, runbooks.OnResolvedFinish:
		if !r.finish {
			r.finish = true
			r.status.StopReason = "alert resolved (onResolved: " + r.in.Runbook.Spec.Trigger.OnResolved + ")"
		}
	}
}

// readOnlyDone notes how a read-only step after a planned action ended:
// what a real run's verification would have seen without the action.
func (r *run) readOnlyDone(st StepStatus) {
	if r.shadow.afterPlan && st.State != StepStateSkipped && st.Action != notifyKind {
		r.shadow.verify = append(r.shadow.verify, st.State)
	}
}

// watchShadow waits until the alert resolves or the window ends, looks at
// the watched workloads again, and records the evidence. stepErr is why
// a real run would have stopped at a step. A person's cancel ends the
// watch early: the evidence seen so far is still recorded, and the run
// ends cancelled.
func (r *run) watchShadow(ctx workflow.Context, stepErr error) error {
	window := r.in.Runbook.Spec.Safety.EffectiveShadowWindow()
	ev := &r.shadow.evidence
	ev.Window, ev.Target, ev.Since = window.String(), r.in.Target, r.info.WorkflowStartTime
	switch {
	case stepErr != nil:
		ev.Stopped = stepErr.Error() + ": a real run would have stopped there and run its onFailure steps"
	case r.finish:
		ev.Stopped = r.status.StopReason + ": a real run would have started no further step"
	}
	var cancelled error
	if remaining := r.info.WorkflowStartTime.Add(window).Sub(workflow.Now(ctx)); remaining > 0 && len(ev.Planned) > 0 {
		if _, err := workflow.AwaitWithTimeout(ctx, remaining, func() bool { return !r.shadow.resolvedAt.IsZero() }); err != nil {
			cancelled, ev.Cancelled = err, true
			dctx, cancel := workflow.NewDisconnectedContext(ctx)
			defer cancel()
			ctx = dctx
		}
	}
	if !r.shadow.resolvedAt.IsZero() {
		ev.Resolved = true
		ev.ResolvedAfter = r.shadow.resolvedAt.Sub(r.info.WorkflowStartTime).Round(time.Second).String()
	}
	for _, w := range r.shadow.watches {
		if w.before == nil {
			continue
		}
		after, err := r.readWorkload(ctx, runbooks.Step{Name: w.action.Step}, w.get, "after")
		if err != nil {
			continue
		}
		if c := ClassifyChange(w.before, after); c.Change != "" {
			c.Step, c.Target = w.action.Step, w.action.Target
			ev.Changes = append(ev.Changes, c)
		}
	}
	switch {
	case slices.Contains(r.shadow.verify, StepStateFailed):
		ev.Verify = StepStateFailed
	case len(r.shadow.verify) > 0:
		ev.Verify = "passed"
	}
	ev.Verdict, ev.Summary = verdict(*ev)
	if ev.Stopped != "" {
		ev.Summary += " A real run would have stopped early: " + ev.Stopped + "."
	}
	if ev.Cancelled {
		ev.Summary = "Cancelled during the watch. " + ev.Summary
	}
	r.status.Evidence = ev
	r.auditWith(ctx, domain.ActionShadowEvidence, "", ev.Verdict, nil, r.in.Actor, evidenceDetail(*ev))
	return cancelled
}

// verdict weighs the evidence: what people did outweighs what the alert
// did, which outweighs nothing.
func verdict(ev Evidence) (string, string) {
	if len(ev.Planned) == 0 {
		return VerdictWouldNotAct, "No mutating step would have run."
	}
	would := map[string]string{}
	for _, p := range ev.Planned {
		if p.Would != "" {
			would[p.Step] = p.Would
		}
	}
	var other []string
	for _, c := range ev.Changes {
		if c.BySalve {
			continue
		}
		if would[c.Step] == c.Change && sameDirection(ev, c) {
			return VerdictAgreed, fmt.Sprintf("Would have acted; a person %s %s meanwhile, as step %q would have.", c.Change, c.Target, c.Step)
		}
		other = append(other, fmt.Sprintf("%s %s", c.Change, c.Target))
	}
	if len(other) > 0 {
		return VerdictDisagreed, fmt.Sprintf("Would have acted; a person did something else meanwhile: %s.", strings.Join(other, ", "))
	}
	if ev.Resolved {
		return VerdictResolvedOnItsOwn, fmt.Sprintf("Would have acted; the alert resolved on its own after %s, and nobody changed the target.", ev.ResolvedAfter)
	}
	return VerdictUnresolved, fmt.Sprintf("Would have acted; nobody did, and the alert still fired after %s.", ev.Window)
}

// ClassifyChange compares two kubernetes.get outputs of one workload and
// names the change made, if any (Change ""). A restart also makes a new
// revision, so it is recognised first. A change of Salve's own last-action
// annotation marks the change as Salve's.
func ClassifyChange(before, after map[string]any) TargetChange {
	differs := func(key string) bool { return fmt.Sprint(before[key]) != fmt.Sprint(after[key]) }
	var c TargetChange
	switch {
	case differs("restartedAt"):
		c.Change, c.Detail = ChangeRestarted, fmt.Sprintf("restartedAt %v → %v", orNone(before["restartedAt"]), orNone(after["restartedAt"]))
	case differs("replicas"):
		c.Change, c.Detail = ChangeScaled, fmt.Sprintf("replicas %v → %v", before["replicas"], after["replicas"])
		c.Replicas = number(after["replicas"]) - number(before["replicas"])
	case differs("images"), differs("revision"):
		c.Change, c.Detail = ChangeRolled, fmt.Sprintf("revision %v → %v, images %v → %v", before["revision"], after["revision"], before["images"], after["images"])
	case differs("generation"):
		c.Change, c.Detail = ChangeOther, fmt.Sprintf("generation %v → %v", before["generation"], after["generation"])
	default:
		return c
	}
	if differs("salveAction") {
		c.BySalve, c.Detail = true, c.Detail+", by Salve: "+fmt.Sprint(after["salveAction"])
	}
	return c
}

// sameDirection: a scale agrees only when it went the way the planned
// step would have (delta's sign, or towards its replicas); other changes
// have no direction.
func sameDirection(ev Evidence, c TargetChange) bool {
	if c.Change != ChangeScaled {
		return true
	}
	for _, p := range ev.Planned {
		if p.Step != c.Step {
			continue
		}
		if d, ok := p.Params["delta"]; ok {
			return sign(number(d)) == sign(c.Replicas)
		}
		if r, ok := p.Params["replicas"]; ok {
			return sign(number(r)-p.before) == sign(c.Replicas)
		}
	}
	return true
}

func sign(f float64) int {
	switch {
	case f > 0:
		return 1
	case f < 0:
		return -1
	}
	return 0
}

// number reads a step parameter or output as a number (JSON numbers,
// or the strings templates render); NaN-free: 0 when it is none.
func number(v any) float64 {
	switch n := v.(type) {
	case float64:
		return n
	case int:
		return float64(n)
	case int64:
		return float64(n)
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(fmt.Sprint(v)), 64)
	if err != nil {
		return 0
	}
	return f
}

func orNone(v any) any {
	if v == nil || v == "" {
		return "(none)"
	}
	return v
}

// evidenceDetail flattens the evidence for the audit record: strings
// only, never an annotation, each value bounded.
func evidenceDetail(ev Evidence) map[string]string {
	d := map[string]string{"verdict": ev.Verdict, "summary": ev.Summary, "window": ev.Window,
		"wouldAct": strconv.FormatBool(len(ev.Planned) > 0), "resolved": strconv.FormatBool(ev.Resolved)}
	if ev.ResolvedAfter != "" {
		d["resolvedAfter"] = ev.ResolvedAfter
	}
	var planned, changes []string
	for _, p := range ev.Planned {
		s := p.Step + ":" + p.Action
		if p.Target != "" {
			s += " " + p.Target
		}
		planned = append(planned, s)
	}
	for _, c := range ev.Changes {
		changes = append(changes, c.Step+":"+c.Change+" "+c.Target)
	}
	if len(planned) > 0 {
		d["planned"] = strings.Join(planned, "; ")
	}
	if len(changes) > 0 {
		d["changes"] = strings.Join(changes, "; ")
	}
	if len(ev.Approvals) > 0 {
		d["approvals"] = strings.Join(ev.Approvals, ",")
	}
	if ev.Verify != "" {
		d["verify"] = ev.Verify
	}
	if ev.Target != "" {
		d["target"] = ev.Target
	}
	if ev.Stopped != "" {
		d["stopped"] = ev.Stopped
	}
	if ev.Cancelled {
		d["cancelled"] = "true"
	}
	d["since"] = ev.Since.UTC().Format(time.RFC3339Nano)
	// Targets come from params, which may come from alert labels: bound
	// what each value adds to the audit log.
	for _, k := range workflow.DeterministicKeys(d) {
		d[k] = truncate(d[k], maxEvidenceValue)
	}
	return d
}

// maxEvidenceValue bounds one value of a shadow.evidence record.
const maxEvidenceValue = 1024
