package notify_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/salve-sre/salve/activities/notify"
	"github.com/salve-sre/salve/activities/step"
)

// decodeStrict decodes YAML as Salve's config loader does: unknown keys
// are errors.
func decodeStrict(t *testing.T, src string) (notify.Config, error) {
	t.Helper()
	var cfg notify.Config
	dec := yaml.NewDecoder(bytes.NewReader([]byte(src)))
	dec.KnownFields(true)
	err := dec.Decode(&cfg)
	return cfg, err
}

// The YAML keys are the documented ones, and a config written with them
// works end to end.
func TestConfigYAML(t *testing.T) {
	chat := newReceiver(t, http.StatusOK)
	file := writeFile(t, t.TempDir(), "slack-url", chat.url()+"\n")
	cfg, err := decodeStrict(t, `
publicURL: https://salve.example.com
targets:
  ops-chat:
    kind: slack
    urlFile: `+file+`
  audit-hook:
    kind: webhook
    url: https://hooks.example.com/audit
    headers:
      Authorization: Bearer abc
hooks:
  - target: ops-chat
    events: [approval_needed, failed]
  - target: audit-hook
    runbooks: [restart]
`)
	require.NoError(t, err)
	require.Equal(t, notify.Config{
		PublicURL: "https://salve.example.com",
		Targets: map[string]notify.Target{
			"ops-chat":   {Kind: "slack", URLFile: file},
			"audit-hook": {Kind: "webhook", URL: "https://hooks.example.com/audit", Headers: map[string]string{"Authorization": "Bearer abc"}},
		},
		Hooks: []notify.Hook{
			{Target: "ops-chat", Events: []string{"approval_needed", "failed"}},
			{Target: "audit-hook", Runbooks: []string{"restart"}},
		},
	}, cfg)

	n := newNotifier(t, cfg)
	require.NoError(t, n.Hook(context.Background(), step.HookEvent{Event: step.HookFailed, Runbook: "rollback"}))
	got, body := chat.only(t)
	require.Equal(t, secretPath, got.path)
	require.Equal(t, ":x: rollback failed", body["text"])

	for _, bad := range []string{
		"targets:\n  chat:\n    kind: slack\n    urlfile: /run/secrets/slack\n",
		"publicUrl: https://salve.example.com\n",
		"hooks:\n  - target: chat\n    event: [failed]\n",
	} {
		_, err := decodeStrict(t, bad)
		require.ErrorContains(t, err, "not found in type notify.", bad)
	}
}

// JSON uses the same keys, so the config can come from either.
func TestConfigJSON(t *testing.T) {
	var cfg notify.Config
	require.NoError(t, json.Unmarshal([]byte(`{
		"publicURL": "https://salve.example.com",
		"targets": {"chat": {"kind": "slack", "urlFile": "/run/secrets/slack", "headers": {"X-A": "b"}}},
		"hooks": [{"target": "chat", "events": ["failed"], "runbooks": ["restart"]}]
	}`), &cfg))
	require.Equal(t, notify.Config{
		PublicURL: "https://salve.example.com",
		Targets:   map[string]notify.Target{"chat": {Kind: "slack", URLFile: "/run/secrets/slack", Headers: map[string]string{"X-A": "b"}}},
		Hooks:     []notify.Hook{{Target: "chat", Events: []string{"failed"}, Runbooks: []string{"restart"}}},
	}, cfg)
}

func TestEmptyConfigDoesNothing(t *testing.T) {
	cfg, err := decodeStrict(t, "{}\n")
	require.NoError(t, err)
	n := newNotifier(t, cfg)
	require.NoError(t, n.Hook(context.Background(), hookEvent))
}
