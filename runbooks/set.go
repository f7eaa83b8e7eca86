package runbooks

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

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

// LoadDir parses every *.yaml and *.yml file directly in dir. It returns the
// valid runbooks and, separately, every problem found, so one bad file does
// not take the others down.
func LoadDir(dir string, cat StepCatalog) ([]*Runbook, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read runbook directory: %w", err)
	}
	var (
		out  []*Runbook
		errs []error
	)
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !(strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")) {
			continue
		}
		path := filepath.Join(dir, name)
		data, err := os.ReadFile(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("read runbook: %w", err))
			continue
		}
		rb, err := Parse(path, data, cat)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, rb)
	}
	return out, errors.Join(errs...)
}
