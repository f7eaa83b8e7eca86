package cli

import (
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/activities"
)

// docs/step-kinds.md is what `salve runbook kinds --markdown` prints.
// Regenerate with: SALVE_UPDATE_DOCS=1 go test ./internal/cli -run StepKindsDoc
func TestStepKindsDocIsCurrent(t *testing.T) {
	reg, err := activities.NewRegistry()
	require.NoError(t, err)
	got := stepKindsMarkdown(reg)
	const path = "../../docs/step-kinds.md"
	if os.Getenv("SALVE_UPDATE_DOCS") != "" {
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, string(want), got, "docs/step-kinds.md is stale: SALVE_UPDATE_DOCS=1 go test ./internal/cli -run StepKindsDoc")
	require.Contains(t, got, "## `kubernetes.rollback` (mutating, credential: kubernetes)")
	require.Contains(t, got, "| `query` | string | yes |")
}
