package triggers_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/triggers"
)

// whReceivedAt is deliberately not UTC: events must carry it in UTC.
var whReceivedAt = time.Date(2026, 11, 24, 10, 0, 0, 0, time.FixedZone("CET", 3600))

func whReadFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	return b
}

func whTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339Nano, s)
	require.NoError(t, err)
	return v.UTC()
}

func TestDecodeWebhookRecordedPayloads(t *testing.T) {
	tests := []struct {
		file          string
		wantReceiver  string
		wantGroupKey  string
		wantTruncated int
		want          []domain.AlertEvent // ID, Fingerprint, Status, StartsAt, EndsAt and Labels are compared
	}{
		{
			file:         "webhook-demo.json",
			wantReceiver: "salve",
			wantGroupKey: `{}:{alertname="SalveDemo"}`,
			want: []domain.AlertEvent{{
				ID:          "5e1f6f2b7a0c9d3e|firing|2026-11-24T09:00:00Z",
				Fingerprint: "5e1f6f2b7a0c9d3e",
				Status:      domain.StatusFiring,
				StartsAt:    whTime(t, "2026-11-24T09:00:00Z"),
				Labels:      map[string]string{"alertname": "SalveDemo", "instance": "demo-1", "severity": "warning"},
			}},
		},
		{
			// Alertmanager 0.25: a group of two alerts, one firing and one
			// resolved, with a non-UTC startsAt and nanoseconds.
			file:         "webhook-am025-group.json",
			wantReceiver: "salve",
			wantGroupKey: `{}/{severity=~"warning|critical"}:{alertname="KubeDeploymentCrashLooping"}`,
			want: []domain.AlertEvent{
				{
					ID:          "8c1b4e2a9f03d7c6|firing|2026-11-24T08:51:30.123456789Z",
					Fingerprint: "8c1b4e2a9f03d7c6",
					Status:      domain.StatusFiring,
					StartsAt:    whTime(t, "2026-11-24T08:51:30.123456789Z"),
					Labels:      map[string]string{"alertname": "KubeDeploymentCrashLooping", "deployment": "checkout", "namespace": "shop", "severity": "critical"},
				},
				{
					ID:          "0f5d9a1e7b2c4388|resolved|2026-11-24T08:40:00Z",
					Fingerprint: "0f5d9a1e7b2c4388",
					Status:      domain.StatusResolved,
					StartsAt:    whTime(t, "2026-11-24T08:40:00Z"),
					EndsAt:      whTime(t, "2026-11-24T08:55:00Z"),
					Labels:      map[string]string{"alertname": "KubeDeploymentCrashLooping", "deployment": "cart", "namespace": "shop", "severity": "warning"},
				},
			},
		},
		{
			// Alertmanager 0.27+ adds notification_reason and routeLabels;
			// a lenient decoder accepts fields it does not know.
			file:          "webhook-am034-notification-reason.json",
			wantReceiver:  "salve-critical",
			wantGroupKey:  `{}/{team="platform"}:{alertname="HighLatency", job="api"}`,
			wantTruncated: 2,
			want: []domain.AlertEvent{{
				ID:          "d41d8cd98f00b204|resolved|2026-11-24T09:00:00Z",
				Fingerprint: "d41d8cd98f00b204",
				Status:      domain.StatusResolved,
				StartsAt:    whTime(t, "2026-11-24T09:00:00Z"),
				EndsAt:      whTime(t, "2026-11-24T09:12:00Z"),
				Labels:      map[string]string{"alertname": "HighLatency", "instance": "api-7f9c:8080", "job": "api", "severity": "critical"},
			}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			body := whReadFixture(t, tt.file)
			msg, evs, err := triggers.DecodeWebhook(body, whReceivedAt)
			require.NoError(t, err)
			require.Equal(t, "4", msg.Version)
			require.Equal(t, tt.wantReceiver, msg.Receiver)
			require.Equal(t, tt.wantGroupKey, msg.GroupKey)
			require.Equal(t, tt.wantTruncated, msg.TruncatedAlerts)
			require.Len(t, evs, len(tt.want))

			// Every field of the original alert survives into the event.
			var raw struct {
				Alerts []struct {
					Annotations  map[string]string `json:"annotations"`
					GeneratorURL string            `json:"generatorURL"`
				} `json:"alerts"`
			}
			require.NoError(t, json.Unmarshal(body, &raw))

			for i, w := range tt.want {
				ev := evs[i]
				require.Equal(t, w.ID, ev.ID)
				require.Equal(t, domain.AlertEventID(ev.Fingerprint, ev.Status, ev.StartsAt), ev.ID)
				require.Equal(t, w.Fingerprint, ev.Fingerprint)
				require.Equal(t, w.Status, ev.Status)
				require.True(t, w.StartsAt.Equal(ev.StartsAt), "startsAt %s", ev.StartsAt)
				require.Equal(t, time.UTC, ev.StartsAt.Location())
				require.True(t, w.EndsAt.Equal(ev.EndsAt), "endsAt %s", ev.EndsAt)
				require.Equal(t, w.Labels, ev.Labels)
				require.Equal(t, raw.Alerts[i].Annotations, ev.Annotations)
				require.Equal(t, raw.Alerts[i].GeneratorURL, ev.GeneratorURL)
				require.Equal(t, msg.Receiver, ev.Receiver)
				require.Equal(t, msg.GroupKey, ev.GroupKey)
				require.Equal(t, "http://alertmanager.example:9093", ev.ExternalURL)
				require.Equal(t, whReceivedAt.UTC(), ev.ReceivedAt)
				require.Equal(t, time.UTC, ev.ReceivedAt.Location())
			}
		})
	}
}

// whAlertJSON is one alert of a webhook as Alertmanager writes it.
func whAlertJSON(fingerprint, status, startsAt string) string {
	return fmt.Sprintf(`{"status":%q,"labels":{"alertname":"X"},"annotations":{},"startsAt":%q,"endsAt":"0001-01-01T00:00:00Z","generatorURL":"","fingerprint":%q}`, status, startsAt, fingerprint)
}

func whBody(version string, alerts ...string) string {
	return fmt.Sprintf(`{"version":%q,"groupKey":"g","status":"firing","receiver":"salve","externalURL":"http://am","alerts":[%s]}`, version, strings.Join(alerts, ","))
}

func whManyAlerts(n int) string {
	alerts := make([]string, n)
	for i := range alerts {
		alerts[i] = whAlertJSON(fmt.Sprintf("%016x", i), domain.StatusFiring, "2026-11-24T09:00:00Z")
	}
	return whBody("4", alerts...)
}

func TestDecodeWebhookAccepts(t *testing.T) {
	okAlert := whAlertJSON("00000000000000f1", domain.StatusFiring, "2026-11-24T09:00:00Z")
	tests := []struct {
		name    string
		body    string
		wantIDs []string
	}{
		{
			name:    "minimal",
			body:    `{"version":"4","alerts":[{"status":"firing","labels":{"a":"b"},"startsAt":"2026-11-24T09:00:00Z","fingerprint":"00000000000000f1"}]}`,
			wantIDs: []string{"00000000000000f1|firing|2026-11-24T09:00:00Z"},
		},
		{
			name:    "unknown fields at every level",
			body:    `{"version":"4","notification_reason":"first notification","routeLabels":{"team":"x"},"future":{"nested":[1,2]},"alerts":[{"status":"firing","labels":{"a":"b"},"startsAt":"2026-11-24T09:00:00Z","fingerprint":"00000000000000f1","silencedBy":[],"extra":true}]}`,
			wantIDs: []string{"00000000000000f1|firing|2026-11-24T09:00:00Z"},
		},
		{
			name:    "surrounding whitespace",
			body:    "\n  " + whBody("4", okAlert) + "\n\n",
			wantIDs: []string{"00000000000000f1|firing|2026-11-24T09:00:00Z"},
		},
		{
			name:    "startsAt with an offset is normalized to UTC in the ID",
			body:    whBody("4", whAlertJSON("00000000000000f1", domain.StatusResolved, "2026-11-24T11:00:00.5+02:00")),
			wantIDs: []string{"00000000000000f1|resolved|2026-11-24T09:00:00.5Z"},
		},
		{
			name:    "same alert firing and resolved are two events",
			body:    whBody("4", okAlert, whAlertJSON("00000000000000f1", domain.StatusResolved, "2026-11-24T09:00:00Z")),
			wantIDs: []string{"00000000000000f1|firing|2026-11-24T09:00:00Z", "00000000000000f1|resolved|2026-11-24T09:00:00Z"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, evs, err := triggers.DecodeWebhook([]byte(tt.body), whReceivedAt)
			require.NoError(t, err)
			ids := make([]string, len(evs))
			for i, ev := range evs {
				ids[i] = ev.ID
			}
			require.Equal(t, tt.wantIDs, ids)
		})
	}

	t.Run("exactly MaxAlertsPerWebhook", func(t *testing.T) {
		_, evs, err := triggers.DecodeWebhook([]byte(whManyAlerts(triggers.MaxAlertsPerWebhook)), whReceivedAt)
		require.NoError(t, err)
		require.Len(t, evs, triggers.MaxAlertsPerWebhook)
	})
}

func TestDecodeWebhookRejects(t *testing.T) {
	okAlert := whAlertJSON("00000000000000f1", domain.StatusFiring, "2026-11-24T09:00:00Z")
	valid := whBody("4", okAlert)
	tests := []struct {
		name string
		body string
		want []string // every one must appear in the error
		not  []string // and none of these
	}{
		{name: "empty body", body: "", want: []string{"not valid JSON for an Alertmanager webhook"}},
		{name: "not JSON", body: "alert!", want: []string{"not valid JSON"}},
		{name: "JSON array", body: "[" + valid + "]", want: []string{"not valid JSON"}},
		{name: "truncated JSON", body: valid[:len(valid)/2], want: []string{"not valid JSON"}},
		{name: "alerts is not a list", body: `{"version":"4","alerts":{}}`, want: []string{"not valid JSON"}},
		{name: "labels of the wrong type", body: `{"version":"4","alerts":[{"status":"firing","labels":["a"],"startsAt":"2026-11-24T09:00:00Z","fingerprint":"f"}]}`, want: []string{"not valid JSON"}},
		{name: "startsAt not a time", body: whBody("4", whAlertJSON("00000000000000f1", "firing", "yesterday")), want: []string{"not valid JSON"}},
		{name: "trailing garbage", body: valid + "garbage", want: []string{"trailing data after the JSON object"}},
		{name: "a second object", body: valid + valid, want: []string{"trailing data after the JSON object"}},
		{name: "a second object after a newline", body: valid + "\n{}", want: []string{"trailing data after the JSON object"}},
		{name: "a stray closing brace", body: valid + "}", want: []string{"trailing data after the JSON object"}},
		{name: "a stray closing bracket and garbage", body: valid + "]x", want: []string{"trailing data after the JSON object"}},
		{name: "closing braces then garbage", body: valid + "}}}garbage", want: []string{"trailing data after the JSON object"}},
		{name: "version 3", body: whBody("3", okAlert), want: []string{`version is "3"; Salve accepts Alertmanager webhook version "4"`}},
		{name: "no version", body: `{"alerts":[` + okAlert + `]}`, want: []string{`version is ""`}},
		{name: "version as a number", body: `{"version":4,"alerts":[` + okAlert + `]}`, want: []string{"not valid JSON"}},
		{name: "empty alerts", body: whBody("4"), want: []string{"alerts: empty; nothing to accept"}},
		{name: "null alerts", body: `{"version":"4","alerts":null}`, want: []string{"alerts: empty"}},
		{name: "no alerts field", body: `{"version":"4"}`, want: []string{"alerts: empty"}},
		{name: "JSON null", body: `null`, want: []string{`version is ""`, "alerts: empty"}},
		{
			name: "bad status",
			body: whBody("4", whAlertJSON("00000000000000f1", "pending", "2026-11-24T09:00:00Z")),
			want: []string{`alerts[0]: status is "pending", want "firing" or "resolved"`},
		},
		{
			name: "status is case-sensitive",
			body: whBody("4", whAlertJSON("00000000000000f1", "Firing", "2026-11-24T09:00:00Z")),
			want: []string{`alerts[0]: status is "Firing"`},
		},
		{
			name: "every problem of one alert is named",
			body: `{"version":"4","alerts":[{"status":"firing","annotations":{"a":"b"}}]}`,
			want: []string{"alerts[0]: fingerprint is missing", "alerts[0]: startsAt is missing", "alerts[0]: labels are missing"},
		},
		{
			name: "zero startsAt is missing",
			body: whBody("4", whAlertJSON("00000000000000f1", "firing", "0001-01-01T00:00:00Z")),
			want: []string{"alerts[0]: startsAt is missing"},
		},
		{
			name: "empty labels are missing",
			body: `{"version":"4","alerts":[{"status":"firing","labels":{},"startsAt":"2026-11-24T09:00:00Z","fingerprint":"f"}]}`,
			want: []string{"alerts[0]: labels are missing"},
		},
		{
			name: "fingerprint that would break the dedup ID",
			body: whBody("4", whAlertJSON("fp|1", "firing", "2026-11-24T09:00:00Z"), whAlertJSON("fp\n2", "firing", "2026-11-24T09:00:00Z")),
			want: []string{`alerts[0]: fingerprint "fp|1" is not an Alertmanager fingerprint (16 lowercase hex digits)`, `alerts[1]: fingerprint "fp\n2" is not`},
		},
		{
			name: "problems across the whole payload are reported together",
			body: whBody("3", whAlertJSON("", "firing", "2026-11-24T09:00:00Z"), okAlert, whAlertJSON("00000000000000f3", "unknown", "0001-01-01T00:00:00Z")),
			want: []string{`version is "3"`, "alerts[0]: fingerprint is missing", `alerts[2]: status is "unknown"`, "alerts[2]: startsAt is missing"},
			not:  []string{"alerts[1]"},
		},
		{
			name: "more than MaxAlertsPerWebhook",
			body: whManyAlerts(triggers.MaxAlertsPerWebhook + 1),
			want: []string{"alerts: 1001 alerts in one webhook; at most 1000 (set max_alerts in the Alertmanager webhook_config)"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, evs, err := triggers.DecodeWebhook([]byte(tt.body), whReceivedAt)
			require.ErrorIs(t, err, triggers.ErrBadPayload)
			require.Nil(t, evs, "nothing of a bad payload is accepted")
			for _, w := range tt.want {
				require.ErrorContains(t, err, w)
			}
			for _, n := range tt.not {
				require.NotContains(t, err.Error(), n)
			}
		})
	}
}

// Only what Alertmanager can send gets in: what no store can keep (a NUL,
// invalid UTF-8) is refused at the door with the field named, and what
// every store keeps (any Unicode, large values) is accepted as sent.
func TestDecodeWebhookDoor(t *testing.T) {
	alertWith := func(labels, annotations string) string {
		return whBody("4", fmt.Sprintf(`{"status":"firing","labels":%s,"annotations":%s,"startsAt":"2026-11-24T09:00:00Z","fingerprint":"00000000000000f1"}`, labels, annotations))
	}
	refused := []struct{ name, body, want string }{
		{"NUL in a label value", alertWith(`{"alertname":"X","instance":"a\u0000b"}`, `{}`), `alerts[0]: labels["instance"]: contains a NUL character`},
		{"NUL in a label name", alertWith(`{"alertname":"X","a\u0000":"b"}`, `{}`), `alerts[0]: labels: the name "a\x00" contains a NUL character`},
		{"empty label name", alertWith(`{"alertname":"X","":"b"}`, `{}`), "alerts[0]: labels: a label has an empty name"},
		{"NUL in an annotation", alertWith(`{"alertname":"X"}`, `{"summary":"\u0000"}`), `alerts[0]: annotations["summary"]: contains a NUL character`},
		{"NUL in the receiver", `{"version":"4","receiver":"s\u0000","alerts":[` + whAlertJSON("00000000000000f1", "firing", "2026-11-24T09:00:00Z") + `]}`, "receiver: contains a NUL character"},
		{"upper-case fingerprint", whBody("4", whAlertJSON("00000000000000F1", "firing", "2026-11-24T09:00:00Z")), `fingerprint "00000000000000F1" is not an Alertmanager fingerprint`},
		{"fingerprint too long", whBody("4", whAlertJSON("000000000000000f1", "firing", "2026-11-24T09:00:00Z")), "is not an Alertmanager fingerprint"},
		{"invalid UTF-8", alertWith(`{"alertname":"X`+"\xff"+`"}`, `{}`), "the body is not valid UTF-8 (first bad byte at offset"},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			_, evs, err := triggers.DecodeWebhook([]byte(tt.body), whReceivedAt)
			require.ErrorIs(t, err, triggers.ErrBadPayload)
			require.ErrorContains(t, err, tt.want)
			require.Nil(t, evs)
		})
	}

	t.Run("a thousand bad alerts get a short answer", func(t *testing.T) {
		alerts := make([]string, triggers.MaxAlertsPerWebhook)
		for i := range alerts {
			alerts[i] = whAlertJSON(fmt.Sprintf("bad-%d", i), "firing", "2026-11-24T09:00:00Z")
		}
		_, _, err := triggers.DecodeWebhook([]byte(whBody("4", alerts...)), whReceivedAt)
		require.ErrorContains(t, err, "and 990 more problems")
		require.Less(t, len(err.Error()), 2000)
	})

	t.Run("an alert over MaxAlertBytes is too large", func(t *testing.T) {
		big := strings.Repeat("x", triggers.MaxAlertBytes)
		_, evs, err := triggers.DecodeWebhook([]byte(alertWith(`{"alertname":"Big"}`, `{"description":"`+big+`"}`)), whReceivedAt)
		require.ErrorIs(t, err, triggers.ErrTooLarge)
		require.ErrorContains(t, err, `alerts[0] ("Big") is 524`)
		require.Nil(t, evs)
	})

	accepted := map[string]string{
		"emoji":               "🔥 disk on fire 🚒",
		"right-to-left marks": "\u202eevil\u202c \u200f",
		"64 KiB value":        strings.Repeat("é", 32<<10),
		"control characters":  "bell\a tab\t escape\x1b[31m",
	}
	for name, v := range accepted {
		t.Run(name, func(t *testing.T) {
			ann, _ := json.Marshal(map[string]string{"summary": v})
			lab, _ := json.Marshal(map[string]string{"alertname": "X", "detail": v})
			_, evs, err := triggers.DecodeWebhook([]byte(alertWith(string(lab), string(ann))), whReceivedAt)
			require.NoError(t, err)
			require.Equal(t, v, evs[0].Annotations["summary"])
			require.Equal(t, v, evs[0].Labels["detail"])
		})
	}
}
