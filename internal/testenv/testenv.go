// Package testenv starts the real servers Salve's integration tests use —
// embedded NATS JetStream, Debian's Alertmanager, Prometheus and
// PostgreSQL, Vault, a Kubernetes control plane — on free loopback ports,
// and stops them when the test ends. A missing server is a test failure
// with the command that installs it, never a skip. The embedded Temporal
// server is not here: linking it makes every test binary that imports
// this package slow to build (above all with -race); tests start it with
// internal/devstack.
package testenv

import (
	"bytes"
	"context"
	"fmt"
	"hash/fnv"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/internal/bus"
	"github.com/salve-sre/salve/internal/devnats"
)

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	require.NoError(t, ln.Close())
	return port
}

// NATS starts an embedded NATS server with JetStream and Salve's streams,
// and returns a connected JetStream client.
func NATS(t testing.TB) (*devnats.NATS, jetstream.JetStream) {
	t.Helper()
	ns, err := devnats.Start(devnats.Options{StoreDir: filepath.Join(t.TempDir(), "nats")})
	require.NoError(t, err)
	t.Cleanup(ns.Stop)
	nc, err := nats.Connect(ns.URL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, bus.EnsureStreams(ctx, js, bus.StreamOptions{}))
	return ns, js
}

// tbWriter sends log lines to t.Log, so they show only for failing tests.
type tbWriter struct{ t testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// Binary finds an executable or fails the test with how to install it.
func Binary(t testing.TB, name, install string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is not installed; the README's test command installs it (%s)", name, install)
	}
	return path
}

// Fingerprint turns a readable test name into a fingerprint written as
// Alertmanager writes one (16 lowercase hex digits), which the webhook
// requires.
func Fingerprint(name string) string {
	h := fnv.New64a()
	_, _ = h.Write([]byte(name))
	return fmt.Sprintf("%016x", h.Sum64())
}

// runServer starts a test server's process, stops it when the test ends
// (showing its log if the test failed), and waits until readyURL answers
// 200, or fails the test naming the server.
func runServer(t testing.TB, name string, cmd *exec.Cmd, readyURL string, within time.Duration) {
	t.Helper()
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("%s log:\n%s", name, logs.String())
		}
	})
	require.Eventually(t, func() bool {
		resp, err := http.Get(readyURL)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, within, 100*time.Millisecond, "%s did not become ready", name)
}
