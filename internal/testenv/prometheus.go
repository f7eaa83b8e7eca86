package testenv

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Prometheus is a real Prometheus server (Debian's prometheus package)
// running on loopback and scraping the test's targets every second.
type Prometheus struct {
	URL     string
	targets int
}

const prometheusInstall = "apt-get install -y prometheus"

// StartPrometheus runs Prometheus scraping each target's /metrics every
// second (and evaluating every second), waits until it is ready, and stops
// it when the test ends. Targets are host:port, or http://host:port as an
// httptest.Server's URL gives it.
func StartPrometheus(t testing.TB, scrapeTargets ...string) *Prometheus {
	t.Helper()
	return StartPrometheusWith(t, PrometheusOptions{Targets: scrapeTargets})
}

// PrometheusOptions configure StartPrometheusWith.
type PrometheusOptions struct {
	Targets []string // scraped every second (job "test")
	// RuleFiles are evaluated every second.
	RuleFiles []string
	// Alertmanager is the URL alerts are sent to; "" = none.
	Alertmanager string
	// DataDir is an existing TSDB (e.g. BackfillPrometheus's); "" = new.
	DataDir string
}

// StartPrometheusWith runs Prometheus as o says, waits until it is ready,
// and stops it when the test ends.
func StartPrometheusWith(t testing.TB, o PrometheusOptions) *Prometheus {
	t.Helper()
	bin := Binary(t, "prometheus", prometheusInstall)
	dir := t.TempDir()
	quote := func(ss []string, trim bool) string {
		out := make([]string, len(ss))
		for i, s := range ss {
			if trim {
				s = strings.TrimSuffix(strings.TrimPrefix(s, "http://"), "/")
			}
			out[i] = fmt.Sprintf("%q", s)
		}
		return strings.Join(out, ", ")
	}
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files: [%s]
scrape_configs:
  - job_name: test
    static_configs:
      - targets: [%s]
`, quote(o.RuleFiles, false), quote(o.Targets, true))
	if o.Alertmanager != "" {
		cfg += fmt.Sprintf("alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: [%s]\n", quote([]string{o.Alertmanager}, true))
	}
	cfgPath := filepath.Join(dir, "prometheus.yml")
	require.NoError(t, os.WriteFile(cfgPath, []byte(cfg), 0o600))
	data := o.DataDir
	if data == "" {
		data = filepath.Join(dir, "data")
	}
	var extra []string
	if o.Alertmanager != "" {
		// Alerts that fired before the notifier found the Alertmanager
		// are sent again after this (1m by default).
		extra = append(extra, "--rules.alert.resend-delay=1s")
	}
	p := runPrometheus(t, bin, cfgPath, data, extra...)
	p.targets = len(o.Targets)
	return p
}

// StartPrometheusOn runs Prometheus, scraping nothing, on an existing
// TSDB directory (e.g. one BackfillPrometheus made), and stops it when
// the test ends.
func StartPrometheusOn(t testing.TB, dataDir string) *Prometheus {
	t.Helper()
	bin := Binary(t, "prometheus", prometheusInstall)
	cfgPath := filepath.Join(t.TempDir(), "prometheus.yml")
	require.NoError(t, os.WriteFile(cfgPath, []byte("global:\n  evaluation_interval: 1m\n"), 0o600))
	return runPrometheus(t, bin, cfgPath, dataDir)
}

// BackfillPrometheus writes OpenMetrics text (samples with timestamps,
// ending in "# EOF") into a new TSDB directory with promtool tsdb
// create-blocks-from openmetrics, and returns the directory.
func BackfillPrometheus(t testing.TB, openMetrics []byte) string {
	t.Helper()
	bin := Binary(t, "promtool", prometheusInstall)
	dir := t.TempDir()
	in := filepath.Join(dir, "input.om")
	require.NoError(t, os.WriteFile(in, openMetrics, 0o600))
	data := filepath.Join(dir, "data")
	out, err := exec.Command(bin, "tsdb", "create-blocks-from", "openmetrics", in, data).CombinedOutput()
	require.NoError(t, err, "promtool tsdb create-blocks-from openmetrics: %s", out)
	return data
}

// runPrometheus starts Prometheus with a config and a TSDB directory and
// waits until it is ready.
func runPrometheus(t testing.TB, bin, cfgPath, dataDir string, extra ...string) *Prometheus {
	t.Helper()
	port := FreePort(t)
	cmd := exec.Command(bin, append([]string{
		"--config.file=" + cfgPath,
		"--storage.tsdb.path=" + dataDir,
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port),
		"--log.level=warn",
	}, extra...)...)
	p := &Prometheus{URL: fmt.Sprintf("http://127.0.0.1:%d", port)}
	runServer(t, "prometheus", cmd, p.URL+"/-/ready", 30*time.Second)
	return p
}

// WaitTargetsUp waits until every scrape target has been scraped
// successfully and its samples are queryable, or fails the test saying
// what Prometheus reports about each target.
func (p *Prometheus) WaitTargetsUp(t testing.TB) {
	t.Helper()
	var last string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if p.targetsUp(&last) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus targets not up within 30s: %s", last)
		}
	}
}

// targetsUp reports whether every target is up, and describes them in last.
func (p *Prometheus) targetsUp(last *string) bool {
	resp, err := http.Get(p.URL + "/api/v1/targets?state=active")
	if err != nil {
		*last = err.Error()
		return false
	}
	defer resp.Body.Close()
	var ans struct {
		Data struct {
			ActiveTargets []struct {
				ScrapeURL string `json:"scrapeUrl"`
				Health    string `json:"health"`
				LastError string `json:"lastError"`
			} `json:"activeTargets"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil {
		*last = err.Error()
		return false
	}
	up := 0
	var states []string
	for _, tg := range ans.Data.ActiveTargets {
		states = append(states, strings.TrimSpace(fmt.Sprintf("%s %s %s", tg.ScrapeURL, tg.Health, tg.LastError)))
		if tg.Health == "up" {
			up++
		}
	}
	*last = strings.Join(states, "; ")
	// A target turns healthy just before its scrape is committed; the up
	// series is committed with the samples, so once a query sees it the
	// samples are queryable too.
	return up == p.targets && p.upSeries() == p.targets
}

// upSeries counts the targets whose up sample a query sees as 1.
func (p *Prometheus) upSeries() int {
	resp, err := http.Get(p.URL + "/api/v1/query?query=" + url.QueryEscape("up == 1"))
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var ans struct {
		Data struct {
			Result []json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil {
		return -1
	}
	return len(ans.Data.Result)
}
