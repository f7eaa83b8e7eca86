package runbooks_test

import (
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/runbooks"
)

// `salve runbook show` output for the fixture that uses every field.
// Regenerate with: SALVE_UPDATE_GOLDEN=1 go test ./runbooks -run Show
func TestShowGolden(t *testing.T) {
	for _, name := range []string{"every-feature", "minimal"} {
		src := "testdata/good/" + name + ".yaml"
		data, err := os.ReadFile(src)
		require.NoError(t, err)
		rb, err := runbooks.Parse(src, data, registry(t))
		require.NoError(t, err)
		got, err := runbooks.Show(rb)
		require.NoError(t, err)
		golden := "testdata/show/" + name + ".golden.yaml"
		if os.Getenv("SALVE_UPDATE_GOLDEN") != "" {
			require.NoError(t, os.MkdirAll("testdata/show", 0o755))
			require.NoError(t, os.WriteFile(golden, got, 0o644))
		}
		want, err := os.ReadFile(golden)
		require.NoError(t, err)
		require.Equal(t, string(want), string(got))

		// What show prints is itself a valid runbook that means the same.
		again, err := runbooks.Parse("shown.yaml", got, registry(t))
		require.NoError(t, err, "show output must parse")
		require.Equal(t, runbooks.WithDefaults(rb).Spec, runbooks.WithDefaults(again).Spec)
	}
}
