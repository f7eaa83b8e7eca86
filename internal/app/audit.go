package app

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/salve-sre/salve/internal/audit"
)

// auditLog runs the audit recorder and serves the API's audit reads.
type auditLog struct {
	store   *audit.Store
	anchors *audit.JetStreamAnchors
	close   func()
}

// openAudit opens the audit store and the anchors; the recorder and the
// incidents read model run on them as parts of the process (startAPI).
func openAudit(ctx context.Context, dsn string, js jetstream.JetStream, replicas int) (*auditLog, error) {
	store, err := audit.Open(ctx, dsn)
	if err != nil {
		return nil, err
	}
	anchors := &audit.JetStreamAnchors{JS: js}
	if err := anchors.Ensure(ctx, replicas); err != nil {
		_ = store.Close()
		return nil, err
	}
	return &auditLog{store: store, anchors: anchors, close: func() { _ = store.Close() }}, nil
}

// Alerts reads the incidents read model.
func (a *auditLog) Alerts(ctx context.Context, f audit.AlertFilter) ([]audit.AlertState, error) {
	return a.store.Alerts(ctx, f)
}

// Query reads audit records.
func (a *auditLog) Query(ctx context.Context, f audit.Filter) ([]audit.Record, error) {
	return a.store.Query(ctx, f)
}

// Verify checks the chain against its anchors.
func (a *auditLog) Verify(ctx context.Context) (audit.VerifyResult, error) {
	res, err := audit.Verify(ctx, a.store, a.anchors)
	if err != nil {
		return res, fmt.Errorf("verify audit chain: %w", err)
	}
	if n, err := audit.Unrecorded(ctx, a.anchors.JS); err == nil {
		res.Unrecorded = &n
	}
	return res, nil
}

// openApprovals reads the approvals nothing answered yet from the audit
// log (one query), for runs.Runs.OpenApprovals.
func openApprovals(store *audit.Store) func(ctx context.Context) (map[string]bool, error) {
	return func(ctx context.Context) (map[string]bool, error) {
		list, err := store.OpenApprovals(ctx, time.Now())
		if err != nil {
			return nil, err
		}
		open := make(map[string]bool, len(list))
		for _, a := range list {
			open[a.WorkflowID+"/"+a.RunID] = true
		}
		return open, nil
	}
}
