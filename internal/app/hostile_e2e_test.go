package app_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/internal/audit"
	"github.com/salve-sre/salve/internal/bus"
	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/internal/testenv"
)

// hostileAlert is one alert of the corpus.
func hostileAlert(fp, alertname string, labels, annotations map[string]string) string {
	l := map[string]string{"alertname": alertname}
	for k, v := range labels {
		l[k] = v
	}
	lb, _ := json.Marshal(l)
	ab, _ := json.Marshal(annotations)
	fb, _ := json.Marshal(fp)
	return fmt.Sprintf(`{"status":"firing","labels":%s,"annotations":%s,"startsAt":"2026-12-06T05:00:00Z","fingerprint":%s}`, lb, ab, fb)
}

func hostileBody(alerts ...string) string {
	return `{"version":"4","groupKey":"g","status":"firing","receiver":"salve","alerts":[` + strings.Join(alerts, ",") + `]}`
}

// A corpus of malformed and extreme webhooks through the real webhook of
// a real salve dev, with each audit store: every answer is a 2xx or a 4xx
// that says what is wrong, every accepted alert is audited and decided,
// every consumer drains, and the audit chain verifies with nothing left
// unrecorded.
func TestHostileWebhooks(t *testing.T) {
	for _, store := range []struct {
		name string
		db   func(t testing.TB) string
	}{
		{"sqlite", func(testing.TB) string { return "" }},
		{"postgres", testenv.Postgres},
	} {
		t.Run(store.name, func(t *testing.T) {
			tg := newTarget(t)
			dir := t.TempDir()
			writeRunbook(t, dir, "hostile", `apiVersion: salve/v1
kind: Runbook
metadata: {name: hostile}
spec:
  trigger:
    matchers: ['alertname="Hostile"']
    incidentKey: '{{ .Labels.instance }}'
  steps:
    - {name: call, action: http.request, with: {url: '`+tg.URL+`/hostile', method: POST}}
`)
			d := startDevWith(t, dir, store.db(t))

			fp := func(i int) string { return fmt.Sprintf("%016x", 0xbad0000+i) }
			var many []string
			for i := range 1000 {
				many = append(many, hostileAlert(fp(5000+i), "Other", map[string]string{"pod": fmt.Sprint(i)}, nil))
			}
			accepted := []struct{ name, body string }{
				{"emoji and right-to-left marks", hostileBody(hostileAlert(fp(1), "Hostile", map[string]string{"instance": "🔥\u202eweb\u202c"}, map[string]string{"summary": "\u200f🚒"}))},
				{"control characters", hostileBody(hostileAlert(fp(2), "Hostile", map[string]string{"instance": "esc\x1b[31m\r\n"}, map[string]string{"summary": "bell\a"}))},
				{"64 KiB annotation", hostileBody(hostileAlert(fp(3), "Hostile", map[string]string{"instance": "big"}, map[string]string{"description": strings.Repeat("é", 32<<10)}))},
				{"10,000-character incident key", hostileBody(hostileAlert(fp(4), "Hostile", map[string]string{"instance": strings.Repeat("k", 10000)}, nil))},
				{"path and query characters in the key", hostileBody(hostileAlert(fp(5), "Hostile", map[string]string{"instance": "../../x?y#z%00\\"}, nil))},
				{"1,000 alerts in one webhook", hostileBody(many...)},
			}
			refused := []struct {
				name, body string
				code       int
				says       string
			}{
				{"NUL in a label", hostileBody(hostileAlert(fp(10), "Hostile", map[string]string{"instance": "nul\u0000x"}, nil)), 400, "contains a NUL character"},
				{"NUL in the fingerprint", hostileBody(hostileAlert("nul\u0000fp", "Hostile", nil, nil)), 400, "is not an Alertmanager fingerprint"},
				{"invalid UTF-8", hostileBody(strings.Replace(hostileAlert(fp(11), "Hostile", nil, nil), "Hostile", "Host\xffile", 1)), 400, "not valid UTF-8"},
				{"an alert over 512 KiB", hostileBody(hostileAlert(fp(12), "Hostile", map[string]string{"instance": "huge"}, map[string]string{"d": strings.Repeat("x", 600<<10)})), 413, "Salve stores alerts up to"},
				{"a body over 4 MiB", hostileBody(hostileAlert(fp(13), "Hostile", nil, map[string]string{"d": strings.Repeat("x", 5<<20)})), 413, "max_alerts"},
				{"not JSON", "{nope", 400, "not valid JSON"},
				{"version 3", strings.Replace(hostileBody(hostileAlert(fp(14), "Hostile", nil, nil)), `"4"`, `"3"`, 1), 400, `version is \"3\"`},
				{"no alerts", hostileBody(), 400, "alerts: empty"},
			}

			post := func(body string) (int, string) {
				req, err := http.NewRequest(http.MethodPost, d.URL+"/v1/alertmanager", bytes.NewBufferString(body))
				require.NoError(t, err)
				req.Header.Set("Authorization", "Bearer "+d.WebhookToken)
				resp, err := http.DefaultClient.Do(req)
				require.NoError(t, err)
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, string(b)
			}
			for _, r := range refused {
				code, body := post(r.body)
				require.Equal(t, r.code, code, "%s: %s", r.name, body)
				var e struct{ Error string }
				require.NoError(t, json.Unmarshal([]byte(body), &e), r.name)
				require.Contains(t, e.Error, strings.ReplaceAll(r.says, `\"`, `"`), r.name)
			}
			want := map[string]bool{} // alert IDs accepted
			for _, a := range accepted {
				code, body := post(a.body)
				require.Equal(t, http.StatusOK, code, "%s: %s", a.name, body)
				var msg struct {
					Alerts []struct{ Fingerprint string }
				}
				require.NoError(t, json.Unmarshal([]byte(a.body), &msg))
				for _, al := range msg.Alerts {
					want[domain.AlertEventID(al.Fingerprint, domain.StatusFiring, time.Date(2026, 12, 6, 5, 0, 0, 0, time.UTC))] = true
				}
			}

			// Every accepted alert is audited and decided, and the runs of
			// the matching ones act.
			var missing []string
			require.Eventually(t, func() bool {
				seen, decided := map[string]bool{}, map[string]bool{}
				for _, r := range auditEvents(t, d.URL, "") {
					id := r.Event.Detail["alertId"]
					switch {
					case r.Event.Action == domain.ActionAlertAccepted:
						seen[id] = true
					case strings.HasPrefix(r.Event.Action, "trigger.") || r.Event.Action == domain.ActionRunJoined:
						decided[id] = true
					}
				}
				missing = missing[:0]
				for id := range want {
					if !seen[id] || !decided[id] {
						missing = append(missing, id)
					}
				}
				return len(missing) == 0
			}, 2*time.Minute, 250*time.Millisecond, "accepted alerts not audited and decided: %d (e.g. %.3v)", len(missing), missing)
			require.Eventually(t, func() bool { return tg.count("/hostile") >= 5 }, time.Minute, 100*time.Millisecond, "the five Hostile incidents act")

			// Nothing is left behind: no consumer backlog, the chain
			// verifies, and nothing accepted is unrecorded.
			require.Eventually(t, func() bool {
				var ready struct {
					Checks []struct{ Name, Warning string }
				}
				getJSON(t, d.URL+"/readyz", &ready)
				for _, c := range ready.Checks {
					if c.Name == "backlog" && c.Warning != "" {
						return false
					}
				}
				pending := scrape(t, d.URL)["salve_consumer_pending_messages"]
				if pending == nil || len(pending.Metric) != len(bus.Consumers) {
					return false // every consumer reports
				}
				for _, m := range pending.Metric {
					if m.GetGauge().GetValue() != 0 {
						return false
					}
				}
				var res audit.VerifyResult
				getJSON(t, d.URL+"/v1/audit/verify", &res)
				require.True(t, res.OK, res.Problem)
				return res.Unrecorded != nil && *res.Unrecorded == 0
			}, time.Minute, 250*time.Millisecond, "every consumer drains")
		})
	}
}
