// Package testenv starts the real servers Salve's integration tests use —
// embedded NATS JetStream and Temporal, Debian's Alertmanager — on free
// loopback ports, and stops them when the test ends. A missing server is a
// test failure with the command that installs it, never a skip.
package testenv

import (
	"context"
	"log/slog"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"

	"github.com/salve-sre/salve/internal/bus"
	"github.com/salve-sre/salve/internal/devnats"
	"github.com/salve-sre/salve/internal/devstack"
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

// Temporal starts an embedded Temporal server. With an empty DBPath it is
// in memory. The caller may Stop it early (to test an outage); Stop is safe
// to call twice.
func Temporal(t testing.TB, opts devstack.TemporalOptions) *devstack.Temporal {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ts, err := devstack.StartTemporal(ctx, opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = ts.Stop() })
	return ts
}

// TemporalClient connects to ts.
func TemporalClient(t testing.TB, ts *devstack.Temporal) client.Client {
	t.Helper()
	log := slog.New(slog.NewTextHandler(tbWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	c, err := client.Dial(client.Options{HostPort: ts.HostPort(), Namespace: ts.Namespace(), Logger: sdklog.NewStructuredLogger(log)})
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c
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
