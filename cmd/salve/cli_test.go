package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestVersionAndUsageExitCodes(t *testing.T) {
	out, err := exec.Command(salveBin, "version").CombinedOutput()
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(string(out), "salve "), string(out))

	out, err = exec.Command(salveBin, "--version").CombinedOutput()
	require.NoError(t, err)
	require.Contains(t, string(out), "salve")

	out, err = exec.Command(salveBin, "dev", "--help").CombinedOutput()
	require.NoError(t, err)
	require.Contains(t, string(out), "--data-dir")
	require.Contains(t, string(out), "--webhook-token")

	cmd := exec.Command(salveBin, "no-such-command")
	out, _ = cmd.CombinedOutput()
	require.Equal(t, 2, cmd.ProcessState.ExitCode(), string(out))
	require.Contains(t, string(out), "salve --help")

	cmd = exec.Command(salveBin, "dev", "--log-level", "loud")
	out, _ = cmd.CombinedOutput()
	require.Equal(t, 1, cmd.ProcessState.ExitCode(), string(out))
	require.Contains(t, string(out), "--log-level")

	// runbook validate: the shipped library is valid; a typo fails with
	// file:line and a did-you-mean, exit 1.
	out, err = exec.Command(salveBin, "runbook", "validate", "../../runbooks").CombinedOutput()
	require.NoError(t, err, string(out))
	require.Contains(t, string(out), "runbook(s) valid")
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("apiVersion: salve/v1\nkind: Runbook\nmetadata: {name: bad}\nspec:\n  steps:\n    - {name: a, action: http.reqest}\n"), 0o600))
	cmd = exec.Command(salveBin, "runbook", "validate", bad)
	out, _ = cmd.CombinedOutput()
	require.Equal(t, 1, cmd.ProcessState.ExitCode(), string(out))
	require.Contains(t, string(out), bad+`:6:25: spec.steps[0].action: unknown step kind "http.reqest" (did you mean "http.request"?)`)
}
