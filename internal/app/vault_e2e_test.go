package app_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	historypb "go.temporal.io/api/history/v1"
	"google.golang.org/protobuf/encoding/protojson"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/salve-sre/salve/internal/app"
	"github.com/salve-sre/salve/internal/bus"
	"github.com/salve-sre/salve/internal/runs"
	"github.com/salve-sre/salve/internal/testenv"
	"github.com/salve-sre/salve/internal/vault"
)

const vaultScaleRunbook = `apiVersion: salve/v1
kind: Runbook
metadata: {name: vault-scale}
spec:
  trigger:
    matchers: ['alertname="Busy"']
    incidentKey: '{{ .Labels.namespace }}'
  params:
    namespace: {fromLabel: namespace, required: true, type: enum, values: [shop, payments]}
  credentials:
    kubernetes: {vaultRole: 'salve-{{ .Params.namespace }}'}
  steps:
    - name: scale
      action: kubernetes.scale
      with: {namespace: '{{ .Params.namespace }}', name: web, replicas: 3}
      retry: {maxAttempts: 100, initialInterval: 1s, maxInterval: 2s}
    - name: check
      action: kubernetes.get
      with: {namespace: '{{ .Params.namespace }}', name: web}
`

// safeBuffer collects Salve's logs for the leak search.
type safeBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *safeBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *safeBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Salve with a real Vault: an alert-triggered run scales a Deployment with
// a token Vault issued for that step. While Vault is unreachable the step
// waits and acts on nothing; when Vault is back the run completes, every
// issued credential is revoked and the token is refused by the API server.
// Then the token is searched for everywhere Salve writes — the run's full
// Temporal history, Salve's logs at debug level, the AUDIT stream and the
// API's answers — and found nowhere.
func TestVaultCredentialsEndToEndAndNoLeaks(t *testing.T) {
	k := testenv.Kube(t)
	v := testenv.Vault(t)
	proxy := testenv.NewVaultProxy(t, v)
	cfg, err := clientcmd.BuildConfigFromFlags("", k.KubeconfigPath)
	require.NoError(t, err)
	admin, err := kubernetes.NewForConfig(cfg)
	require.NoError(t, err)
	createDeployment(t, admin, "shop", "web", 1)
	testenv.SetupKubernetesEngine(t, v, k, "salve-shop", "shop", testenv.SalveStepRules)

	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "vault-scale.yaml"), []byte(vaultScaleRunbook), 0o600))
	logs := &safeBuffer{}
	ctx := context.Background()
	dctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	d, err := app.Start(dctx, app.Config{
		DataDir: t.TempDir(), Listen: "127.0.0.1:0", WebhookToken: "test-token-6f1c0d9e7a3b42c8a6e1f0d4b7c9e2a1", RunbooksDir: dir,
		TemporalPort: -1, NATSPort: -1, UIPort: -1, Version: "test",
		Kubeconfig: k.KubeconfigPath,
		Vault:      vault.Config{Addr: proxy.URL, Token: v.RootToken},
		Log:        slog.New(slog.NewJSONHandler(io.MultiWriter(logs, testWriter{t}), &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	require.NoError(t, err)
	registerDev(d)
	t.Cleanup(d.Close)

	// Vault goes away before the alert arrives.
	proxy.Down.Store(true)
	body := fmt.Sprintf(`{"version":"4","groupKey":"g","status":"firing","receiver":"salve","externalURL":"http://am",
"alerts":[{"status":"firing","fingerprint":"000000000000b00b","labels":{"alertname":"Busy","namespace":"shop"},"annotations":{},
"startsAt":%q,"endsAt":"0001-01-01T00:00:00Z"}]}`, time.Now().Add(-time.Minute).UTC().Format(time.RFC3339))
	require.Equal(t, http.StatusOK, postWebhook(t, d.URL, d.WebhookToken, body))
	const wfID = "salve/vault-scale/shop"
	waitRunStatus(t, d.URL, wfID, runs.StatusRunning, time.Minute)
	time.Sleep(5 * time.Second) // several attempts fail on Vault
	dep, err := admin.AppsV1().Deployments("shop").Get(ctx, "web", metav1.GetOptions{})
	require.NoError(t, err)
	require.EqualValues(t, 1, *dep.Spec.Replicas, "nothing acted while Vault was down")
	issued, _ := proxy.Counts()
	require.Zero(t, issued)

	proxy.Down.Store(false)
	det := waitRunStatus(t, d.URL, wfID, runs.StatusSucceeded, 2*time.Minute)
	dep, err = admin.AppsV1().Deployments("shop").Get(ctx, "web", metav1.GetOptions{})
	require.NoError(t, err)
	require.EqualValues(t, 3, *dep.Spec.Replicas)

	// One credential per step attempt: two steps, and an attempt may be
	// retried (e.g. after a write conflict), each with a fresh credential.
	tokens := proxy.Tokens()
	require.GreaterOrEqual(t, len(tokens), 2)
	require.Eventually(t, func() bool {
		issued, revoked := proxy.Counts()
		return issued == len(tokens) && revoked == len(tokens)
	}, 30*time.Second, 100*time.Millisecond, "every issued credential is revoked")
	stolen, err := kubernetes.NewForConfig(&rest.Config{Host: k.Host, BearerToken: tokens[0], TLSClientConfig: rest.TLSClientConfig{CAData: k.CACertPEM}})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, err := stolen.AppsV1().Deployments("shop").Get(ctx, "web", metav1.GetOptions{})
		return apierrors.IsUnauthorized(err)
	}, 30*time.Second, 250*time.Millisecond, "the revoked token is refused (401)")

	var issuedEv, revokedEv int
	require.Eventually(t, func() bool {
		issuedEv, revokedEv = 0, 0
		for _, r := range auditEvents(t, d.URL, "workflowId="+wfID) {
			switch r.Event.Action {
			case "credential.issued":
				issuedEv++
			case "credential.revoked":
				revokedEv++
			}
		}
		return issuedEv == len(tokens) && revokedEv == len(tokens)
	}, 30*time.Second, 100*time.Millisecond, "audit: issued %d, revoked %d", issuedEv, revokedEv)

	// The leak search.
	places := map[string]string{"salve logs": logs.String()}
	places["temporal history"] = history(t, d.TemporalAddr, wfID, det.RunID)
	places["AUDIT stream"] = auditStream(t, d.NATSURL)
	for _, path := range []string{
		"/v1/runs", "/v1/runs/" + wfID, "/v1/audit?limit=10000", "/v1/timelines/shop", "/v1/alerts", "/v1/runbooks", "/readyz", "/healthz",
	} {
		resp, err := apiGet(d.URL + path)
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		places["GET "+path] = string(b)
	}
	require.Contains(t, places["temporal history"], "kubernetes.scale", "the history was read")
	require.Contains(t, places["AUDIT stream"], "credential.issued", "the stream was read")
	for _, tok := range tokens {
		// The JWT, and its signature alone (the part that makes it usable).
		sig := tok[strings.LastIndex(tok, ".")+1:]
		for where, text := range places {
			require.NotContains(t, text, tok, "the credential leaked into %s", where)
			require.NotContains(t, text, sig, "the credential's signature leaked into %s", where)
		}
	}
	require.NotContains(t, places["salve logs"], v.RootToken, "Salve's own Vault token is not logged")

	// A forged label cannot reach another Vault role: the runbook lists the
	// namespaces (an enum), so kube-system fails before any credential.
	before, _ := proxy.Counts()
	forged := strings.NewReplacer(`"000000000000b00b"`, `"00000000000f0f0f"`, `"namespace":"shop"`, `"namespace":"kube-system"`).Replace(body)
	require.Equal(t, http.StatusOK, postWebhook(t, d.URL, d.WebhookToken, forged))
	bad := waitRunStatus(t, d.URL, "salve/vault-scale/kube-system", runs.StatusFailed, time.Minute)
	require.NotNil(t, bad.Run, bad.RunError)
	require.Contains(t, bad.Run.Error, `parameter "namespace"`)
	require.Empty(t, bad.Run.Steps)
	after, _ := proxy.Counts()
	require.Equal(t, before, after, "no credential was requested for the forged namespace")
}

func history(t *testing.T, temporalAddr, workflowID, runID string) string {
	t.Helper()
	h := fetchHistory(t, temporalAddr, workflowID, runID)
	b, err := protojson.Marshal(h)
	require.NoError(t, err)
	// Payloads are base64 in protojson: decode them so a secret inside
	// one would be found too.
	return string(b) + decodePayloads(h)
}

func decodePayloads(h *historypb.History) string {
	var b strings.Builder
	for _, ev := range h.Events {
		for _, p := range payloadsOf(ev) {
			b.Write(p)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

func payloadsOf(ev *historypb.HistoryEvent) [][]byte {
	var out [][]byte
	switch {
	case ev.GetWorkflowExecutionStartedEventAttributes() != nil:
		for _, p := range ev.GetWorkflowExecutionStartedEventAttributes().GetInput().GetPayloads() {
			out = append(out, p.GetData())
		}
	case ev.GetActivityTaskScheduledEventAttributes() != nil:
		for _, p := range ev.GetActivityTaskScheduledEventAttributes().GetInput().GetPayloads() {
			out = append(out, p.GetData())
		}
	case ev.GetActivityTaskCompletedEventAttributes() != nil:
		for _, p := range ev.GetActivityTaskCompletedEventAttributes().GetResult().GetPayloads() {
			out = append(out, p.GetData())
		}
	case ev.GetActivityTaskFailedEventAttributes() != nil:
		out = append(out, []byte(ev.GetActivityTaskFailedEventAttributes().GetFailure().String()))
	case ev.GetWorkflowExecutionCompletedEventAttributes() != nil:
		for _, p := range ev.GetWorkflowExecutionCompletedEventAttributes().GetResult().GetPayloads() {
			out = append(out, p.GetData())
		}
	case ev.GetWorkflowExecutionSignaledEventAttributes() != nil:
		for _, p := range ev.GetWorkflowExecutionSignaledEventAttributes().GetInput().GetPayloads() {
			out = append(out, p.GetData())
		}
	}
	return out
}

func auditStream(t *testing.T, natsURL string) string {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, bus.StreamAudit)
	require.NoError(t, err)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	var b strings.Builder
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		b.Write(m.Data)
		b.WriteByte('\n')
	}
	return b.String()
}
