package runbooks

import (
	"fmt"
	"sort"

	"github.com/salve-sre/salve/internal/domain"
)

// Set is an immutable collection of loaded runbooks, sorted by name.
type Set struct {
	list   []*Runbook
	byName map[string]*Runbook
}

// NewSet builds a set; duplicate names are an error.
func NewSet(rbs ...*Runbook) (*Set, error) {
	s := &Set{byName: map[string]*Runbook{}}
	for _, rb := range rbs {
		if prev, dup := s.byName[rb.Name()]; dup {
			return nil, fmt.Errorf("%w: %s: runbook name %q is already used by %s", ErrInvalid, rb.Source, rb.Name(), prev.Source)
		}
		s.byName[rb.Name()] = rb
		s.list = append(s.list, rb)
	}
	sort.Slice(s.list, func(i, j int) bool { return s.list[i].Name() < s.list[j].Name() })
	return s, nil
}

// All returns the runbooks sorted by name.
func (s *Set) All() []*Runbook { return s.list }

// Get returns a runbook by name.
func (s *Set) Get(name string) (*Runbook, bool) {
	rb, ok := s.byName[name]
	return rb, ok
}

// Match returns the runbooks an alert triggers, sorted by name.
func (s *Set) Match(a domain.AlertEvent) []*Runbook {
	var out []*Runbook
	for _, rb := range s.list {
		if rb.Matches(a.Labels) {
			out = append(out, rb)
		}
	}
	return out
}
