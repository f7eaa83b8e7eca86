package safety

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Store is the part of a JetStream key-value bucket the Guard uses, with
// jetstream.KeyValue's signatures, so a bucket satisfies it as it is.
// NewMemoryStore is the other implementation: one process, no server, for
// simulations (salve backtest) that replay alerts through the real Guard.
type Store interface {
	Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error)
	Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error)
	Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error)
	Put(ctx context.Context, key string, value []byte) (uint64, error)
	Delete(ctx context.Context, key string, opts ...jetstream.KVDeleteOpt) error
}

var _ Store = jetstream.KeyValue(nil)

// NewGuard returns a Guard keeping its state in store and reading the time
// from now (nil = time.Now). A simulation passes a memory store and its
// simulated clock; production uses Open.
func NewGuard(store Store, now func() time.Time) *Guard {
	if now == nil {
		now = time.Now
	}
	return &Guard{kv: store, now: now}
}

// MemoryStore is an in-memory Store with JetStream KV's revision and
// compare-and-set semantics for the calls the Guard makes: revisions are
// one sequence for the whole bucket; Get of an absent or deleted key is
// ErrKeyNotFound; Create of a live key is ErrKeyExists (of a deleted one
// succeeds); Update and Delete with a revision that is not the key's last
// fail with the API error JetStream answers (wrong last sequence).
type MemoryStore struct {
	mu   sync.Mutex
	seq  uint64
	keys map[string]*memEntry
}

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{keys: map[string]*memEntry{}}
}

// errWrongSequence is JetStream's answer to a compare-and-set that lost.
func errWrongSequence(key string, want, have uint64) error {
	return &jetstream.APIError{
		Code:        400,
		ErrorCode:   jetstream.JSErrCodeStreamWrongLastSequence,
		Description: fmt.Sprintf("wrong last sequence: %d (key %s expected %d)", have, key, want),
	}
}

// Get returns the key's last value; a deleted key is not found.
func (m *MemoryStore) Get(_ context.Context, key string) (jetstream.KeyValueEntry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.keys[key]
	if !ok || e.op != jetstream.KeyValuePut {
		return nil, jetstream.ErrKeyNotFound
	}
	return e, nil // entries are never changed, only replaced
}

// Put writes value whatever the key holds.
func (m *MemoryStore) Put(_ context.Context, key string, value []byte) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.write(key, value, jetstream.KeyValuePut), nil
}

// Create writes value only if the key is absent or deleted. Options (a
// per-key TTL) are not supported: the Guard uses none.
func (m *MemoryStore) Create(_ context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error) {
	if len(opts) > 0 {
		return 0, fmt.Errorf("memory store: create options are not supported")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.keys[key]; ok && e.op == jetstream.KeyValuePut {
		return 0, fmt.Errorf("%w: %w", errWrongSequence(key, 0, e.rev), jetstream.ErrKeyExists)
	}
	return m.write(key, value, jetstream.KeyValuePut), nil
}

// Update writes value only if revision is the key's last (0: the key has
// never been written).
func (m *MemoryStore) Update(_ context.Context, key string, value []byte, revision uint64) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if have := m.lastRev(key); have != revision {
		return 0, errWrongSequence(key, revision, have)
	}
	return m.write(key, value, jetstream.KeyValuePut), nil
}

// Delete marks the key deleted; with jetstream.LastRevision(n) only if n
// is its last revision.
func (m *MemoryStore) Delete(_ context.Context, key string, opts ...jetstream.KVDeleteOpt) error {
	want, err := lastRevisionOpt(opts)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if have := m.lastRev(key); want != 0 && have != want {
		return errWrongSequence(key, want, have)
	}
	m.write(key, nil, jetstream.KeyValueDelete)
	return nil
}

func (m *MemoryStore) lastRev(key string) uint64 {
	if e, ok := m.keys[key]; ok {
		return e.rev
	}
	return 0
}

func (m *MemoryStore) write(key string, value []byte, op jetstream.KeyValueOp) uint64 {
	m.seq++
	m.keys[key] = &memEntry{key: key, value: append([]byte(nil), value...), rev: m.seq, created: time.Now(), op: op}
	return m.seq
}

// lastRevisionOpt reads the revision of a jetstream.LastRevision option.
// jetstream hides its options' fields behind an unexported method, so the
// option (a func of *deleteOpts) is applied by reflection to a fresh
// options value and its revision field read back. Any other option, or a
// jetstream release that changes this shape, is an error, never silently
// an unconditional delete: TestMemoryStoreCompareAndSet pins it.
func lastRevisionOpt(opts []jetstream.KVDeleteOpt) (uint64, error) {
	var rev uint64
	for _, o := range opts {
		if o == nil {
			continue
		}
		fn := reflect.ValueOf(o)
		if fn.Kind() != reflect.Func || fn.Type().NumIn() != 1 || fn.Type().In(0).Kind() != reflect.Pointer {
			return 0, fmt.Errorf("memory store: unsupported delete option %T", o)
		}
		dst := reflect.New(fn.Type().In(0).Elem())
		if out := fn.Call([]reflect.Value{dst}); len(out) == 1 && !out[0].IsNil() {
			return 0, fmt.Errorf("memory store: delete option: %v", out[0])
		}
		r := dst.Elem().FieldByName("revision")
		if !r.IsValid() || r.Kind() != reflect.Uint64 || !onlyRevisionSet(dst.Elem()) {
			return 0, fmt.Errorf("memory store: only jetstream.LastRevision is supported as a delete option")
		}
		rev = r.Uint()
	}
	return rev, nil
}

// onlyRevisionSet reports whether every field of opts but revision is
// zero (no purge, no TTL).
func onlyRevisionSet(opts reflect.Value) bool {
	for i := range opts.NumField() {
		if opts.Type().Field(i).Name != "revision" && !opts.Field(i).IsZero() {
			return false
		}
	}
	return true
}

// memEntry is one key's last write; it is its own KeyValueEntry.
type memEntry struct {
	key     string
	value   []byte
	rev     uint64
	created time.Time
	op      jetstream.KeyValueOp
}

func (e *memEntry) Bucket() string                  { return Bucket }
func (e *memEntry) Key() string                     { return e.key }
func (e *memEntry) Value() []byte                   { return e.value }
func (e *memEntry) Revision() uint64                { return e.rev }
func (e *memEntry) Created() time.Time              { return e.created }
func (e *memEntry) Delta() uint64                   { return 0 }
func (e *memEntry) Operation() jetstream.KeyValueOp { return e.op }
