package runbookload

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/salve-sre/salve/runbooks"
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
		rb, err := runbooks.Parse(path, data, cat)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, rb)
	}
	return out, errors.Join(errs...)
}
