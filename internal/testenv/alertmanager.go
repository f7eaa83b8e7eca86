package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Alertmanager is a real Alertmanager (Debian's prometheus-alertmanager)
// running on loopback with one webhook receiver.
type Alertmanager struct {
	URL    string
	amtool string
}

const alertmanagerInstall = "apt-get install -y prometheus-alertmanager"

// StartAlertmanager runs Alertmanager with every alert routed to webhookURL
// with a bearer token, and short group timings so tests are quick.
func StartAlertmanager(t testing.TB, webhookURL, token string) *Alertmanager {
	t.Helper()
	bin := Binary(t, "prometheus-alertmanager", alertmanagerInstall)
	amtool := Binary(t, "amtool", alertmanagerInstall)
	dir := t.TempDir()
	cfg := fmt.Sprintf(`route:
  receiver: salve
  group_by: [alertname, instance]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: salve
    webhook_configs:
      - url: %q
        send_resolved: true
        max_alerts: 1000
        http_config:
          authorization:
            type: Bearer
            credentials: %q
`, webhookURL, token)
	cfgPath := filepath.Join(dir, "alertmanager.yml")
	require.NoError(t, os.WriteFile(cfgPath, []byte(cfg), 0o600))
	port := FreePort(t)
	cmd := exec.Command(bin,
		"--config.file="+cfgPath,
		"--storage.path="+filepath.Join(dir, "data"),
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port),
		"--cluster.listen-address=", // no gossip
		"--log.level=warn",
	)
	am := &Alertmanager{URL: fmt.Sprintf("http://127.0.0.1:%d", port), amtool: amtool}
	runServer(t, "alertmanager", cmd, am.URL+"/-/ready", 30*time.Second)
	return am
}

// AddAlert fires an alert with amtool, as an operator or Prometheus would.
// args are label=value pairs and --annotation=k=v flags.
func (a *Alertmanager) AddAlert(t testing.TB, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	full := append([]string{"alert", "add", "--alertmanager.url=" + a.URL}, args...)
	out, err := exec.CommandContext(ctx, a.amtool, full...).CombinedOutput()
	require.NoError(t, err, "amtool %v: %s", full, out)
}
