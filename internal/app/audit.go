package app

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/salve-sre/salve/internal/audit"
)

// auditLog runs the audit recorder and serves the API's audit reads.
type auditLog struct {
	store   *audit.Store
	anchors *audit.JetStreamAnchors
	close   func()
}

func startAudit(ctx context.Context, dsn string, js jetstream.JetStream, log *slog.Logger) (*auditLog, error) {
	store, err := audit.Open(ctx, dsn)
	if err != nil {
		return nil, err
	}
	anchors := &audit.JetStreamAnchors{JS: js}
	if err := anchors.Ensure(ctx, 1); err != nil {
		_ = store.Close()
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		r := &audit.Recorder{JS: js, Store: store, Anchors: anchors, Log: log}
		if err := r.Run(rctx); err != nil {
			log.Error("audit recorder stopped", "error", err)
		}
	}()
	return &auditLog{store: store, anchors: anchors, close: func() {
		cancel()
		<-done
		_ = store.Close()
	}}, nil
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
	return res, nil
}
