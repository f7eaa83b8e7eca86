package safety

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

// The four matcher kinds of Alertmanager's API v2, as it sends them.
func TestSilenceMatchersFollowAlertmanager(t *testing.T) {
	const silence = `{"id":"s","status":{"state":"active"},"matchers":[
		{"name":"alertname","value":"Down","isRegex":false,"isEqual":true},
		{"name":"namespace","value":"sh.p","isRegex":true,"isEqual":true},
		{"name":"severity","value":"page","isRegex":false,"isEqual":false},
		{"name":"instance","value":"db-.*","isRegex":true,"isEqual":false}]}`
	var s Silence
	require.NoError(t, json.Unmarshal([]byte(silence), &s))
	base := map[string]string{"alertname": "Down", "namespace": "shop", "severity": "warning", "instance": "web-1"}
	with := func(k, v string) map[string]string {
		l := map[string]string{}
		for k, v := range base {
			l[k] = v
		}
		if v == "" {
			delete(l, k)
		} else {
			l[k] = v
		}
		return l
	}
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   bool
	}{
		{"all match", base, true},
		{"equal fails", with("alertname", "Up"), false},
		{"regex is anchored", with("namespace", "shopping"), false},
		{"regex matches", with("namespace", "ship"), true},
		{"not-equal fails", with("severity", "page"), false},
		{"not-equal holds for a missing label", with("severity", ""), true},
		{"not-regex fails", with("instance", "db-1"), false},
		{"not-regex is anchored", with("instance", "x-db-1"), true},
		{"missing label is empty for a regex", with("namespace", ""), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, s.matches(tc.labels))
		})
	}
	// Older Alertmanagers send no isEqual: equality.
	var old Silence
	require.NoError(t, json.Unmarshal([]byte(`{"matchers":[{"name":"a","value":"1","isRegex":false}]}`), &old))
	require.True(t, old.matches(map[string]string{"a": "1"}))
	require.False(t, old.matches(map[string]string{"a": "2"}))
	// No matchers match nothing; an invalid regex matches nothing.
	require.False(t, Silence{}.matches(base))
	var bad Silence
	require.NoError(t, json.Unmarshal([]byte(`{"matchers":[{"name":"a","value":"(","isRegex":true}]}`), &bad))
	require.False(t, bad.matches(map[string]string{"a": "("}))
}
