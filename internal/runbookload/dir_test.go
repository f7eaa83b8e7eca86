package runbookload_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/activities"
	"github.com/salve-sre/salve/internal/runbookload"
	"github.com/salve-sre/salve/runbooks"
)

func registry(t *testing.T) runbooks.StepCatalog {
	t.Helper()
	reg, err := activities.NewRegistry()
	require.NoError(t, err)
	return reg
}

// `salve runbook validate` and the server read a directory by one rule
// (runbookload.Files): the same files load, and one bad file does not
// hide the good ones.
func TestLoadDir(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600))
	}
	const good = `apiVersion: salve/v1
kind: Runbook
metadata: {name: NAME}
spec:
  steps: [{name: a, action: sleep, with: {duration: 1s}}]
`
	write("good.yaml", strings.Replace(good, "NAME", "good", 1))
	write("also-good.yml", strings.Replace(good, "NAME", "also-good", 1))
	write("bad.yaml", strings.Replace(strings.Replace(good, "NAME", "bad", 1), "sleep", "slep", 1))
	write("broken.yaml", "apiVersion: [\n")
	write("README.md", "not a runbook")
	write(".swap.yaml", "apiVersion: [\n") // an editor's file: skipped
	require.NoError(t, os.Mkdir(filepath.Join(dir, "nested.yaml"), 0o700))
	require.NoError(t, os.Mkdir(filepath.Join(dir, "..data"), 0o700)) // a ConfigMap volume's

	rbs, err := runbookload.LoadDir(dir, registry(t))
	require.ErrorIs(t, err, runbooks.ErrInvalid)
	require.Contains(t, err.Error(), filepath.Join(dir, "bad.yaml")+`:5:29: spec.steps[0].action: unknown step kind "slep" (did you mean "sleep"?)`)
	require.Contains(t, err.Error(), filepath.Join(dir, "broken.yaml")+":")
	require.NotContains(t, err.Error(), ".swap.yaml", "dotfiles are not read")

	names := make([]string, len(rbs))
	for i, rb := range rbs {
		names[i] = rb.Name()
		require.Equal(t, filepath.Join(dir, rb.Name()+map[string]string{"good": ".yaml", "also-good": ".yml"}[rb.Name()]), rb.Source)
	}
	require.ElementsMatch(t, []string{"good", "also-good"}, names)

	_, err = runbookload.LoadDir(filepath.Join(dir, "missing"), registry(t))
	require.Error(t, err)
	require.NotErrorIs(t, err, runbooks.ErrInvalid)
}
