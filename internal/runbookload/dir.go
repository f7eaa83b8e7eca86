package runbookload

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/salve-sre/salve/runbooks"
	"github.com/salve-sre/salve/slos"
)

// Files lists the runbook files directly in dir: *.yaml and *.yml, not
// directories and not dotfiles (editor swap files, and the ..data links a
// Kubernetes ConfigMap volume adds), sorted. `salve runbook validate` and
// the server read a directory by this one rule.
func Files(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || strings.HasPrefix(n, ".") || !(strings.HasSuffix(n, ".yaml") || strings.HasSuffix(n, ".yml")) {
			continue
		}
		out = append(out, filepath.Join(dir, n))
	}
	slices.Sort(out)
	return out, nil
}

// LoadDir parses every runbook file of dir (Files). It returns the valid
// runbooks and, separately, every problem found, so one bad file does not
// take the others down.
func LoadDir(dir string, cat runbooks.StepCatalog) ([]*runbooks.Runbook, error) {
	paths, err := Files(dir)
	if err != nil {
		return nil, fmt.Errorf("read runbook directory: %w", err)
	}
	var (
		out  []*runbooks.Runbook
		errs []error
	)
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("read runbook: %w", err))
			continue
		}
		if slos.IsSLO(data) {
			continue // an SLO next to the runbooks (LoadSLOs)
		}
		rb, err := runbooks.Parse(path, data, cat)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, rb)
	}
	return out, errors.Join(errs...)
}

// LoadSLOs parses every kind: SLO file of dir (Files), returning the
// valid ones and, separately, every problem found.
func LoadSLOs(dir string) ([]*slos.SLO, error) {
	paths, err := Files(dir)
	if err != nil {
		return nil, fmt.Errorf("read SLO directory: %w", err)
	}
	var (
		out  []*slos.SLO
		errs []error
	)
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("read SLO: %w", err))
			continue
		}
		if !slos.IsSLO(data) {
			continue
		}
		s, err := slos.Parse(path, data)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, s)
	}
	return out, errors.Join(errs...)
}
