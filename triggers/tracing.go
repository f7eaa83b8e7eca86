package triggers

import (
	"context"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/salve-sre/salve/internal/bus"
	"github.com/salve-sre/salve/internal/safety"
	"github.com/salve-sre/salve/internal/tracing"
)

// startSpan starts the span of one alert's business with one runbook, in
// the alert's trace (the webhook's, through the message's headers).
func (t *Trigger) startSpan(ctx context.Context, p part) (context.Context, trace.Span) {
	ev := p.in.Event
	if p.in.Parent.IsValid() {
		ctx = trace.ContextWithRemoteSpanContext(ctx, p.in.Parent)
	}
	attrs := []attribute.KeyValue{
		tracing.AttrAlertID.String(ev.ID),
		tracing.AttrAlertname.String(ev.Name()),
		tracing.AttrAlertStatus.String(ev.Status),
	}
	name := "trigger"
	if p.rb != nil {
		name = "trigger " + p.rb.Name()
		attrs = append(attrs, tracing.AttrRunbook.String(p.rb.Name()), tracing.AttrRunbookHash.String(p.rb.Hash),
			tracing.AttrIncidentKey.String(p.key), tracing.AttrWorkflowID.String(p.wfID))
	}
	ctx, span := tracing.StartProcess(ctx, bus.SubjectAlerts, bus.TriggerDurable, nil, attrs...)
	span.SetName(name)
	return ctx, span
}

// runTraces remembers the trace each run this process started is in, so
// an alert that joins the run (or is suppressed while it goes) shows on
// that trace too. Memory only and bounded: after a restart, or for a run
// another trigger started, the join is in the alert's own trace alone.
type runTraces struct {
	mu   sync.Mutex
	runs map[string]runTrace
}

type runTrace struct {
	runID string
	sc    trace.SpanContext
}

const maxRunTraces = 100_000

func (r *runTraces) remember(workflowID, runID string, sc trace.SpanContext) {
	if !sc.IsValid() {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.runs == nil || len(r.runs) >= maxRunTraces {
		r.runs = map[string]runTrace{}
	}
	r.runs[workflowID] = runTrace{runID: runID, sc: sc}
}

// of is the trace of the incident's latest run this process started; with
// runID set, only if that is the run.
func (r *runTraces) of(workflowID, runID string) trace.SpanContext {
	r.mu.Lock()
	defer r.mu.Unlock()
	rt := r.runs[workflowID]
	if runID != "" && rt.runID != runID {
		return trace.SpanContext{} // another process started a later run
	}
	return rt.sc
}

// onRunTrace records what an alert did to a run (joined it, or was
// suppressed while it went) as a short span on the run's trace, linked to
// the alert's own span in ctx.
func (t *Trigger) onRunTrace(ctx context.Context, workflowID, what string, attrs ...attribute.KeyValue) {
	t.onRunTraceOf(ctx, workflowID, "", what, attrs...)
}

// onRunTraceOf is onRunTrace for a known run: nothing unless it is the
// run this process remembers.
func (t *Trigger) onRunTraceOf(ctx context.Context, workflowID, runID, what string, attrs ...attribute.KeyValue) {
	run := t.traces.of(workflowID, runID)
	if !run.IsValid() {
		return
	}
	alert := trace.SpanContextFromContext(ctx)
	trace.SpanFromContext(ctx).AddLink(trace.Link{SpanContext: run, Attributes: []attribute.KeyValue{attribute.String("salve.link", "incident run")}})
	_, span := tracing.Tracer().Start(trace.ContextWithRemoteSpanContext(context.WithoutCancel(ctx), run), "alert "+what,
		trace.WithLinks(trace.Link{SpanContext: alert, Attributes: []attribute.KeyValue{attribute.String("salve.link", "alert")}}),
		trace.WithAttributes(attrs...))
	span.End()
}

// traceRefusal records on the alert's span why the safety envelope
// started no run for it, and on the incident's run trace that the alert
// joined it or was held back while it went.
func (t *Trigger) traceRefusal(ctx context.Context, workflowID string, joined bool, adm safety.Admission) {
	if joined {
		t.onRunTrace(ctx, workflowID, "joined")
		return
	}
	// The check only: its reason can quote alert data (a parameter that
	// did not resolve, a rendered target, a silence's comment). It is in
	// the audit record.
	attrs := []attribute.KeyValue{tracing.AttrCheck.String(adm.Check)}
	trace.SpanFromContext(ctx).AddEvent("suppressed", trace.WithAttributes(attrs...))
	t.onRunTrace(ctx, workflowID, "suppressed", attrs...)
}

// maxJoinLinks bounds the links of one batch's join span: a storm's batch
// of 256 repeats needs a sample to be followed, not every one.
const maxJoinLinks = 64

// startJoinSpan starts the span of a batch of repeats joining their
// running run in one signal: in the first alert's trace, linked to the
// others', and shown on the run's trace.
func (t *Trigger) startJoinSpan(ctx context.Context, parts []part, idx []int) (context.Context, trace.Span) {
	first := parts[idx[0]]
	var links []trace.Link
	for _, j := range idx[1:] {
		if sc := parts[j].in.Parent; sc.IsValid() && len(links) < maxJoinLinks {
			links = append(links, trace.Link{SpanContext: sc})
		}
	}
	if first.in.Parent.IsValid() {
		ctx = trace.ContextWithRemoteSpanContext(ctx, first.in.Parent)
	}
	ctx, span := tracing.StartProcess(ctx, bus.SubjectAlerts, bus.TriggerDurable, nil,
		tracing.AttrRunbook.String(first.rb.Name()), tracing.AttrIncidentKey.String(first.key), tracing.AttrWorkflowID.String(first.wfID),
		tracing.AttrDecision.String(DecisionJoined), attribute.Int("salve.alerts", len(idx)))
	span.SetName("trigger " + first.rb.Name() + " (joins)")
	for _, l := range links {
		span.AddLink(l)
	}
	return ctx, span
}
