package runbooks

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"github.com/salve-sre/salve/internal/domain"
)

// Plan computes what a run would do, without running anything: params are
// resolved and checked (a bad param is an ErrParams error, as for a real
// run), step params are rendered with outputs of earlier steps left empty,
// and the approvals, credentials and safety settings that would apply are
// listed. alert is nil for a manual launch.
func (r *Runbook) Plan(cat StepCatalog, workflowID, incidentKey string, alert *domain.AlertEvent, launch map[string]string) (*Plan, error) {
	params, err := r.ResolveParams(alert, launch)
	if err != nil {
		return nil, err
	}
	data := TemplateData{
		Params: params,
		Steps:  map[string]StepData{},
		Run:    RunData{Runbook: r.Name(), WorkflowID: workflowID, IncidentKey: incidentKey},
	}
	if alert != nil {
		data.Alert, data.Labels, data.Annotations = *alert, alert.Labels, alert.Annotations
	}
	mode := r.Spec.Safety.Mode
	if mode == "" {
		mode = ModeEnforce
	}
	p := &Plan{Runbook: r.Name(), RunbookHash: r.Hash, IncidentKey: incidentKey, Mode: mode, Params: params}
	if a := r.Spec.Safety.Approval; a != nil && a.Required {
		p.Approvals = append(p.Approvals, plannedApproval("", a))
	}
	creds := map[string]*PlannedCredential{}
	for _, name := range slices.Sorted(maps.Keys(r.Spec.Credentials)) {
		c := r.Spec.Credentials[name]
		role, err := RenderString(c.VaultRole, data)
		if err != nil {
			return nil, fmt.Errorf("credentials.%s.vaultRole: %w", name, err)
		}
		creds[name] = &PlannedCredential{Source: name, Role: role, TTL: c.TTL, Steps: []string{}}
	}
	plan := func(steps []Step) []PlannedStep {
		out := make([]PlannedStep, 0, len(steps))
		for _, s := range steps {
			ps := PlannedStep{Name: s.Name, Action: s.Action, When: s.When}
			if spec, ok := cat.Lookup(s.Action); ok {
				ps.Mutating = spec.Mutating
				ps.Credential = spec.Credential
			}
			if ps.Credential != "" {
				c, ok := creds[ps.Credential]
				if !ok {
					// No role in the runbook: the worker's default role.
					c = &PlannedCredential{Source: ps.Credential, Role: "(the worker's default role)", Steps: []string{}}
					creds[ps.Credential] = c
				}
				c.Steps = append(c.Steps, s.Name)
			}
			with, err := RenderLenient(s.With, data)
			if err != nil {
				ps.With, ps.Note = s.With, "params could not be rendered before the run: "+err.Error()
			} else {
				ps.With = with
			}
			if s.Approval != nil && s.Approval.Required {
				ps.Approval = true
				p.Approvals = append(p.Approvals, plannedApproval(s.Name, s.Approval))
			}
			switch {
			case mode == ModeDryRun && ps.Mutating:
				ps.Note = "dry-run mode: would not act"
			case mode == ModeShadow && ps.Mutating:
				ps.Note = "shadow mode: records what it would do, does not act"
			}
			out = append(out, ps)
		}
		return out
	}
	p.Steps = plan(r.Spec.Steps)
	p.OnFailure = plan(r.Spec.OnFailure)
	for _, name := range slices.Sorted(maps.Keys(creds)) {
		if len(creds[name].Steps) > 0 {
			p.Credentials = append(p.Credentials, *creds[name])
		}
	}
	p.Safety = r.safetyChecks()
	if r.Spec.SLO != nil {
		p.SLO = &PlannedSLO{Name: r.Spec.SLO.Name}
	}
	return p, nil
}

func plannedApproval(stepName string, a *Approval) PlannedApproval {
	d := approvalDefaults(a)
	return PlannedApproval{Step: stepName, Timeout: d.Timeout, OnTimeout: d.OnTimeout}
}

// alertRunsOnly marks limits the trigger enforces on alert-triggered runs;
// a person's manual launch is not held back by them.
const alertRunsOnly = " (alert-triggered runs; not manual launches)"

// safetyChecks lists the safety settings that apply to a run, and says
// which this version enforces.
func (r *Runbook) safetyChecks() []SafetyCheck {
	s := r.Spec.Safety
	out := []SafetyCheck{{Name: "one run per incident", Setting: "workflow ID salve/" + r.Name() + "/<incident key>", Enforced: true}}
	if !s.Acts() {
		out = append(out, SafetyCheck{Name: "mode", Setting: s.Mode, Enforced: true})
	}
	if s.Cooldown > 0 {
		out = append(out, SafetyCheck{Name: "cooldown", Setting: s.Cooldown.String() + alertRunsOnly, Enforced: true})
	}
	if s.MaxRunsPerHour > 0 {
		out = append(out, SafetyCheck{Name: "maxRunsPerHour", Setting: strconv.Itoa(s.MaxRunsPerHour) + alertRunsOnly, Enforced: true})
	}
	if s.MaxConcurrent > 0 {
		out = append(out, SafetyCheck{Name: "maxConcurrent", Setting: strconv.Itoa(s.MaxConcurrent) + alertRunsOnly, Enforced: true})
	}
	if s.MaxRunsPerDay > 0 {
		out = append(out, SafetyCheck{Name: "maxRunsPerDay", Setting: strconv.Itoa(s.MaxRunsPerDay) + alertRunsOnly, Enforced: true})
	}
	if s.Target != "" {
		l := s.LockPolicy()
		out = append(out, SafetyCheck{Name: "targetLock", Setting: fmt.Sprintf("target %s, onBusy %s, maxWait %s", s.Target, l.OnBusy, l.MaxWait) + alertRunsOnly, Enforced: true})
	}
	if b := s.BlastRadius; b != nil {
		out = append(out, SafetyCheck{Name: "blastRadius", Setting: fmt.Sprintf("%d targets in %s, onExceed %s", b.MaxTargets, b.Window, cmp.Or(b.OnExceed, BlastRefuse)) + alertRunsOnly, Enforced: true})
	}
	if s.RespectSilences {
		out = append(out, SafetyCheck{Name: "respectSilences", Setting: "Alertmanager silences" + alertRunsOnly, Enforced: true})
	}
	if cb := s.CircuitBreaker; cb != nil {
		out = append(out, SafetyCheck{Name: "circuitBreaker", Setting: fmt.Sprintf("%d failures in %s", cb.Failures, cb.Window) + alertRunsOnly, Enforced: true})
	}
	if p := r.Spec.SLO; p != nil {
		out = append(out, SafetyCheck{Name: "slo", Setting: fmt.Sprintf("%s: fast burn → %s, slow burn → %s, otherwise → %s, burn unknown → %s", p.Name,
			p.Action("fast"), p.Action("slow"), p.Action("none"), p.Action("unknown")) + alertRunsOnly, Enforced: true})
	}
	if a := r.Spec.Access; len(a.Launchers)+len(a.Approvers) > 0 || a.AllowSelfApproval {
		out = append(out, SafetyCheck{Name: "access", Setting: fmt.Sprintf("launchers %v, approvers %v, allowSelfApproval %t", a.Launchers, a.Approvers, a.AllowSelfApproval), Enforced: true})
	}
	return out
}
