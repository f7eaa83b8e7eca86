package step

import (
	"errors"
	"fmt"
	"sort"
)

// Registry is the explicit set of step kinds a process knows. It is built
// once at start-up (see activities.NewRegistry) and read-only afterwards.
type Registry struct {
	specs map[string]Spec
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{specs: map[string]Spec{}} }

// Register adds a step kind.
func (r *Registry) Register(s Spec) error {
	switch {
	case s.Kind == "":
		return errors.New("register step kind: empty kind")
	case s.Executor == nil:
		return fmt.Errorf("register step kind %q: nil executor", s.Kind)
	}
	if _, dup := r.specs[s.Kind]; dup {
		return fmt.Errorf("register step kind %q: already registered", s.Kind)
	}
	r.specs[s.Kind] = s
	return nil
}

// Lookup returns the spec of a kind.
func (r *Registry) Lookup(kind string) (Spec, bool) {
	s, ok := r.specs[kind]
	return s, ok
}

// Kinds returns the registered kinds in sorted order.
func (r *Registry) Kinds() []string {
	out := make([]string, 0, len(r.specs))
	for k := range r.specs {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
