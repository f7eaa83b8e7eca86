package vault

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/salve-sre/salve/internal/bus"
	"github.com/salve-sre/salve/internal/domain"
)

// RevokesBucket keeps the leases whose revoke failed, until one is revoked
// or would have expired anyway.
const RevokesBucket = "SALVE_REVOKES"

// PendingRevoke is a lease whose revoke failed when its step ended.
type PendingRevoke struct {
	Lease   string    `json:"lease"`
	Expires time.Time `json:"expires"`
	Role    string    `json:"role"`
	// Base and Detail make the credential.revoked record when it is.
	Base   domain.AuditEvent `json:"base"`
	Detail map[string]string `json:"detail"`
}

// PendingRevokes stores failed revokes durably, so that any worker, this
// one after a restart included, retries them.
type PendingRevokes interface {
	Put(ctx context.Context, p PendingRevoke) error
	List(ctx context.Context) ([]PendingRevoke, error)
	Delete(ctx context.Context, lease string) error
}

// KVRevokes keeps pending revokes in a JetStream key-value bucket shared
// by every worker, keyed by the lease's hash. A lease ID lets a holder of
// a Vault token allowed to do so renew or revoke it; it is no credential
// by itself, and the bucket is Salve's own, like its alerts and audit.
type KVRevokes struct{ kv jetstream.KeyValue }

// OpenRevokes creates (or finds) the bucket.
func OpenRevokes(ctx context.Context, js jetstream.JetStream, replicas int) (*KVRevokes, error) {
	kv, err := bus.EnsureKeyValue(ctx, js, jetstream.KeyValueConfig{
		Bucket:      RevokesBucket,
		Description: "Salve: Vault leases whose revoke failed, retried until revoked or expired",
		History:     1,
		// Longer than any lease Salve asks for: entries are deleted when
		// revoked or expired; this only bounds what a bug could leave.
		TTL:      7 * 24 * time.Hour,
		Replicas: max(replicas, 1),
		Storage:  jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("revokes bucket %s: %w", RevokesBucket, err)
	}
	return &KVRevokes{kv: kv}, nil
}

// Put stores p under its lease's hash.
func (k *KVRevokes) Put(ctx context.Context, p PendingRevoke) error {
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	_, err = k.kv.Put(ctx, LeaseHash(p.Lease), b)
	return err
}

// List returns every pending revoke; unreadable entries are skipped.
func (k *KVRevokes) List(ctx context.Context) ([]PendingRevoke, error) {
	keys, err := k.kv.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	var out []PendingRevoke
	var firstErr error
	for key := range keys.Keys() { // drained to the end: the lister stops then
		e, err := k.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // revoked by another worker meanwhile
		}
		if err != nil {
			firstErr = cmp.Or(firstErr, err)
			continue
		}
		var p PendingRevoke
		if json.Unmarshal(e.Value(), &p) == nil && p.Lease != "" {
			out = append(out, p)
		}
	}
	return out, firstErr
}

// Delete forgets lease.
func (k *KVRevokes) Delete(ctx context.Context, lease string) error {
	err := k.kv.Delete(ctx, LeaseHash(lease))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	return err
}

// RetryRevokes retries the pending revokes every interval (default 15s)
// until ctx ends. Every worker runs it; a lease revoked twice is revoked
// once in Vault and recorded once (the audit event ID names the lease).
func (k *KubeCredentials) RetryRevokes(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = 15 * time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		k.retryPending(ctx)
	}
}

// retryPending makes one pass over the pending revokes.
func (k *KubeCredentials) retryPending(ctx context.Context) {
	list, err := k.Pending.List(ctx)
	if err != nil && k.Log != nil {
		k.Log.Warn("pending credential revokes: list", "error", err)
	}
	for _, p := range list {
		if time.Now().After(p.Expires) {
			// Vault ended the lease at its TTL.
			if err := k.Pending.Delete(ctx, p.Lease); err != nil && k.Log != nil {
				k.Log.Warn("pending credential revokes: delete an expired lease", "lease", LeaseHash(p.Lease), "error", err)
			}
			continue
		}
		used := k.Vault.API().Token()
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := k.Vault.API().Sys().RevokeWithContext(rctx, p.Lease)
		if isPermissionDenied(err) && k.Vault.relogin(rctx, used) == nil {
			// Salve's own token was refused (Vault restarted, token
			// revoked): log in again, as issuing does, and retry once.
			err = k.Vault.API().Sys().RevokeWithContext(rctx, p.Lease)
		}
		cancel()
		if err != nil {
			continue // next pass
		}
		k.recordRevoked(ctx, p.Lease, p.Base, p.Detail, p.Role, "revoked after retry")
		if err := k.Pending.Delete(ctx, p.Lease); err != nil && k.Log != nil {
			k.Log.Warn("pending credential revokes: delete", "lease", LeaseHash(p.Lease), "error", err)
		}
	}
}
