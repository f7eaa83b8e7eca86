package vault

import (
	"sort"
	"sync"
)

// LeaseCounters counts credential leases by role: issued, revoked, failed
// to issue and failed to revoke. The metrics endpoint reads Snapshot; labels
// are roles (bounded by configuration), never lease IDs.
type LeaseCounters struct {
	mu                                    sync.Mutex
	issued, revoked, failed, revokeFailed map[string]uint64
}

// LeaseCount is one role's counts.
type LeaseCount struct {
	Role                                  string
	Issued, Revoked, Failed, RevokeFailed uint64
}

func (m *LeaseCounters) inc(which *map[string]uint64, role string) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if *which == nil {
		*which = map[string]uint64{}
	}
	(*which)[role]++
}

// Snapshot returns the counts, sorted by role.
func (m *LeaseCounters) Snapshot() []LeaseCount {
	m.mu.Lock()
	defer m.mu.Unlock()
	roles := map[string]bool{}
	for _, mm := range []map[string]uint64{m.issued, m.revoked, m.failed, m.revokeFailed} {
		for r := range mm {
			roles[r] = true
		}
	}
	out := make([]LeaseCount, 0, len(roles))
	for r := range roles {
		out = append(out, LeaseCount{Role: r, Issued: m.issued[r], Revoked: m.revoked[r], Failed: m.failed[r], RevokeFailed: m.revokeFailed[r]})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Role < out[j].Role })
	return out
}
