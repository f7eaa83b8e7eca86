package app_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/internal/app"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "salve.yaml")
	require.NoError(t, os.WriteFile(path, []byte(body), 0o600))
	return path
}

// The safety section of the config file: read strictly, validated with
// every problem named, relative files resolved next to the config.
func TestConfigSafetySection(t *testing.T) {
	c, err := app.LoadFileConfig(writeConfig(t, `
safety:
  maxConcurrentRuns: 20
  defaults: {cooldown: 30m, maxRunsPerHour: 10, maxRunsPerDay: 50, maxConcurrent: 3}
  maintenanceWindows:
    - {name: db upgrade, start: 2026-12-01T02:00:00Z, end: 2026-12-01T04:00:00Z, runbooks: [restart-postgres]}
  alertmanager: {url: "http://alertmanager:9093", checkSilences: true, bearerTokenFile: am-token}
`))
	require.NoError(t, err)
	require.Equal(t, 20, c.Safety.MaxConcurrentRuns)
	require.Equal(t, 30*time.Minute, c.Safety.Defaults.Cooldown.D())
	require.Equal(t, time.Date(2026, 12, 1, 2, 0, 0, 0, time.UTC), c.Safety.MaintenanceWindows[0].Start.UTC())
	require.True(t, filepath.IsAbs(c.Safety.Alertmanager.BearerTokenFile), "relative to the config file")

	c, err = app.LoadFileConfig(writeConfig(t, "trustedProxies: [10.0.0.0/8, 192.168.1.7, \"fd00::/8\"]\n"))
	require.NoError(t, err)
	require.Len(t, c.TrustedProxies, 3)
	_, err = app.LoadFileConfig(writeConfig(t, "trustedProxies: [ingress-nginx]\n"))
	require.ErrorContains(t, err, `trustedProxies[0]: "ingress-nginx" is neither a CIDR (10.0.0.0/8) nor an IP`)

	_, err = app.LoadFileConfig(writeConfig(t, "safety:\n  maxConcurentRuns: 3\n"))
	require.ErrorContains(t, err, "field maxConcurentRuns not found", "a misspelt setting is an error")

	_, err = app.LoadFileConfig(writeConfig(t, `
safety:
  maxConcurrentRuns: -1
  maintenanceWindows: [{name: "", start: 2026-12-01T04:00:00Z, end: 2026-12-01T02:00:00Z}]
  alertmanager: {checkSilences: true}
`))
	require.ErrorContains(t, err, "safety.maxConcurrentRuns must not be negative")
	require.ErrorContains(t, err, "safety.maintenanceWindows[0].name is required")
	require.ErrorContains(t, err, "safety.maintenanceWindows[0].end must be after start")
	require.ErrorContains(t, err, "safety.alertmanager.checkSilences needs safety.alertmanager.url")
}

func TestConfigTraceURL(t *testing.T) {
	dir := t.TempDir()
	write := func(body string) string {
		p := filepath.Join(dir, "salve.yaml")
		require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
		return p
	}
	c, err := app.LoadFileConfig(write("tracing:\n  traceURL: http://jaeger:16686/trace/{traceId}\n"))
	require.NoError(t, err)
	require.Equal(t, "http://jaeger:16686/trace/{traceId}", c.Tracing.TraceURL)
	_, err = app.LoadFileConfig(write("tracing:\n  traceURL: http://jaeger:16686/search\n"))
	require.ErrorContains(t, err, "tracing.traceURL")
	require.ErrorContains(t, err, "{traceId}")
	c, err = app.LoadFileConfig(write("tracing:\n  incoming: link\n"))
	require.NoError(t, err)
	require.Equal(t, "link", c.Tracing.Incoming)
	_, err = app.LoadFileConfig(write("tracing:\n  incoming: trust\n"))
	require.ErrorContains(t, err, "want continue (join the caller's trace) or link")
	_, err = app.LoadFileConfig(write("tracing:\n  endpoint: http://collector:4318\n"))
	require.ErrorContains(t, err, "endpoint", "exporting is set by OTEL_* variables; an unknown key is refused")
}
