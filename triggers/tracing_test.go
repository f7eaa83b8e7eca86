package triggers_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/internal/safety"
	"github.com/salve-sre/salve/internal/tracing"
	"github.com/salve-sre/salve/internal/tracing/tracingtest"
	"github.com/salve-sre/salve/runbooks"
	"github.com/salve-sre/salve/triggers"
)

// tracingStarter starts runs as internal/runs does with tracing on: in a
// span of its own, whose traceparent the result carries.
type tracingStarter struct{ *fakeStarter }

func (s tracingStarter) StartOrJoin(ctx context.Context, req triggers.StartRequest) (triggers.StartResult, error) {
	ctx, span := tracing.Tracer().Start(ctx, "StartWorkflow:Runbook")
	defer span.End()
	res, err := s.fakeStarter.StartOrJoin(ctx, req)
	if res.Started {
		res.Trace = tracing.Traceparent(ctx)
	}
	return res, err
}

func attrs(s tracetest.SpanStub) map[string]string {
	out := map[string]string{}
	for _, a := range s.Attributes {
		out[string(a.Key)] = a.Value.Emit()
	}
	return out
}

// The trigger's span is in the alert's trace; a repeat that joins the run
// shows on the run's trace, linked both ways.
func TestTriggerSpans(t *testing.T) {
	exp := tracingtest.Record(t)
	set := testSet(t, restartRunbook)
	st := tracingStarter{&fakeStarter{running: map[string]bool{}}}
	tr := &triggers.Trigger{Runbooks: triggers.StaticRunbooks{Set: set}, Starter: st, Audit: &fakeAudit{}, Log: slog.New(slog.DiscardHandler)}
	t0 := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	labels := map[string]string{"alertname": "Crash", "severity": "warning", "namespace": "shop", "deployment": "cart"}

	// Each alert arrives in the trace of its own webhook.
	ctx1, hook1 := tracing.Tracer().Start(context.Background(), "webhook 1")
	require.NoError(t, tr.Handle(ctx1, alert("firing", labels, t0)))
	hook1.End()
	ctx2, hook2 := tracing.Tracer().Start(context.Background(), "webhook 2")
	require.NoError(t, tr.Handle(ctx2, alert("firing", labels, t0.Add(time.Minute))))
	hook2.End()

	spans := tracingtest.Named(exp, "trigger restart")
	require.Len(t, spans, 2)
	started, joined := spans[0], spans[1]
	require.Equal(t, hook1.SpanContext().SpanID(), started.Parent.SpanID())
	require.Equal(t, trace.SpanKindConsumer, started.SpanKind)
	a := attrs(started)
	require.Equal(t, "started", a["salve.decision"])
	require.Equal(t, "shop/cart", a["salve.incident_key"])
	require.Equal(t, "restart", a["salve.runbook"])
	require.Equal(t, "nats", a["messaging.system"])
	require.Equal(t, hook2.SpanContext().SpanID(), joined.Parent.SpanID())
	require.Equal(t, "joined", attrs(joined)["salve.decision"])

	start := tracingtest.Named(exp, "StartWorkflow:Runbook")[0]
	require.Equal(t, started.SpanContext.SpanID(), start.Parent.SpanID())
	// The join, on the run's trace, linked to the alert's span.
	onRun := tracingtest.Named(exp, "alert joined")
	require.Len(t, onRun, 1)
	require.Equal(t, start.SpanContext.TraceID(), onRun[0].SpanContext.TraceID())
	require.Equal(t, start.SpanContext.SpanID(), onRun[0].Parent.SpanID())
	require.Len(t, onRun[0].Links, 1)
	require.Equal(t, joined.SpanContext.SpanID(), onRun[0].Links[0].SpanContext.SpanID())
	// And the alert's span links to the run's.
	require.Contains(t, links(joined), start.SpanContext.SpanID())

	// The run ends; the cooldown holds the next alert back. The alert's
	// span says which check did (never its reason, which may quote the
	// alert), and the incident's last run's trace shows it.
	st.mu.Lock()
	st.running = map[string]bool{}
	st.mu.Unlock()
	tr.Guard = refusingGuard{}
	ctx3, hook3 := tracing.Tracer().Start(context.Background(), "webhook 3")
	require.NoError(t, tr.Handle(ctx3, alert("firing", labels, t0.Add(2*time.Minute))))
	hook3.End()
	third := tracingtest.Named(exp, "trigger restart")[2]
	require.Equal(t, "suppressed", attrs(third)["salve.decision"])
	require.Len(t, third.Events, 1)
	require.Equal(t, "suppressed", third.Events[0].Name)
	require.Equal(t, []attribute.KeyValue{attribute.String("salve.safety.check", "cooldown")}, third.Events[0].Attributes)
	held := tracingtest.Named(exp, "alert suppressed")
	require.Len(t, held, 1)
	require.Equal(t, start.SpanContext.SpanID(), held[0].Parent.SpanID())

	for _, s := range exp.GetSpans() {
		for _, kv := range s.Attributes {
			require.NotContains(t, kv.Value.Emit(), secretReason)
		}
		for _, ev := range s.Events {
			for _, kv := range ev.Attributes {
				require.NotContains(t, kv.Value.Emit(), secretReason)
			}
		}
	}
}

const secretReason = "annotation-value-7f3a"

// refusingGuard refuses every new run, with a reason that quotes alert data.
type refusingGuard struct{}

func (refusingGuard) Admit(context.Context, *runbooks.Runbook, *domain.AlertEvent, string, string) (safety.Admission, error) {
	return safety.Admission{Check: "cooldown", Reason: "param target " + secretReason + " does not match"}, nil
}

func (refusingGuard) Release(context.Context, string, string) error { return nil }

func links(s tracetest.SpanStub) []trace.SpanID {
	var out []trace.SpanID
	for _, l := range s.Links {
		out = append(out, l.SpanContext.SpanID())
	}
	return out
}
