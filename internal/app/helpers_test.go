package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/salve-sre/salve/internal/app"
	"github.com/salve-sre/salve/internal/audit"
	"github.com/salve-sre/salve/internal/runs"
	"github.com/salve-sre/salve/internal/testenv"
	"github.com/salve-sre/salve/workflows"
)

// target is a local HTTP endpoint that runbook steps call; it counts hits
// per path and per Idempotency-Key.
type target struct {
	*httptest.Server
	mu   sync.Mutex
	hits map[string]int
	keys map[string]int
}

func newTarget(t *testing.T) *target {
	tg := &target{hits: map[string]int{}, keys: map[string]int{}}
	tg.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tg.mu.Lock()
		tg.hits[r.URL.Path]++
		tg.keys[r.Header.Get("Idempotency-Key")]++
		tg.mu.Unlock()
		_, _ = io.WriteString(w, `{"ok":true}`)
	}))
	t.Cleanup(tg.Close)
	return tg
}

func (tg *target) count(path string) int {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	return tg.hits[path]
}

func writeRunbook(t *testing.T, dir, name, yaml string) {
	t.Helper()
	require.NoError(t, os.WriteFile(filepath.Join(dir, name+".yaml"), []byte(yaml), 0o600))
}

func startDev(t *testing.T, runbookDir string) *app.Process {
	t.Helper()
	return startDevWith(t, runbookDir, "")
}

func startDevWith(t *testing.T, runbookDir, auditDB string) *app.Process {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d, err := app.Start(ctx, app.Config{
		DataDir:      t.TempDir(),
		Listen:       "127.0.0.1:0",
		WebhookToken: "test-token-6f1c0d9e7a3b42c8a6e1f0d4b7c9e2a1",
		RunbooksDir:  runbookDir,
		AuditDB:      auditDB,
		TemporalPort: -1,
		NATSPort:     -1,
		UIPort:       -1,
		Version:      "test",
		Log:          slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	require.NoError(t, err)
	t.Cleanup(d.Close)
	registerDev(d)
	return d
}

// testWriter sends logs to t.Log so they show only for failing tests.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func postWebhook(t *testing.T, url, token, body string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url+"/v1/alertmanager", strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Logf("webhook answered %d: %s", resp.StatusCode, b)
	}
	return resp.StatusCode
}

// webhook is one alert's webhook; fingerprint names the alert and is made
// an Alertmanager fingerprint (testenv.Fingerprint) unless it is one.
func webhook(status, alertname, instance, fingerprint string, startsAt time.Time, annotations map[string]string) string {
	ann, _ := json.Marshal(annotations)
	fingerprint = fingerprintOf(fingerprint)
	return fmt.Sprintf(`{"version":"4","groupKey":"g","status":%q,"receiver":"salve","externalURL":"http://am",
"alerts":[{"status":%q,"labels":{"alertname":%q,"instance":%q},"annotations":%s,
"startsAt":%q,"endsAt":"0001-01-01T00:00:00Z","fingerprint":%q}]}`,
		status, status, alertname, instance, ann, startsAt.UTC().Format(time.RFC3339Nano), fingerprint)
}

// fingerprintOf keeps an Alertmanager fingerprint and turns any other
// test name into one.
func fingerprintOf(name string) string {
	if len(name) == 16 && strings.Trim(name, "0123456789abcdef") == "" {
		return name
	}
	return testenv.Fingerprint(name)
}

func listRuns(t *testing.T, url string) []runs.Summary {
	t.Helper()
	resp, err := apiGet(url + "/v1/runs")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var body struct {
		Runs []runs.Summary `json:"runs"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	return body.Runs
}

func getRun(t *testing.T, url, workflowID string) (runs.Detail, int) {
	t.Helper()
	resp, err := apiGet(url + "/v1/runs/" + workflowID)
	require.NoError(t, err)
	defer resp.Body.Close()
	var d runs.Detail
	if resp.StatusCode == http.StatusOK {
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&d))
	}
	return d, resp.StatusCode
}

// waitRunStatus polls the API until the run reaches status.
func waitRunStatus(t *testing.T, url, workflowID, status string, within time.Duration) runs.Detail {
	t.Helper()
	var last runs.Detail
	require.Eventually(t, func() bool {
		d, code := getRun(t, url, workflowID)
		last = d
		return code == http.StatusOK && d.Status == status
	}, within, 200*time.Millisecond, "run %s never reached %s; last: %+v", workflowID, status, last)
	return last
}

func stringsReader(s string) io.Reader { return strings.NewReader(s) }

// devTokens maps each started dev's base URL to its admin API token.
var devTokens sync.Map

func registerDev(d *app.Process) { devTokens.Store(d.URL, d.AdminToken) }

// apiGet is http.Get with the admin token of the dev that serves url.
func apiGet(url string) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	devTokens.Range(func(k, v any) bool {
		if strings.HasPrefix(url, k.(string)+"/") {
			req.Header.Set("Authorization", "Bearer "+v.(string))
			return false
		}
		return true
	})
	return http.DefaultClient.Do(req)
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := apiGet(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NoError(t, json.NewDecoder(resp.Body).Decode(v))
}

func auditEvents(t *testing.T, base, query string) []audit.Record {
	t.Helper()
	var body struct {
		Events []audit.Record `json:"events"`
	}
	getJSON(t, base+"/v1/audit?limit=10000&"+query, &body)
	return body.Events
}

// fetchHistory reads a run's full Temporal history.
func fetchHistory(t *testing.T, temporalAddr, workflowID, runID string) *historypb.History {
	t.Helper()
	c, err := client.Dial(client.Options{HostPort: temporalAddr})
	require.NoError(t, err)
	defer c.Close()
	it := c.GetWorkflowHistory(context.Background(), workflowID, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	var h historypb.History
	for it.HasNext() {
		ev, err := it.Next()
		require.NoError(t, err)
		h.Events = append(h.Events, ev)
	}
	return &h
}

// saveHistory writes a run's Temporal history for the workflow replay test
// when SALVE_UPDATE_HISTORY=1, as workflows/testdata/history-NAME-revN.json
// for the current workflow revision N (the command is in
// workflows/replay_test.go). Run it for a new revision, never to paper
// over a failure: older revisions' files stay, so their runs still replay.
func saveHistory(t *testing.T, temporalAddr, workflowID, runID, name string) {
	t.Helper()
	if os.Getenv("SALVE_UPDATE_HISTORY") != "1" {
		return
	}
	path := fmt.Sprintf("../../workflows/testdata/history-%s-rev%d.json", name, workflows.CurrentRevision)
	h := fetchHistory(t, temporalAddr, workflowID, runID)
	b, err := protojson.MarshalOptions{Indent: "  "}.Marshal(h)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, b, 0o644))
	t.Logf("wrote %s (%d events)", path, len(h.Events))
}
