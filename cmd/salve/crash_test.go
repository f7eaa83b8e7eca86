package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/internal/audit"
	"github.com/salve-sre/salve/internal/auth"
)

var salveBin string

func TestMain(m *testing.M) {
	if kind := os.Getenv(helperEnv); kind != "" {
		os.Exit(runHelper(kind))
	}
	dir, err := os.MkdirTemp("", "salve-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	salveBin = filepath.Join(dir, "salve")
	if out, err := exec.Command("go", "build", "-o", salveBin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build salve: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

type proc struct {
	cmd  *exec.Cmd
	logs *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startSalve(t *testing.T, args ...string) *proc {
	t.Helper()
	return startProc(t, salveBin, nil, args...)
}

// startProc starts bin with args and env added to the environment; the
// process is killed when the test ends.
func startProc(t *testing.T, bin string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, args...), logs: &syncBuffer{}}
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if len(env) > 0 {
		p.cmd.Env = append(os.Environ(), env...)
	}
	require.NoError(t, p.cmd.Start())
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			_ = p.cmd.Wait()
		}
		if t.Failed() {
			t.Logf("salve output:\n%s", p.logs.String())
		}
	})
	return p
}

// hitCounter is a target that counts the requests to each path.
func hitCounter(t *testing.T) (*httptest.Server, func(path string) int) {
	t.Helper()
	var mu sync.Mutex
	hits := map[string]int{}
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits[r.URL.Path]++
		mu.Unlock()
	}))
	t.Cleanup(target.Close)
	return target, func(p string) int { mu.Lock(); defer mu.Unlock(); return hits[p] }
}

// adminConfig writes dir/salve.yaml with a new admin API token (mode is
// the file's), makes it the token the test's API calls use, and returns
// the file's path.
func adminConfig(t *testing.T, dir string, mode os.FileMode) string {
	t.Helper()
	tok, hash, err := auth.NewToken()
	require.NoError(t, err)
	path := filepath.Join(dir, "salve.yaml")
	require.NoError(t, os.WriteFile(path, []byte("auth:\n  tokens:\n    - {subject: ops, role: admin, sha256: "+hash+"}\n"), mode))
	apiToken = tok
	return path
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func waitReady(t *testing.T, base string) {
	t.Helper()
	require.Eventually(t, func() bool {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 2*time.Minute, 200*time.Millisecond, "salve dev never became ready")
}

type runView struct {
	Status string `json:"status"`
	Run    *struct {
		Steps []struct {
			Name  string `json:"name"`
			State string `json:"state"`
		} `json:"steps"`
	} `json:"run"`
}

// apiToken is the admin token salve dev wrote into the data dir.
var apiToken string

func readRun(base, id string) (runView, bool) {
	var v runView
	req, _ := http.NewRequest(http.MethodGet, base+"/v1/runs/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+apiToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return v, false
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return v, false
	}
	return v, json.NewDecoder(resp.Body).Decode(&v) == nil
}

const crashRunbook = `apiVersion: salve/v1
kind: Runbook
metadata: {name: crash}
spec:
  trigger:
    matchers: ['alertname="Crashy"']
    incidentKey: '{{ .Labels.instance }}'
  params:
    url: {fromAnnotation: target, required: true, pattern: 'http://127\.0\.0\.1:[0-9]+'}
  steps:
    - {name: first, action: http.request, with: {url: '{{ .Params.url }}/first', method: POST}}
    - {name: hold, action: sleep, with: {duration: 6s}}
    - {name: second, action: http.request, with: {url: '{{ .Params.url }}/second', method: POST}}
`

// kill -9 of `salve dev` in the middle of a run: after a restart on the same
// data dir the run resumes at the step it was in and every step acts once.
func TestDevKilledMidRunResumesAfterRestart(t *testing.T) {
	target, count := hitCounter(t)

	rbDir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(rbDir, "crash.yaml"), []byte(crashRunbook), 0o600))
	dataDir := t.TempDir()
	port := freePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	args := []string{"dev", "--data-dir", dataDir, "--runbooks", rbDir, "--listen", fmt.Sprintf("127.0.0.1:%d", port),
		"--temporal-port", "-1", "--nats-port", "-1", "--ui-port", "-1", "--webhook-token", "test-token-6f1c0d9e7a3b42c8a6e1f0d4b7c9e2a1"}

	first := startSalve(t, args...)
	waitReady(t, base)
	tok, err := os.ReadFile(filepath.Join(dataDir, "admin-token"))
	require.NoError(t, err, "salve dev writes an admin token into its data dir")
	apiToken = strings.TrimSpace(string(tok))
	t.Setenv("SALVE_TOKEN", apiToken) // for the CLI commands below
	body := fmt.Sprintf(`{"version":"4","status":"firing","receiver":"salve","alerts":[{"status":"firing",
"labels":{"alertname":"Crashy","instance":"api-1"},"annotations":{"target":%q},
"startsAt":"2026-11-24T08:00:00Z","fingerprint":"0000000000c0ffee"}]}`, target.URL)
	req, _ := http.NewRequest(http.MethodPost, base+"/v1/alertmanager", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer test-token-6f1c0d9e7a3b42c8a6e1f0d4b7c9e2a1")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	const id = "salve/crash/api-1"
	// Kill while the run waits on its durable timer, after "first" acted.
	require.Eventually(t, func() bool {
		v, ok := readRun(base, id)
		return ok && v.Run != nil && len(v.Run.Steps) >= 2 && v.Run.Steps[0].State == "succeeded" && v.Run.Steps[1].State == "running"
	}, time.Minute, 100*time.Millisecond)
	require.NoError(t, first.cmd.Process.Signal(syscall.SIGKILL))
	_ = first.cmd.Wait()
	require.Equal(t, 1, count("/first"))
	require.Zero(t, count("/second"))

	second := startSalve(t, args...)
	waitReady(t, base)
	require.Eventually(t, func() bool {
		v, ok := readRun(base, id)
		return ok && v.Status == "succeeded"
	}, 2*time.Minute, 200*time.Millisecond, "run did not complete after restart")
	require.Equal(t, 1, count("/first"), "a step that finished before the crash is not repeated")
	require.Equal(t, 1, count("/second"))

	// The audit log holds the run, and the CLI exports it.
	require.Eventually(t, func() bool {
		out, err := exec.Command(salveBin, "audit", "export", "--server", base, "--run", id, "--format", "csv").CombinedOutput()
		return err == nil && strings.Contains(string(out), "run.finished")
	}, 30*time.Second, 200*time.Millisecond)
	out, err := exec.Command(salveBin, "audit", "tail", "--server", base, "--run", id, "-n", "3").CombinedOutput()
	require.NoError(t, err, string(out))
	require.Contains(t, string(out), "run.finished")
	out, err = exec.Command(salveBin, "incident", "timeline", id, "--server", base).CombinedOutput()
	require.NoError(t, err, string(out))
	require.Contains(t, string(out), "# Incident timeline: api-1")
	require.Contains(t, string(out), "step second succeeded")

	// Ctrl-C stops cleanly, with exit code 0.
	require.NoError(t, second.cmd.Process.Signal(os.Interrupt))
	done := make(chan error, 1)
	go func() { done <- second.cmd.Wait() }()
	select {
	case err := <-done:
		require.NoError(t, err, "salve dev should exit 0 on SIGINT")
	case <-time.After(time.Minute):
		t.Fatal("salve dev did not stop within a minute of SIGINT")
	}
	require.Contains(t, second.logs.String(), "shutting down")

	// The chain verifies offline; after an edit it does not, with exit 1.
	db := filepath.Join(dataDir, "audit.db")
	out, err = exec.Command(salveBin, "audit", "verify", "--db", db, "--nats", "").CombinedOutput()
	require.NoError(t, err, string(out))
	require.Contains(t, string(out), "OK: ")
	store, err := audit.Open(context.Background(), db)
	require.NoError(t, err)
	_, err = store.DB().Exec(`UPDATE audit_events SET event_json = REPLACE(event_json, '"succeeded"', '"failed"') WHERE action = 'step.succeeded'`)
	require.NoError(t, err)
	require.NoError(t, store.Close())
	cmd := exec.Command(salveBin, "audit", "verify", "--db", db, "--nats", "")
	out, _ = cmd.CombinedOutput()
	require.Equal(t, 1, cmd.ProcessState.ExitCode(), string(out))
	require.Contains(t, string(out), "BROKEN at sequence")
}
