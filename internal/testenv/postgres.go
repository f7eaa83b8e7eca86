package testenv

import (
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver, to wait for readiness
	"github.com/stretchr/testify/require"
)

const postgresInstall = "apt-get install -y postgresql"

// Postgres starts a throwaway PostgreSQL server (Debian's package) on a free
// loopback port and returns a connection URL for an empty database.
// PostgreSQL refuses to run as root, so as root the server runs as the
// package's postgres user.
func Postgres(t testing.TB) string {
	t.Helper()
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	if len(bins) == 0 {
		t.Fatalf("PostgreSQL server is not installed; the README's test command installs it (%s)", postgresInstall)
	}
	sort.Strings(bins)
	binDir := filepath.Dir(bins[len(bins)-1])

	dir, err := os.MkdirTemp("", "salve-pg-")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	data := filepath.Join(dir, "data")

	var asUser []string
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		require.NoError(t, err, "running as root needs the postgres user that Debian's package creates")
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		require.NoError(t, os.Chown(dir, uid, gid))
		asUser = []string{"runuser", "-u", "postgres", "--"}
	}
	run := func(args ...string) *exec.Cmd {
		full := append(append([]string{}, asUser...), args...)
		return exec.Command(full[0], full[1:]...)
	}
	out, err := run(filepath.Join(binDir, "initdb"), "-D", data, "-U", "salve", "--auth=trust", "-E", "UTF8", "--no-sync").CombinedOutput()
	require.NoError(t, err, "initdb: %s", out)

	port := FreePort(t)
	// Logs go to a file, not a pipe: postgres's child processes inherit the
	// descriptor, and a pipe would keep cmd.Wait waiting for them.
	logPath := filepath.Join(dir, "postgres.log")
	logFile, err := os.Create(logPath)
	require.NoError(t, err)
	defer logFile.Close()
	logs := func() string { b, _ := os.ReadFile(logPath); return string(b) }
	cmd := run(filepath.Join(binDir, "postgres"), "-D", data, "-p", strconv.Itoa(port), "-h", "127.0.0.1", "-k", dir,
		"-c", "fsync=off", "-c", "max_connections=50")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		// pg_ctl's fast shutdown stops the postmaster and every backend.
		if out, err := run(filepath.Join(binDir, "pg_ctl"), "stop", "-D", data, "-m", "fast", "-w", "-t", "20").CombinedOutput(); err != nil {
			t.Logf("pg_ctl stop: %v: %s", err, out)
			_ = cmd.Process.Kill()
		}
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("postgres log:\n%s", logs())
		}
	})
	dsn := fmt.Sprintf("postgres://salve@127.0.0.1:%d/postgres?sslmode=disable", port)
	require.Eventually(t, func() bool {
		db, err := sql.Open("pgx", dsn)
		if err != nil {
			return false
		}
		defer db.Close()
		return db.Ping() == nil
	}, 30*time.Second, 100*time.Millisecond, "postgres did not accept connections")
	return dsn
}
