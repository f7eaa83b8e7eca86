// Package snapshot authenticates the runbook a run carries.
//
// A run executes the runbook snapshot in its workflow input, so whoever can
// start a workflow on Salve's Temporal namespace could hand a worker any
// steps to run with Salve's credentials. The roles that start runs (trigger
// and API) sign each snapshot with a key they share with the workers; a
// worker runs a snapshot only if its signature verifies (workflows verify
// it first thing, in a local activity, so replays stay deterministic).
//
// The key comes from configuration (--runbook-key, SALVE_RUNBOOK_KEY) or,
// when none is set, is created once in the JetStream key-value bucket
// SALVE_KEYS, which every Salve process already reaches. The configured key
// protects also against whoever can read NATS; the generated one against
// whoever reaches only Temporal.
package snapshot

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/salve-sre/salve/internal/bus"
	"github.com/salve-sre/salve/runbooks"
)

// MinKeyBytes is the shortest key accepted.
const MinKeyBytes = 32

// ErrForged: the snapshot is not one Salve signed (changed, or never
// signed).
var ErrForged = errors.New("the runbook in this run was not signed by Salve")

// Key signs and verifies snapshots.
type Key struct{ k []byte }

// NewKey takes a key of at least MinKeyBytes bytes.
func NewKey(k []byte) (*Key, error) {
	if len(k) < MinKeyBytes {
		return nil, fmt.Errorf("the runbook signing key has %d bytes; want at least %d (e.g. openssl rand -hex 32)", len(k), MinKeyBytes)
	}
	return &Key{k: append([]byte(nil), k...)}, nil
}

// Random returns a fresh key (tests, `salve runbook test`).
func Random() *Key {
	k := make([]byte, MinKeyBytes)
	if _, err := rand.Read(k); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return &Key{k: k}
}

// canonical is the form signed: the snapshot as a worker decodes it from
// the workflow input, encoded again. Signing the decoded copy makes the
// signer and the verifier encode the same values (e.g. YAML ints that the
// workflow input turns into JSON numbers).
func canonical(rb runbooks.Runbook) ([]byte, error) {
	b, err := json.Marshal(rb)
	if err != nil {
		return nil, err
	}
	var back runbooks.Runbook
	if err := json.Unmarshal(b, &back); err != nil {
		return nil, err
	}
	return json.Marshal(back)
}

// Sign returns the snapshot's signature (hex HMAC-SHA256).
func (k *Key) Sign(rb runbooks.Runbook) (string, error) {
	b, err := canonical(rb)
	if err != nil {
		return "", fmt.Errorf("encode runbook %s for signing: %w", rb.Name(), err)
	}
	m := hmac.New(sha256.New, k.k)
	m.Write(b)
	return hex.EncodeToString(m.Sum(nil)), nil
}

// Verify checks sig against the snapshot.
func (k *Key) Verify(rb runbooks.Runbook, sig string) error {
	want, err := k.Sign(rb)
	if err != nil {
		return err
	}
	got, err := hex.DecodeString(sig)
	if err != nil || sig == "" {
		return ErrForged
	}
	w, _ := hex.DecodeString(want)
	if !hmac.Equal(got, w) {
		return ErrForged
	}
	return nil
}

// Bucket keeps the generated key.
const Bucket = "SALVE_KEYS"

const kvKey = "runbook-signing"

// Load returns the configured key, or the one kept in SALVE_KEYS,
// creating it on first use.
func Load(ctx context.Context, js jetstream.JetStream, configured string, replicas int) (*Key, error) {
	if configured != "" {
		return NewKey([]byte(configured))
	}
	if replicas == 0 {
		replicas = 1
	}
	kv, err := bus.EnsureKeyValue(ctx, js, jetstream.KeyValueConfig{
		Bucket: Bucket, Description: "Salve: the key that signs runbook snapshots (when --runbook-key is not set)",
		Storage: jetstream.FileStorage, Replicas: replicas, History: 1,
	})
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", Bucket, err)
	}
	fresh := make([]byte, MinKeyBytes)
	if _, err := rand.Read(fresh); err != nil {
		return nil, err
	}
	// Create fails if another process made it first: then read theirs.
	if _, err := kv.Create(ctx, kvKey, fresh); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return nil, fmt.Errorf("store the runbook signing key: %w", err)
	}
	e, err := kv.Get(ctx, kvKey)
	if err != nil {
		return nil, fmt.Errorf("read the runbook signing key: %w", err)
	}
	return NewKey(e.Value())
}
