//go:build unix

package devkube_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/salve-sre/salve/internal/devkube"
)

// Start gives a working cluster, and Stop leaves no process behind.
func TestStartStop(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	begin := time.Now()
	c, err := devkube.Start(ctx, devkube.Options{Dir: dir, Nodes: 1, Log: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop() }) // if the test fails before its own Stop
	t.Logf("started in %s", time.Since(begin).Round(100*time.Millisecond))

	if len(c.Nodes) != 1 {
		t.Errorf("nodes: %v, want one", c.Nodes)
	}
	if kc, err := os.ReadFile(c.KubeconfigPath); err != nil || !strings.Contains(string(kc), c.Host) {
		t.Errorf("kubeconfig %s does not name %s (%v)", c.KubeconfigPath, c.Host, err)
	}
	var nodes struct{ Items []any }
	if _, err := c.Do(ctx, http.MethodGet, "/api/v1/nodes", nil, &nodes); err != nil || len(nodes.Items) != 1 {
		t.Errorf("GET nodes: %d nodes, %v", len(nodes.Items), err)
	}

	procs := c.Processes()
	names := make([]string, 0, len(procs))
	for _, p := range procs {
		names = append(names, p.Name)
		if p.Exited || !alive(p.PID) {
			t.Errorf("%s (pid %d) is not running before Stop", p.Name, p.PID)
		}
		if _, err := os.Stat(p.Log); err != nil {
			t.Errorf("%s log: %v", p.Name, err)
		}
	}
	if got, want := strings.Join(names, " "), "etcd kube-apiserver kube-controller-manager kube-scheduler kwok"; got != want {
		t.Errorf("processes %q, want %q", got, want)
	}

	begin = time.Now()
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("stopped in %s", time.Since(begin).Round(100*time.Millisecond))
	for _, p := range c.Processes() {
		if !p.Exited || !p.Stopped {
			t.Errorf("%s: exited %v, stopped by Stop %v", p.Name, p.Exited, p.Stopped)
		}
		if alive(p.PID) {
			t.Errorf("%s (pid %d) is still running after Stop", p.Name, p.PID)
		}
	}
	if err := c.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

// alive tells whether a process with this PID exists (Stop reaps its
// children, so a stopped one is gone, not a zombie).
func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// A missing binary says how to get it, and starts nothing.
func TestMissingBinary(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "no-such-kube")
	_, err := devkube.Start(context.Background(), devkube.Options{Dir: filepath.Join(dir, "kube"), KubeBin: missing})
	if err == nil {
		t.Fatal("Start succeeded without a kube binary")
	}
	for _, want := range []string{"run scripts/kube-tools.sh", missing, "SALVE_KUBE_BIN"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "kube")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Start created its directory before finding the binaries: %v", err)
	}

	// The same through the environment, for kwok.
	t.Setenv("SALVE_KWOK_BIN", missing)
	_, err = devkube.Start(context.Background(), devkube.Options{Dir: dir, KubeBin: os.Args[0]})
	if err == nil || !strings.Contains(err.Error(), "run scripts/kube-tools.sh") || !strings.Contains(err.Error(), "SALVE_KWOK_BIN") {
		t.Errorf("missing kwok: %v", err)
	}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
