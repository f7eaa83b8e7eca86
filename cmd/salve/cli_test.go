package main

import (
	"os/exec"
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
}
