package runbooktest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/salve-sre/salve/activities/step"
	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/internal/snapshot"
	"github.com/salve-sre/salve/runbooks"
	"github.com/salve-sre/salve/triggers"
	"github.com/salve-sre/salve/workflows"
)

// start is the fixed workflow start time, so rendered output never
// depends on when the test ran.
var start = time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC)

// Plan is what a case did: the matches and the run, step by step.
type Plan struct {
	Matches     []string          `yaml:"matches"`
	Runbook     string            `yaml:"runbook,omitempty"`
	IncidentKey string            `yaml:"incidentKey,omitempty"`
	State       string            `yaml:"state,omitempty"`
	Error       string            `yaml:"error,omitempty"`
	Params      map[string]string `yaml:"params,omitempty"`
	Steps       []PlanStep        `yaml:"steps,omitempty"`
	OnFailure   []PlanStep        `yaml:"onFailure,omitempty"`
	Approvals   []string          `yaml:"approvals,omitempty"`
}

// PlanStep is one step as it ran (against the fakes).
type PlanStep struct {
	Name   string         `yaml:"name"`
	Action string         `yaml:"action"`
	State  string         `yaml:"state"`
	With   map[string]any `yaml:"with,omitempty"`
	Error  string         `yaml:"error,omitempty"`
}

// Result is the outcome of one case.
type Result struct {
	File     string
	Case     string
	Plan     Plan
	Failures []string // each "path: want X, got Y"
}

// Passed reports whether the case met every expectation.
func (r Result) Passed() bool { return len(r.Failures) == 0 }

// RunFile runs every case of a test file.
func RunFile(f *File, cat runbooks.StepCatalog) []Result {
	set, err := loadSet(f, cat)
	out := make([]Result, 0, len(f.Tests))
	for _, c := range f.Tests {
		res := Result{File: f.path, Case: c.Name}
		if err != nil {
			res.Failures = []string{err.Error()}
		} else {
			res.Plan, err = runCase(f, c, set, cat)
			if err != nil {
				res.Failures = []string{err.Error()}
				err = nil
			} else {
				res.Failures = compare(c.Expect, res.Plan)
			}
		}
		out = append(out, res)
	}
	return out
}

func loadSet(f *File, cat runbooks.StepCatalog) (*runbooks.Set, error) {
	var rbs []*runbooks.Runbook
	var errs []error
	for _, p := range f.Runbooks {
		path := f.rel(p)
		data, err := os.ReadFile(path)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		rb, err := runbooks.Parse(path, data, cat)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		rbs = append(rbs, rb)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("runbooks under test are invalid:\n%w", err)
	}
	return runbooks.NewSet(rbs...)
}

func (f *File) alert(c Case) (*domain.AlertEvent, error) {
	switch {
	case c.Alert != nil:
		ev := c.Alert.event(start)
		return &ev, nil
	case c.Payload != "":
		body, err := os.ReadFile(f.rel(c.Payload))
		if err != nil {
			return nil, fmt.Errorf("payload: %w", err)
		}
		_, events, err := triggers.DecodeWebhook(body, start)
		if err != nil {
			return nil, fmt.Errorf("payload %s: %w", c.Payload, err)
		}
		if len(events) == 0 {
			return nil, fmt.Errorf("payload %s has no alerts", c.Payload)
		}
		return &events[0], nil
	}
	return nil, nil
}

func runCase(f *File, c Case, set *runbooks.Set, cat runbooks.StepCatalog) (Plan, error) {
	var plan Plan
	alert, err := f.alert(c)
	if err != nil {
		return plan, err
	}
	plan.Matches = []string{}
	var rb *runbooks.Runbook
	if alert != nil {
		for _, m := range set.Match(*alert) {
			plan.Matches = append(plan.Matches, m.Name())
		}
		if alert.Status == domain.StatusResolved {
			// A resolved alert never starts a run; it only reaches one.
			return plan, nil
		}
	}
	switch {
	case c.Runbook != "":
		var ok bool
		if rb, ok = set.Get(c.Runbook); !ok {
			return plan, fmt.Errorf("runbook %q is not among the runbooks under test", c.Runbook)
		}
		if alert != nil && !rb.Matches(alert.Labels) {
			return plan, fmt.Errorf("runbook %q does not match the alert %s", c.Runbook, domain.LabelString(alert.Labels))
		}
	case len(plan.Matches) == 0:
		return plan, nil // nothing runs; Expect.Matches tells whether that is right
	case len(plan.Matches) > 1:
		return plan, fmt.Errorf("%w (%s): say which with runbook:", errAmbiguous, strings.Join(plan.Matches, ", "))
	default:
		rb, _ = set.Get(plan.Matches[0])
	}
	plan.Runbook = rb.Name()
	plan.Approvals = approvals(rb)
	key := c.IncidentKey
	if alert != nil {
		if key, err = rb.IncidentKey(*alert); err != nil {
			return plan, err
		}
	} else if key == "" {
		key = "manual"
	}
	plan.IncidentKey = key
	return plan, execute(&plan, c, rb, alert, key, cat)
}

// approvals lists what would wait for a person.
func approvals(rb *runbooks.Runbook) []string {
	var out []string
	if a := rb.Spec.Safety.Approval; a != nil && a.Required {
		out = append(out, "runbook")
	}
	for _, s := range append(append([]runbooks.Step{}, rb.Spec.Steps...), rb.Spec.OnFailure...) {
		if s.Approval != nil && s.Approval.Required {
			out = append(out, s.Name)
		}
	}
	return out
}

// execute runs the real workflow against recording fakes.
func execute(plan *Plan, c Case, rb *runbooks.Runbook, alert *domain.AlertEvent, key string, cat runbooks.StepCatalog) (err error) {
	defer func() {
		// The test environment panics on some misuse; a runbook test must
		// report it, not crash the whole command.
		if p := recover(); p != nil {
			err = fmt.Errorf("workflow test environment: %v", p)
		}
	}()
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler)))
	env := suite.NewTestWorkflowEnvironment()
	env.SetStartTime(start)
	env.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: rb.WorkflowID(key), TaskQueue: "salve-runbook-test"})
	env.RegisterWorkflowWithOptions(workflows.Runbook, workflow.RegisterOptions{Name: workflows.WorkflowName})
	for _, name := range []string{workflows.AuditActivity, workflows.RecordActivity, workflows.RunFinishedActivity} {
		env.RegisterActivityWithOptions(func(context.Context, domain.AuditEvent) error { return nil },
			activity.RegisterOptions{Name: name})
	}
	env.RegisterActivityWithOptions(func(context.Context, step.HookEvent) error { return nil },
		activity.RegisterOptions{Name: step.HookActivity})

	var mu sync.Mutex
	rendered := map[string]map[string]any{} // idempotency-key suffix -> params
	fake := func(_ context.Context, req step.Request) (step.Result, error) {
		mu.Lock()
		rendered[strings.TrimPrefix(req.IdempotencyKey, req.WorkflowID+"/"+req.RunID+"/")] = req.Params
		mu.Unlock()
		canned := c.Steps[req.Step]
		if canned.Error != "" {
			return step.Result{}, temporal.NewNonRetryableApplicationError(canned.Error, "StepPermanent", nil)
		}
		return step.Result{Output: jsonRoundTrip(canned.Output)}, nil
	}
	for _, kind := range cat.Kinds() {
		env.RegisterActivityWithOptions(fake, activity.RegisterOptions{Name: step.ActivityName(kind)})
	}
	// The run checks its snapshot's signature like any run: sign with a
	// key of this test only.
	signer := snapshot.Random()
	env.RegisterActivityWithOptions(func(_ context.Context, rb runbooks.Runbook, sig string) error { return signer.Verify(rb, sig) },
		activity.RegisterOptions{Name: workflows.VerifyActivity})
	env.RegisterActivityWithOptions(func(_ context.Context, rb runbooks.Runbook, sig string) (step.Prepared, error) {
		return step.Prepared{HookEvents: step.HookEvents}, signer.Verify(rb, sig)
	}, activity.RegisterOptions{Name: workflows.PrepareActivity})
	sig, err := signer.Sign(*rb)
	if err != nil {
		return err
	}
	if alert != nil && c.ResolveAfter > 0 {
		resolved := *alert
		resolved.Status = domain.StatusResolved
		resolved.ID = domain.AlertEventID(resolved.Fingerprint, resolved.Status, resolved.StartsAt)
		resolved.ReceivedAt = start.Add(c.ResolveAfter.D())
		env.RegisterDelayedCallback(func() { env.SignalWorkflow(workflows.SignalAlert, resolved) }, c.ResolveAfter.D())
	}

	if len(approvals(rb)) > 0 {
		if err := answerApprovals(env, c, rb); err != nil {
			return err
		}
	}
	env.ExecuteWorkflow(workflows.Runbook, workflows.Input{
		Runbook:          *rb,
		RunbookSignature: sig,
		IncidentKey:      key,
		Alert:            alert,
		Params:           c.Params,
		Actor:            domain.Actor{Kind: domain.ActorUser, Name: "runbook-test"},
		Revision:         workflows.CurrentRevision,
	})
	if !env.IsWorkflowCompleted() {
		return errors.New("the run did not complete")
	}
	var st workflows.Status
	if werr := env.GetWorkflowError(); werr == nil {
		if err := env.GetWorkflowResult(&st); err != nil {
			return err
		}
	} else {
		v, err := env.QueryWorkflow(workflows.QueryStatus)
		if err != nil {
			return fmt.Errorf("run failed (%v) and its status cannot be read: %w", werr, err)
		}
		if err := v.Get(&st); err != nil {
			return err
		}
	}
	plan.State, plan.Error, plan.Params = st.State, st.Error, st.Params
	plan.Steps = planSteps(st.Steps, rendered, "")
	plan.OnFailure = planSteps(st.OnFailure, rendered, "/onFailure")
	return nil
}

// Decisions a test case can give an approval.
const (
	decideApprove = "approve"
	decideReject  = "reject"
	decideTimeout = "timeout"
)

// answerApprovals decides each approval the run waits for, as the case
// says. The environment cannot tell a callback when an approval starts, so
// a callback looks every second of workflow time (which the test
// environment skips through instantly).
func answerApprovals(env *testsuite.TestWorkflowEnvironment, c Case, rb *runbooks.Runbook) error {
	for name, d := range c.Decisions {
		if d != decideApprove && d != decideReject && d != decideTimeout {
			return fmt.Errorf("decisions.%s: %q is not approve, reject or timeout", name, d)
		}
	}
	// The approver is someone the runbook's access list allows.
	approver := domain.Actor{Kind: domain.ActorUser, Name: "runbook-test-approver"}
	var groups []string
	if list := rb.Spec.Access.Approvers; len(list) > 0 {
		if g, ok := strings.CutPrefix(list[0], runbooks.GroupPrefix); ok {
			groups = []string{g}
		} else {
			approver.Name = list[0]
		}
	}
	var look func()
	decided := map[string]bool{}
	look = func() {
		v, err := env.QueryWorkflow(workflows.QueryStatus)
		var st workflows.Status
		if err == nil && v.Get(&st) == nil && st.Approval != nil {
			key := st.Approval.Step
			if key == "" {
				key = "runbook"
			}
			if d := c.Decisions[key]; !decided[key] && d != decideTimeout {
				decided[key] = true
				env.UpdateWorkflow(workflows.UpdateApproval, "", &testsuite.TestUpdateCallback{
					OnAccept: func() {}, OnReject: func(error) {}, OnComplete: func(any, error) {},
				}, workflows.Decision{Approve: d != decideReject, Step: st.Approval.Step, Reason: "runbook test decision", Actor: approver, Groups: groups})
			}
		}
		env.RegisterDelayedCallback(look, time.Second)
	}
	env.RegisterDelayedCallback(look, time.Second)
	return nil
}

func planSteps(steps []workflows.StepStatus, rendered map[string]map[string]any, suffix string) []PlanStep {
	out := make([]PlanStep, len(steps))
	for i, s := range steps {
		out[i] = PlanStep{Name: s.Name, Action: s.Action, State: s.State, With: rendered[s.Name+suffix], Error: s.Error}
	}
	return out
}

// jsonRoundTrip gives canned outputs the shape real outputs have after
// crossing Temporal (numbers become float64).
func jsonRoundTrip(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return m
	}
	var out map[string]any
	if json.Unmarshal(b, &out) != nil {
		return m
	}
	return out
}

// compare lists every way the plan differs from what the case expects.
func compare(e Expect, p Plan) []string {
	var out []string
	diff := func(path string, want, got any) {
		out = append(out, fmt.Sprintf("%s: want %s, got %s", path, show(want), show(got)))
	}
	if e.Matches != nil {
		want := append([]string{}, *e.Matches...)
		sort.Strings(want)
		if !reflect.DeepEqual(want, p.Matches) {
			diff("matches", want, p.Matches)
		}
	}
	if e.IncidentKey != "" && e.IncidentKey != p.IncidentKey {
		diff("incidentKey", e.IncidentKey, p.IncidentKey)
	}
	if e.State != "" && e.State != p.State {
		diff("state", e.State, p.State)
	}
	if e.Error != "" && !strings.Contains(p.Error, e.Error) {
		out = append(out, fmt.Sprintf("error: want it to contain %q, got %q", e.Error, p.Error))
	}
	for _, k := range slices.Sorted(maps.Keys(e.Params)) {
		if got, ok := p.Params[k]; !ok || got != e.Params[k] {
			diff("params."+k, e.Params[k], p.Params[k])
		}
	}
	if e.Steps != nil {
		out = append(out, compareSteps("steps", *e.Steps, p.Steps)...)
	}
	if e.OnFailure != nil {
		out = append(out, compareSteps("onFailure", *e.OnFailure, p.OnFailure)...)
	}
	if e.Approvals != nil && !reflect.DeepEqual(emptyIfNil(*e.Approvals), emptyIfNil(p.Approvals)) {
		diff("approvals", emptyIfNil(*e.Approvals), emptyIfNil(p.Approvals))
	}
	return out
}

func compareSteps(base string, want []ExpectStep, got []PlanStep) []string {
	var out []string
	names := func(steps []PlanStep) []string {
		n := make([]string, len(steps))
		for i, s := range steps {
			n[i] = s.Name
		}
		return n
	}
	wantNames := make([]string, len(want))
	for i, s := range want {
		wantNames[i] = s.Name
	}
	if !reflect.DeepEqual(wantNames, names(got)) {
		out = append(out, fmt.Sprintf("%s: want steps %s, got %s", base, show(wantNames), show(names(got))))
	}
	for i := 0; i < len(want) && i < len(got); i++ {
		w, g := want[i], got[i]
		path := fmt.Sprintf("%s[%d] (%s)", base, i, w.Name)
		if w.Action != "" && w.Action != g.Action {
			out = append(out, fmt.Sprintf("%s.action: want %s, got %s", path, show(w.Action), show(g.Action)))
		}
		if w.State != "" && w.State != g.State {
			msg := fmt.Sprintf("%s.state: want %s, got %s", path, show(w.State), show(g.State))
			if g.Error != "" {
				msg += " (" + g.Error + ")"
			}
			out = append(out, msg)
		}
		if w.With != nil {
			wj, gj := jsonRoundTrip(w.With), jsonRoundTrip(g.With)
			for _, k := range slices.Sorted(maps.Keys(union(wj, gj))) {
				if !reflect.DeepEqual(wj[k], gj[k]) {
					out = append(out, fmt.Sprintf("%s.with.%s: want %s, got %s", path, k, show(wj[k]), show(gj[k])))
				}
			}
		}
	}
	return out
}

func show(v any) string {
	if v == nil {
		return "(nothing)"
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

func emptyIfNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func union(a, b map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}
