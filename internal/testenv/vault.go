package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// VaultServer is a real HashiCorp Vault v1.14.0 in dev mode on loopback:
// in-memory storage, initialised and unsealed, plain HTTP, KV v2 mounted at
// secret/. Secrets engine types kv and kubernetes (no transit), auth methods
// token and approle, and the file audit device are available. The binary
// is Vault's own core and HTTP handler composed by internal/tools/vault and
// built by scripts/vault-tools.sh.
type VaultServer struct {
	// Addr is the API's URL, http://127.0.0.1:PORT (VAULT_ADDR).
	Addr string
	// RootToken is a root token (VAULT_TOKEN), random per server.
	RootToken string

	client *http.Client
	bin    string
	port   int
	stop   func()
}

const (
	vaultVersion = "1.14.0"
	vaultInstall = "run scripts/vault-tools.sh, which builds it"
)

// Vault starts a fresh Vault dev server with a random root token and
// returns once /v1/sys/health reports it initialised and unsealed. It is
// stopped (SIGTERM, then SIGKILL) when the test ends, and its log is shown
// if the test failed. A missing binary fails the test, saying to run
// scripts/vault-tools.sh. SALVE_VAULT_BIN overrides the binary's path.
func Vault(t testing.TB) *VaultServer {
	t.Helper()
	begin := time.Now()
	bin := vaultBinary(t)
	port := FreePort(t)
	v := &VaultServer{
		Addr:      fmt.Sprintf("http://127.0.0.1:%d", port),
		RootToken: "root-" + vaultRandomHex(t),
		client:    &http.Client{Timeout: 30 * time.Second},
	}

	v.bin, v.port = bin, port
	v.start(t)
	t.Logf("vault %s ready at %s in %s", vaultVersion, v.Addr, time.Since(begin).Round(10*time.Millisecond))
	return v
}

// Do sends a request to the API as the root token; path is relative to
// /v1/ (e.g. "secret/data/app"). body is sent as JSON when not nil. It
// returns the HTTP status and the decoded JSON response (nil when the
// response has no body, e.g. 204).
func (v *VaultServer) Do(t testing.TB, method, path string, body any) (int, map[string]any) {
	t.Helper()
	return v.DoToken(t, v.RootToken, method, path, body)
}

// DoToken is Do with another token; an empty token sends none.
func (v *VaultServer) DoToken(t testing.TB, token, method, path string, body any) (int, map[string]any) {
	t.Helper()
	var r io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		require.NoError(t, err)
		r = bytes.NewReader(raw)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, v.Addr+"/v1/"+strings.TrimPrefix(path, "/"), r)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("X-Vault-Token", token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := v.client.Do(req)
	require.NoError(t, err, "%s %s", method, path)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	if len(bytes.TrimSpace(data)) == 0 {
		return resp.StatusCode, nil
	}
	var out map[string]any
	require.NoError(t, json.Unmarshal(data, &out), "%s %s: HTTP %d: %s", method, path, resp.StatusCode, data)
	return resp.StatusCode, out
}

// MustDo is Do that fails the test unless the response is 2xx.
func (v *VaultServer) MustDo(t testing.TB, method, path string, body any) map[string]any {
	t.Helper()
	status, out := v.Do(t, method, path, body)
	require.True(t, status/100 == 2, "%s %s: HTTP %d: %v", method, path, status, out)
	return out
}

// healthy reports whether /v1/sys/health says initialised and unsealed.
func (v *VaultServer) healthy() bool {
	resp, err := v.client.Get(v.Addr + "/v1/sys/health")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var health struct{ Initialized, Sealed bool }
	return resp.StatusCode == http.StatusOK &&
		json.NewDecoder(resp.Body).Decode(&health) == nil && health.Initialized && !health.Sealed
}

func vaultRandomHex(t testing.TB) string {
	b := make([]byte, 16)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return hex.EncodeToString(b)
}

// vaultBinary finds the binary scripts/vault-tools.sh builds:
// $SALVE_VAULT_BIN, else the versioned cache path the script writes.
func vaultBinary(t testing.TB) string {
	t.Helper()
	return cachedTool(t, "SALVE_VAULT_BIN", "vault-"+vaultVersion, vaultInstall)
}

// cachedTool returns the path of a test server a script built into the
// versioned cache: $env, else ${SALVE_CACHE:-~/.cache/salve}/bin/name. A
// missing one fails the test, saying how to build it.
func cachedTool(t testing.TB, env, name, install string) string {
	t.Helper()
	path := os.Getenv(env)
	if path == "" {
		cache := os.Getenv("SALVE_CACHE")
		if cache == "" {
			home, err := os.UserHomeDir()
			require.NoError(t, err)
			cache = filepath.Join(home, ".cache", "salve")
		}
		path = filepath.Join(cache, "bin", name)
	}
	if info, err := os.Stat(path); err != nil || info.IsDir() || info.Mode()&0o111 == 0 {
		t.Fatalf("%s is missing (%s): %s (or set %s)", name, path, install, env)
	}
	return path
}

// start runs the server process on v.port and waits until it is ready.
func (v *VaultServer) start(t testing.TB) {
	t.Helper()
	bin, port := v.bin, v.port
	logPath := filepath.Join(t.TempDir(), "vault.log")
	logFile, err := os.Create(logPath)
	require.NoError(t, err)
	cmd := exec.Command(bin, "server", "-dev",
		fmt.Sprintf("-dev-listen-address=127.0.0.1:%d", port),
		"-dev-root-token-id="+v.RootToken,
		"-log-level=info",
		// Our flag, not Vault's: the server exits when this process's end
		// of the pipe closes, so a test binary that dies (a -timeout panic,
		// a kill) does not leave Vault running.
		"-exit-on-stdin-eof",
	)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	_, err = cmd.StdinPipe() // the write end stays open until Wait returns
	require.NoError(t, err)
	// A clean environment for Vault's own variables.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "VAULT_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	require.NoError(t, cmd.Start(), "starting %s", bin)
	done := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		logFile.Close()
		close(done)
	}()
	stop := func() {
		select {
		case <-done:
		default:
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
		}
	}
	v.stop = stop
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			if out, err := os.ReadFile(logPath); err == nil {
				t.Logf("vault log:\n%s", out)
			}
		}
	})

	deadline := time.Now().Add(30 * time.Second)
	for {
		if v.healthy() {
			break
		}
		select {
		case <-done:
			t.Fatalf("vault exited (%v) while starting", waitErr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("vault was not initialised and unsealed after 30s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Restart stops the server and starts a new one on the same address with
// the same root token, as an operator's restart would look to Salve. Dev
// mode keeps everything in memory: mounts, policies, roles and tokens
// other than the root token are gone and must be set up again.
func (v *VaultServer) Restart(t testing.TB) {
	t.Helper()
	v.stop()
	v.start(t)
}
