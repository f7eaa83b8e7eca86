package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/require"
)

func TestSecretsFromFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
		return p
	}
	parse := func(args ...string) (string, error) {
		f := pflag.NewFlagSet("t", pflag.ContinueOnError)
		var token string
		var s secretFiles
		s.add(f, &token, "webhook-token", "")
		require.NoError(t, f.Parse(args))
		return token, s.resolve()
	}
	got, err := parse("--webhook-token-file", write("tok", "s3cret\n"))
	require.NoError(t, err)
	require.Equal(t, "s3cret", got, "a trailing newline is not part of it")
	got, err = parse("--webhook-token", "direct")
	require.NoError(t, err)
	require.Equal(t, "direct", got)
	_, err = parse("--webhook-token", "x", "--webhook-token-file", write("tok2", "y"))
	require.EqualError(t, err, "--webhook-token and --webhook-token-file are both set: give one")
	_, err = parse("--webhook-token-file", write("empty", " \n"))
	require.ErrorContains(t, err, "--webhook-token-file: ")
	require.ErrorContains(t, err, "is empty")
	_, err = parse("--webhook-token-file", filepath.Join(dir, "missing"))
	require.ErrorContains(t, err, "--webhook-token-file: open ")

	// The environment names the file too: SALVE_WEBHOOK_TOKEN_FILE.
	t.Setenv("SALVE_WEBHOOK_TOKEN_FILE", write("env", "from-env"))
	f := pflag.NewFlagSet("t", pflag.ContinueOnError)
	var token string
	var s secretFiles
	s.add(f, &token, "webhook-token", "")
	require.NoError(t, f.Parse(nil))
	require.NoError(t, flagsFromEnvAndFiles(f, s))
	require.Equal(t, "from-env", token)
}

// Every command that runs Salve takes each secret from a file, and a
// mistake is a usage error before anything starts.
func TestSecretFileFlagsOnEveryCommand(t *testing.T) {
	for _, cmd := range []string{"dev", "server", "worker"} {
		var out, errOut bytes.Buffer
		code := Execute(context.Background(), []string{cmd, "--help"}, &out, &errOut)
		require.Equal(t, 0, code)
		for _, flag := range []string{"--webhook-token-file", "--runbook-key-file", "--vault-token-file", "--audit-db-file"} {
			require.Contains(t, out.String(), flag, "%s --help", cmd)
		}
	}
	var out, errOut bytes.Buffer
	code := Execute(context.Background(), []string{"server", "--webhook-token", "a", "--webhook-token-file", "/nonexistent"}, &out, &errOut)
	require.Equal(t, 2, code, "a usage mistake")
	require.Contains(t, errOut.String(), "--webhook-token and --webhook-token-file are both set")

	out.Reset()
	require.Equal(t, 0, Execute(context.Background(), []string{"audit", "verify", "--help"}, &out, &errOut))
	for _, flag := range []string{"--db-file", "--nats-creds", "--nats-ca", "--nats-tls-cert", "--nats-tls-key"} {
		require.Contains(t, out.String(), flag)
	}
	errOut.Reset()
	code = Execute(context.Background(), []string{"audit", "verify", "--nats-tls-cert", "c.pem"}, &out, &errOut)
	require.NotZero(t, code)
	require.Contains(t, errOut.String(), "go together")
}
