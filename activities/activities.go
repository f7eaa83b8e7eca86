// Package activities turns step executors into Temporal activities: it
// writes the step's audit events around the action, refuses to act when the
// "started" event cannot be written, and maps executor errors to Temporal's
// retry semantics in one place.
package activities

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/salve-sre/salve/activities/egress"
	"github.com/salve-sre/salve/activities/httpreq"
	"github.com/salve-sre/salve/activities/kube"
	"github.com/salve-sre/salve/activities/notify"
	"github.com/salve-sre/salve/activities/promql"
	"github.com/salve-sre/salve/activities/step"
	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/internal/tracing"
	"github.com/salve-sre/salve/runbooks"
)

// AuditRecorder stores audit events durably; internal/audit implements it.
type AuditRecorder interface {
	Record(ctx context.Context, ev domain.AuditEvent) error
}

// Config is what step kinds need from Salve's configuration. The zero
// value is enough to validate runbooks: it only matters when steps run.
type Config struct {
	// PrometheusURL is the default Prometheus for prometheus.* steps.
	PrometheusURL string
	// Kube hands out Kubernetes clients per step attempt; nil = no
	// cluster configured (kubernetes.* steps fail and say so).
	Kube kube.Clients
	// Secrets resolves secret references (http.request secretHeaders);
	// nil = none configured.
	Secrets httpreq.Secrets
	// Notify sends notify steps; nil = no targets configured (notify
	// steps fail and say so).
	Notify *notify.Notifier
	// Egress limits the hosts http.request and prometheus.* steps call;
	// nil = any host but link-local and metadata addresses.
	Egress *egress.Policy
}

// NewRegistry builds the registry of every step kind this build knows,
// for validation and tests.
func NewRegistry() (*step.Registry, error) { return NewRegistryWith(Config{}) }

// NewRegistryWith builds the registry for a worker. Adding a kind is one
// package and one line here.
func NewRegistryWith(cfg Config) (*step.Registry, error) {
	reg := step.NewRegistry()
	specs := []step.Spec{httpreq.SpecWith(httpreq.Options{Client: cfg.Egress.Client(), Secrets: cfg.Secrets})}
	specs = append(specs, promql.Specs(promql.Options{URL: cfg.PrometheusURL, Client: cfg.Egress.Client(), Heartbeat: activity.RecordHeartbeat})...)
	specs = append(specs, kube.Specs(kube.Options{Clients: cfg.Kube, Heartbeat: activity.RecordHeartbeat})...)
	specs = append(specs, cfg.Notify.Spec())
	for _, s := range specs {
		if err := reg.Register(s); err != nil {
			return nil, err
		}
	}
	return reg, nil
}

// Metrics observes the worker; internal/metrics implements it.
type Metrics interface {
	// StepFinished is one step attempt's executor call: outcome is
	// succeeded, failed or planned (a mutating step in dry-run mode, not
	// run: took is 0).
	StepFinished(ctx context.Context, kind, outcome string, took time.Duration)
	// AuditRecorded is a run-level audit event the workflow had stored
	// (run.finished, approval decisions, ...).
	AuditRecorded(ev domain.AuditEvent)
}

// SafetyState learns when runs finish; internal/safety implements it.
type SafetyState interface {
	Finished(ctx context.Context, runbook, workflowID, outcome string, at time.Time) error
}

// Activities adapts a registry's executors to Temporal activities.
type Activities struct {
	reg   *step.Registry
	audit AuditRecorder
	log   *slog.Logger
	// Metrics, when set (before the worker starts), observes steps and
	// run-level audit events; nil = none.
	Metrics Metrics
	// Safety, when set, learns of every finished run; nil = no safety
	// state to keep.
	Safety SafetyState
	// Targets, when set, takes targets for runs that wait for one
	// (step.TargetActivity).
	Targets func(ctx context.Context, req step.TargetRequest) (step.TargetResult, error)
	// VerifySnapshot checks a run's runbook snapshot against its signature
	// (internal/snapshot). Nil: every run is refused, since nothing can
	// tell Salve's runbooks from forged ones.
	VerifySnapshot func(rb runbooks.Runbook, signature string) error
	// HookEvents says which run-level events some notification hook
	// wants for a runbook. Nil: every event (hooks are always called).
	HookEvents func(runbook string) []string
}

// VerifyRunbook is the local activity behind workflows.VerifyActivity. A
// failed check is final: a retry cannot make a forged runbook genuine.
func (a *Activities) VerifyRunbook(ctx context.Context, rb runbooks.Runbook, signature string) error {
	if a.VerifySnapshot == nil {
		return temporal.NewNonRetryableApplicationError("this worker has no runbook signing key: it runs no runbook", "RunbookNotSigned", nil)
	}
	if err := a.VerifySnapshot(rb, signature); err != nil {
		return temporal.NewNonRetryableApplicationError(err.Error(), "RunbookNotSigned", nil)
	}
	return nil
}

// Prepare is the local activity behind workflows.PrepareActivity: the
// signature check of VerifyRunbook, and the hook events the run must
// report.
func (a *Activities) Prepare(ctx context.Context, rb runbooks.Runbook, signature string) (step.Prepared, error) {
	if err := a.VerifyRunbook(ctx, rb, signature); err != nil {
		return step.Prepared{}, err
	}
	if a.HookEvents == nil {
		return step.Prepared{HookEvents: step.HookEvents}, nil
	}
	return step.Prepared{HookEvents: a.HookEvents(rb.Name())}, nil
}

// AcquireTarget is the activity behind step.TargetActivity.
func (a *Activities) AcquireTarget(ctx context.Context, req step.TargetRequest) (step.TargetResult, error) {
	if a.Targets == nil {
		return step.TargetResult{}, errors.New("this worker keeps no safety state: it cannot take target locks")
	}
	return a.Targets(ctx, req)
}

// New returns the adapter.
func New(reg *step.Registry, audit AuditRecorder, log *slog.Logger) *Activities {
	return &Activities{reg: reg, audit: audit, log: log}
}

// Record is the activity behind workflows.RecordActivity: it records a
// run-level audit event, and only that.
func (a *Activities) Record(ctx context.Context, ev domain.AuditEvent) error {
	if err := a.audit.Record(ctx, ev); err != nil {
		return fmt.Errorf("record audit event %s: %w", ev.Action, err)
	}
	if a.Metrics != nil {
		a.Metrics.AuditRecorded(ev)
	}
	return nil
}

// RunFinished is the activity behind workflows.RunFinishedActivity: it
// applies the run.finished event ev to the safety state — frees the run's
// place, starts its cooldown, counts a failure for the circuit breaker.
// Idempotent, so a retry applies it once.
func (a *Activities) RunFinished(ctx context.Context, ev domain.AuditEvent) error {
	if a.Safety == nil {
		return nil
	}
	if err := a.Safety.Finished(ctx, ev.Runbook, ev.WorkflowID, ev.Outcome, ev.Time); err != nil {
		return fmt.Errorf("apply the finished run to the safety state: %w", err)
	}
	return nil
}

// Audit is the activity behind workflows.AuditActivity, which runs of
// revision 2 and earlier call (in flight, or replayed): it records ev and,
// for run.finished, also does what RunFinished does, as those runs
// expect. Later runs call Record and RunFinished.
func (a *Activities) Audit(ctx context.Context, ev domain.AuditEvent) error {
	if err := a.audit.Record(ctx, ev); err != nil {
		return fmt.Errorf("record audit event %s: %w", ev.Action, err)
	}
	if ev.Action == domain.ActionRunFinished {
		if err := a.RunFinished(ctx, ev); err != nil {
			return err
		}
	}
	if a.Metrics != nil {
		a.Metrics.AuditRecorded(ev)
	}
	return nil
}

// Step returns the activity function for one step kind.
func (a *Activities) Step(kind string) (func(ctx context.Context, req step.Request) (step.Result, error), error) {
	spec, ok := a.reg.Lookup(kind)
	if !ok {
		return nil, fmt.Errorf("unknown step kind %q", kind)
	}
	return func(ctx context.Context, req step.Request) (step.Result, error) {
		return a.run(ctx, spec, req)
	}, nil
}

func (a *Activities) run(ctx context.Context, spec step.Spec, req step.Request) (step.Result, error) {
	info := activity.GetInfo(ctx)
	req.ScheduledAt = info.ScheduledTime
	attempt := strconv.Itoa(int(info.Attempt))
	log := a.log.With("workflow_id", req.WorkflowID, "step", req.Step, "kind", req.Kind, "attempt", attempt)
	if tracing.Enabled() {
		// The span is Temporal's RunActivity span, in the run's trace.
		mode := "act"
		if req.DryRun {
			mode = "dry_run"
		}
		span := trace.SpanFromContext(ctx)
		span.SetAttributes(tracing.PipelineRun(req.Runbook, req.WorkflowID, req.RunID)...)
		span.SetAttributes(tracing.PipelineTask(req.Step, req.Kind, req.IdempotencyKey)...)
		span.SetAttributes(tracing.AttrMode.String(mode), attribute.Int("salve.attempt", int(info.Attempt)))
	}
	ev := func(action, outcome string, err error) domain.AuditEvent {
		e := domain.AuditEvent{
			ID:         req.WorkflowID + "/" + req.RunID + "/" + req.Step + "/" + attempt + "/" + action,
			Time:       time.Now().UTC(),
			Actor:      domain.Actor{Kind: domain.ActorSystem, Name: "worker"},
			Action:     action,
			Runbook:    req.Runbook,
			WorkflowID: req.WorkflowID,
			RunID:      req.RunID,
			Step:       req.Step,
			Outcome:    outcome,
			Detail:     map[string]string{"kind": req.Kind, "attempt": attempt},
		}
		if err != nil {
			e.Error = err.Error()
		}
		return e
	}

	// Dry-run mode: a mutating step records what it would have done and
	// acts on nothing. Read-only kinds run, so the plan sees real state.
	if req.DryRun && spec.Mutating {
		if err := a.audit.Record(ctx, ev(domain.ActionStepPlanned, "dry-run", nil)); err != nil {
			return step.Result{}, fmt.Errorf("record planned step: %w", err)
		}
		log.InfoContext(ctx, "dry run: mutating step not run")
		a.stepFinished(ctx, spec.Kind, "planned", 0)
		return step.Result{Output: map[string]any{"dryRun": true}}, nil
	}
	// No audit record, no action: a step whose start cannot be recorded
	// does not touch anything. The attempt fails and Temporal retries it.
	if err := a.audit.Record(ctx, ev(domain.ActionStepStarted, "", nil)); err != nil {
		return step.Result{}, fmt.Errorf("record step start (step not run): %w", err)
	}
	start := time.Now()
	res, err := spec.Executor.Execute(ctx, req)
	took := time.Since(start)
	// The outcome is recorded even if the activity's context has ended,
	// but a slow record must not outlast the activity's own deadline: a
	// result that comes too late is discarded and a step that acted would
	// be run again. So the record stops a second before the deadline
	// (or gets a few seconds when that has passed: the result is lost
	// anyway, the record is not).
	recordBy := time.Now().Add(15 * time.Second)
	if dl, ok := ctx.Deadline(); ok {
		recordBy = dl.Add(-time.Second)
		if min := time.Now().Add(3 * time.Second); ctx.Err() != nil && recordBy.Before(min) {
			recordBy = min
		}
	}
	actx, cancelRecord := context.WithDeadline(context.WithoutCancel(ctx), recordBy)
	defer cancelRecord()
	if err != nil {
		log.WarnContext(ctx, "step failed", "error", err)
		a.stepFinished(ctx, spec.Kind, "failed", took)
		if aerr := a.audit.Record(actx, ev(domain.ActionStepFailed, "failed", err)); aerr != nil {
			log.ErrorContext(ctx, "audit step failure", "error", aerr)
		}
		return step.Result{}, temporalError(err, info.Attempt)
	}
	if aerr := a.audit.Record(actx, ev(domain.ActionStepSucceeded, "succeeded", nil)); aerr != nil {
		// The action happened; failing now would make Temporal retry it.
		log.ErrorContext(ctx, "audit step success", "error", aerr)
	}
	log.InfoContext(ctx, "step succeeded")
	a.stepFinished(ctx, spec.Kind, "succeeded", took)
	res.Attempt = info.Attempt
	return res, nil
}

func (a *Activities) stepFinished(ctx context.Context, kind, outcome string, took time.Duration) {
	if a.Metrics != nil {
		a.Metrics.StepFinished(ctx, kind, outcome, took)
	}
}

// temporalError is the one place that maps executor errors to retry
// semantics: input errors and permanent failures are not retried. The
// attempt number rides along as the error's detail, so the run's timeline
// can say how many attempts a failed step took.
func temporalError(err error, attempt int32) error {
	if errors.Is(err, step.ErrInvalidParams) || errors.Is(err, step.ErrPermanent) {
		return temporal.NewNonRetryableApplicationError(err.Error(), "StepPermanent", nil, attempt)
	}
	return temporal.NewApplicationError(err.Error(), "StepFailed", attempt)
}
