package app

import (
	"context"

	"go.temporal.io/sdk/client"

	temporalotel "go.temporal.io/sdk/contrib/opentelemetry"

	"github.com/salve-sre/salve/internal/tracing"
)

// startTracing turns OpenTelemetry tracing on when the OTEL_* variables
// ask for it; it is flushed and stopped last, when the process closes.
func (d *Process) startTracing(ctx context.Context, cfg Config, roles Roles) error {
	s, err := tracing.FromEnv(cfg.Getenv)
	if err != nil {
		return err
	}
	if !s.Enabled {
		d.log.Debug("tracing off", "why", s.Why)
		return nil
	}
	shutdown, err := tracing.Start(ctx, s, tracing.Process{Version: cfg.Version, Role: roles.String()})
	if err != nil {
		return err
	}
	d.closers = append(d.closers, func() {
		if err := shutdown(context.Background()); err != nil {
			d.log.Warn("tracing: flushing the last spans", "error", err)
		}
	})
	d.log.Info("tracing on: spans are exported over OTLP", "protocol", s.Protocol, "why", s.Why)
	return nil
}

// temporalTracing puts Temporal's OpenTelemetry interceptor on the
// client when tracing is on; workers built on the client inherit it. The
// trace context travels in workflow and activity headers, so a run's
// steps join its trace even when they run after a restart.
func temporalTracing(o *client.Options) error {
	if !tracing.Enabled() {
		return nil
	}
	i, err := temporalotel.NewTracingInterceptor(temporalotel.TracerOptions{
		TextMapPropagator: tracing.Propagator,
		DisableBaggage:    true,
		// Queries are how the API reads a run's status: a span for each
		// dashboard refresh would bury the run's own.
		DisableQueryTracing: true,
	})
	if err != nil {
		return err
	}
	o.Interceptors = append(o.Interceptors, i)
	return nil
}
