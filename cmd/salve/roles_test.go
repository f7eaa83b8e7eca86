package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The production roles as separate processes: `salve dev --infra-only`
// runs NATS and Temporal, `salve server --roles ingest,trigger,api` takes
// the alert, and `salve worker` runs it. kill -9 of the worker mid-run: a
// second worker finishes the run at the step it was in, and every step
// acts once.
func TestRolesAsSeparateProcesses(t *testing.T) {
	target, count := hitCounter(t)

	rbDir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(rbDir, "crash.yaml"), []byte(crashRunbook), 0o600))
	cfgFile := adminConfig(t, t.TempDir(), 0o600)

	natsPort, temporalPort, httpPort := freePort(t), freePort(t), freePort(t)
	startSalve(t, "dev", "--infra-only", "--data-dir", t.TempDir(), "--nats-port", fmt.Sprint(natsPort),
		"--temporal-port", fmt.Sprint(temporalPort), "--ui=false")
	waitPort(t, natsPort)
	waitPort(t, temporalPort)
	ext := []string{"--nats-url", fmt.Sprintf("nats://127.0.0.1:%d", natsPort), "--temporal-address", fmt.Sprintf("127.0.0.1:%d", temporalPort),
		"--runbooks", rbDir, "--config", cfgFile}

	server := startSalve(t, append([]string{"server", "--roles", "ingest,trigger,api", "--data-dir", t.TempDir(),
		"--listen", fmt.Sprintf("127.0.0.1:%d", httpPort), "--webhook-token", "test-token-6f1c0d9e7a3b42c8a6e1f0d4b7c9e2a1"}, ext...)...)
	worker1 := startSalve(t, append([]string{"worker", "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0"}, ext...)...)
	base := fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	waitReady(t, base) // readiness includes a worker polling Temporal

	body := fmt.Sprintf(`{"version":"4","status":"firing","receiver":"salve","alerts":[{"status":"firing",
"labels":{"alertname":"Crashy","instance":"api-7"},"annotations":{"target":%q},
"startsAt":"2026-11-24T08:00:00Z","fingerprint":"000000000000beef"}]}`, target.URL)
	req, _ := http.NewRequest(http.MethodPost, base+"/v1/alertmanager", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer test-token-6f1c0d9e7a3b42c8a6e1f0d4b7c9e2a1")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	const id = "salve/crash/api-7"
	require.Eventually(t, func() bool {
		v, ok := readRun(base, id)
		return ok && v.Run != nil && len(v.Run.Steps) >= 2 && v.Run.Steps[0].State == "succeeded" && v.Run.Steps[1].State == "running"
	}, time.Minute, 100*time.Millisecond, "the worker never ran the first step; server:\n%s\nworker:\n%s", server.logs.String(), worker1.logs.String())
	require.NoError(t, worker1.cmd.Process.Signal(syscall.SIGKILL))
	_ = worker1.cmd.Wait()
	require.Equal(t, 1, count("/first"))

	startSalve(t, append([]string{"worker", "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0"}, ext...)...)
	require.Eventually(t, func() bool {
		v, ok := readRun(base, id)
		return ok && v.Status == "succeeded"
	}, 2*time.Minute, 200*time.Millisecond, "the run did not finish on the second worker")
	require.Equal(t, 1, count("/first"), "a step that finished before the worker died is not repeated")
	require.Equal(t, 1, count("/second"))

	// The api role refuses requests without a token: production makes none.
	resp, err = http.Get(base + "/v1/runs")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
}

func waitPort(t *testing.T, port int) {
	t.Helper()
	require.Eventually(t, func() bool {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	}, 2*time.Minute, 200*time.Millisecond, "port %d never opened", port)
}
