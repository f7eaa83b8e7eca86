package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/salve-sre/salve/internal/bus"
)

// SessionTTL is how long a dashboard sign-in lasts.
const SessionTTL = 12 * time.Hour

// SessionsBucket keeps the dashboard's sessions.
const SessionsBucket = "SALVE_SESSIONS"

// Session is a dashboard sign-in, kept server-side: the browser holds only
// a random ID, never the API token, so a sign-out revokes it and a stolen
// cookie dies with its session.
type Session struct {
	// TokenSHA256 names the API token that signed in: the session is only
	// as good as that token, and dies when the token is removed.
	TokenSHA256 string    `json:"tokenSha256"`
	Subject     string    `json:"subject"`
	Expires     time.Time `json:"expires"`
}

// ErrNoSession: the cookie names no live session (signed out, expired,
// never signed in).
var ErrNoSession = errors.New("no such session: signed out, expired, or never signed in")

// SessionStore keeps sessions.
type SessionStore interface {
	Create(ctx context.Context, s Session) (id string, err error)
	Get(ctx context.Context, id string) (Session, error)
	Delete(ctx context.Context, id string) error
}

// NewSessionID is 256 random bits, URL-safe.
func NewSessionID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// sessionKey is where a session is stored: a hash of its ID, so someone
// who can read the bucket cannot use its keys as cookies.
func sessionKey(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:])
}

// KVSessions keeps sessions in a JetStream key-value bucket that every
// API replica shares: a sign-out on one replica is a sign-out everywhere,
// and the bucket forgets a session after SessionTTL.
type KVSessions struct{ kv jetstream.KeyValue }

// OpenSessions creates (or finds) the sessions bucket.
func OpenSessions(ctx context.Context, js jetstream.JetStream, replicas int) (*KVSessions, error) {
	kv, err := bus.EnsureKeyValue(ctx, js, jetstream.KeyValueConfig{
		Bucket:      SessionsBucket,
		Description: "Salve dashboard sessions (hashed IDs; no tokens)",
		History:     1,
		TTL:         SessionTTL,
		Replicas:    max(replicas, 1),
		Storage:     jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("sessions bucket %s: %w", SessionsBucket, err)
	}
	return &KVSessions{kv: kv}, nil
}

// Create stores s under a new ID.
func (k *KVSessions) Create(ctx context.Context, s Session) (string, error) {
	id := NewSessionID()
	b, _ := json.Marshal(s)
	if _, err := k.kv.Create(ctx, sessionKey(id), b); err != nil {
		return "", fmt.Errorf("store session: %w", err)
	}
	return id, nil
}

// Get returns the live session id names, or ErrNoSession.
func (k *KVSessions) Get(ctx context.Context, id string) (Session, error) {
	if id == "" {
		return Session{}, ErrNoSession
	}
	e, err := k.kv.Get(ctx, sessionKey(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Session{}, ErrNoSession
	}
	if err != nil {
		return Session{}, fmt.Errorf("read session: %w", err)
	}
	var s Session
	if err := json.Unmarshal(e.Value(), &s); err != nil || !time.Now().Before(s.Expires) {
		return Session{}, ErrNoSession
	}
	return s, nil
}

// Delete ends a session; ending one that is gone is no error.
func (k *KVSessions) Delete(ctx context.Context, id string) error {
	if err := k.kv.Purge(ctx, sessionKey(id)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("end session: %w", err)
	}
	return nil
}

// ByHash returns the holder of the token whose SHA-256 (hex) is sum: how
// a session finds its principal without keeping the token.
func (a *Authenticator) ByHash(sum string) (Principal, error) {
	h, err := hex.DecodeString(sum)
	if err != nil || len(h) != sha256.Size {
		return Principal{}, ErrBadToken
	}
	found := -1
	for i, e := range a.tokens {
		if subtle.ConstantTimeCompare(h, e.hash) == 1 {
			found = i
		}
	}
	if found < 0 {
		return Principal{}, ErrBadToken
	}
	return a.tokens[found].p, nil
}
