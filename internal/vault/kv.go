package vault

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/salve-sre/salve/activities/httpreq"
	"github.com/salve-sre/salve/activities/step"
	"github.com/salve-sre/salve/internal/domain"
)

// KV resolves static secrets from Vault KV v2 for step parameters such as
// http.request's secretHeaders. Each read is audited by reference (mount,
// path, key), never by value.
type KV struct {
	Vault *Client
	Audit Auditor
}

var _ httpreq.Secrets = (*KV)(nil)

// Resolve reads "mount/path#key".
func (k *KV) Resolve(ctx context.Context, req step.Request, ref string) (string, error) {
	loc, key, ok := strings.Cut(ref, "#")
	mount, path, ok2 := strings.Cut(loc, "/")
	if !ok || !ok2 || key == "" || path == "" {
		return "", fmt.Errorf("%w: secret reference %q: write mount/path#key, e.g. secret/pagerduty#token", step.ErrInvalidParams, ref)
	}
	used := k.Vault.API().Token()
	sec, err := k.Vault.API().KVv2(mount).Get(ctx, path)
	if isPermissionDenied(err) {
		// Vault may have forgotten Salve's token (a restart without
		// persistent storage, a revocation): log in again and retry once.
		// If Salve cannot log in, a later attempt may: not permanent.
		if lerr := k.Vault.relogin(ctx, used); lerr != nil {
			return "", fmt.Errorf("%w: read %s: Vault refused Salve's token and logging in again failed: %v", ErrVault, loc, lerr)
		}
		sec, err = k.Vault.API().KVv2(mount).Get(ctx, path)
	}
	if err != nil {
		if isClientError(err) || isPermissionDenied(err) || strings.Contains(err.Error(), "secret not found") {
			return "", fmt.Errorf("%w: %w: read %s: %v", step.ErrPermanent, ErrVault, loc, cleanErr(err))
		}
		return "", fmt.Errorf("%w: read %s: %v", ErrVault, loc, cleanErr(err))
	}
	v, ok := sec.Data[key].(string)
	if !ok {
		return "", fmt.Errorf("%w: %w: %s has no string key %q", step.ErrPermanent, ErrVault, loc, key)
	}
	ev := domain.AuditEvent{
		ID:         req.WorkflowID + "/" + req.RunID + "/" + req.Step + "/secret.read/" + ref,
		Time:       time.Now().UTC(),
		Actor:      domain.Actor{Kind: domain.ActorSystem, Name: "worker"},
		Action:     domain.ActionCredentialIssued,
		Outcome:    "read",
		Runbook:    req.Runbook,
		WorkflowID: req.WorkflowID,
		RunID:      req.RunID,
		Step:       req.Step,
		Detail:     map[string]string{"source": "kv", "ref": ref},
	}
	if err := k.Audit.Record(ctx, ev); err != nil {
		return "", fmt.Errorf("record secret read (step not run): %w", err)
	}
	return v, nil
}
