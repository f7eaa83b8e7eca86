// Package audit keeps Salve's tamper-evident audit log: a single recorder
// appends the events published to the AUDIT stream to a store as a hash
// chain (hash = sha256(prev_hash || canonical JSON)), anchors the chain head
// outside the store, and verifies the chain on demand.
package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/salve-sre/salve/internal/domain"
)

// GenesisHash is the prev_hash of the first record.
const GenesisHash = "0000000000000000000000000000000000000000000000000000000000000000"

// Record is one stored audit event with its place in the chain.
type Record struct {
	Seq      int64             `json:"seq"`
	Event    domain.AuditEvent `json:"event"`
	PrevHash string            `json:"prevHash"`
	Hash     string            `json:"hash"`
}

// Canonical is the byte form an event is hashed and stored in: encoding/json
// of the struct (fixed field order, sorted map keys) with the time in UTC.
func Canonical(ev domain.AuditEvent) ([]byte, error) {
	ev.Time = ev.Time.UTC()
	b, err := json.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("canonical audit event %s: %w", ev.ID, err)
	}
	return b, nil
}

// ChainHash links one event to the chain.
func ChainHash(prevHash string, canonical []byte) (string, error) {
	prev, err := hex.DecodeString(prevHash)
	if err != nil || len(prev) != sha256.Size {
		return "", fmt.Errorf("bad previous hash %q", prevHash)
	}
	h := sha256.New()
	h.Write(prev)
	h.Write(canonical)
	return hex.EncodeToString(h.Sum(nil)), nil
}
