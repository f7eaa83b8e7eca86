package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"

	"go.temporal.io/sdk/client"

	"github.com/salve-sre/salve/internal/api"
	"github.com/salve-sre/salve/internal/audit"
	"github.com/salve-sre/salve/internal/auth"
	"github.com/salve-sre/salve/internal/bus"
	"github.com/salve-sre/salve/internal/dashboard"
	"github.com/salve-sre/salve/internal/runs"
	"github.com/salve-sre/salve/internal/stats"
	"github.com/salve-sre/salve/triggers"
	"github.com/salve-sre/salve/workers"
)

// One builder per role, each on the core the roles share (start.go).

// startWorker runs the workflows and their steps.
func (d *Process) startWorker(c *core) error {
	w, err := workers.New(c.tc, runs.DefaultTaskQueue, c.reg, c.acts, c.notifier.Hook)
	if err != nil {
		return err
	}
	if err := w.Start(); err != nil {
		return fmt.Errorf("start worker: %w", err)
	}
	d.closers = append(d.closers, w.Stop)
	if c.kubeCreds != nil {
		// Revokes that failed when their step ended, on any worker.
		d.goRole("credential revokes", func(ctx context.Context) error { c.kubeCreds.RetryRevokes(ctx, 0); return nil })
	}
	return nil
}

// startTrigger consumes stored alerts and starts or joins runs.
func (d *Process) startTrigger(c *core) {
	log := d.log.With("component", "trigger")
	trig := &triggers.Trigger{Runbooks: c.runbooks, Starter: c.runs, Audit: c.pub, Log: log, Metrics: c.metrics, Guard: c.guard, Failed: c.failed}
	if c.budgets != nil {
		trig.Budgets = c.budgets
	}
	cons := &triggers.Consumer{JS: c.js, Trigger: trig, Audit: c.pub, Log: log}
	d.goRole("trigger consumer", cons.Run)
}

// ingest is the Alertmanager webhook handler.
func (d *Process) ingest(c *core) *triggers.Ingest {
	// An alert NATS could never store is refused with 413, not 503 for ever.
	h := &triggers.Ingest{Store: c.pub, Audit: c.pub, Token: d.WebhookToken, Log: d.log.With("component", "ingest"), Metrics: c.metrics,
		MaxAlertBytes: triggers.MaxAlertFor(c.nc.MaxPayload())}
	if h.MaxAlertBytes < triggers.MaxAlertBytes {
		d.log.Warn("the NATS server's max_payload is under 1 MiB: the webhook refuses alerts over it with 413", "max_payload", c.nc.MaxPayload(), "max_alert_bytes", h.MaxAlertBytes)
	}
	return h
}

// startAPI runs the audit recorder and serves the API, the dashboard and
// the webhook (when ingest is not nil).
func (d *Process) startAPI(ctx context.Context, cfg Config, fc FileConfig, c *core, authn *auth.Authenticator, ingest *triggers.Ingest, ln net.Listener) error {
	auditDB := cfg.AuditDB
	if auditDB == "" {
		auditDB = filepath.Join(cfg.DataDir, "audit.db")
	}
	auditLog, err := openAudit(ctx, auditDB, c.js, cfg.StreamReplicas)
	if err != nil {
		return err
	}
	d.closers = append(d.closers, auditLog.close)
	alog := d.log.With("component", "audit")
	d.goRole("audit recorder", (&audit.Recorder{JS: c.js, Store: auditLog.store, Anchors: auditLog.anchors, Log: alog, Metrics: c.metrics, KeepRecorded: cfg.AuditKeepRecorded}).Run)
	d.goRole("incidents read model", (&audit.AlertProjector{JS: c.js, Store: auditLog.store, Log: alog, Metrics: c.metrics}).Run)
	rs := c.runs
	rs.OpenApprovals = openApprovals(auditLog.store)
	c.metrics.ApprovalsPending(pendingApprovals(rs))

	nc, js, tc, namespace := c.nc, c.js, c.tc, c.namespace
	srv := &api.Server{
		Ingest:    ingest,
		Metrics:   c.metrics.Handler(),
		Runs:      rs,
		Runbooks:  c.runbooks,
		Catalog:   c.reg,
		Audit:     auditLog,
		Recorder:  c.pub,
		Auth:      authn,
		Reload:    c.loader.Reload,
		PublicURL: fc.PublicURL,
		TraceURL:  fc.Tracing.TraceURL,
		Version:   cfg.Version,
		Log:       d.log.With("component", "api"),
		Checks: []api.Check{
			c.credCheck,
			{Name: "nats", Check: func(ctx context.Context) error {
				if !nc.IsConnected() {
					return errors.New("not connected")
				}
				_, err := js.Stream(ctx, bus.StreamAlerts)
				return err
			}},
			{Name: "temporal", Check: func(ctx context.Context) error {
				_, err := tc.CheckHealth(ctx, &client.CheckHealthRequest{})
				return err
			}},
			{Name: "worker", Check: func(ctx context.Context) error { return hasPollers(ctx, tc, namespace) }},
			{Name: "backlog", Check: func(context.Context) error { return nil },
				Warn: func(ctx context.Context) string { return backlogWarning(ctx, js) }},
		},
	}
	srv.Safety = c.guard
	srv.Trust, srv.SafetyConfig = fc.Trust, fc.Safety
	srv.Failed = c.failed
	srv.SLOs = c.currentSLOs
	if c.budgets != nil { // a nil *Reader in the interface would not be nil
		srv.Budgets = c.budgets
	}
	if srv.Sessions, err = auth.OpenSessions(ctx, js, cfg.StreamReplicas); err != nil {
		return err
	}
	if srv.TrustedProxies, err = fc.trustedProxies(); err != nil {
		return err
	}
	srv.Stats = (&stats.Computer{Source: auditLog, Pending: func(ctx context.Context) (int, error) {
		p, err := rs.PendingApprovals(ctx)
		return len(p), err
	}, Breakers: breakers(c.runbooks, c.guard)}).Compute
	dash, err := dashboard.New(dashboard.Options{API: srv, TemporalUI: d.TemporalUI, Namespace: namespace, Log: d.log.With("component", "dashboard")})
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/ui/", dash)
	mux.Handle("GET /{$}", http.RedirectHandler("/ui/", http.StatusFound))
	mux.Handle("/", srv.Handler())
	return d.serve(ln, mux, fc)
}
