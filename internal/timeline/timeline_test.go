package timeline_test

import (
	"bytes"
	"flag"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/internal/audit"
	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/internal/timeline"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func rec(seq int64, at string, ev domain.AuditEvent) audit.Record {
	t, err := time.Parse(time.RFC3339, at)
	if err != nil {
		panic(err)
	}
	ev.Time = t
	return audit.Record{Seq: seq, Event: ev}
}

func TestBuildAndMarkdownGolden(t *testing.T) {
	const wf = "salve/restart/shop/cart"
	alertID := "fp1|firing|2026-11-24T09:00:00Z"
	incident := []audit.Record{
		rec(3, "2026-11-24T09:00:31Z", domain.AuditEvent{Action: domain.ActionTriggerMatched, Runbook: "restart", WorkflowID: wf, IncidentKey: "shop/cart", Outcome: "started", Detail: map[string]string{"alertId": alertID}}),
		rec(4, "2026-11-24T09:00:31Z", domain.AuditEvent{Action: domain.ActionRunStarted, Runbook: "restart", WorkflowID: wf, IncidentKey: "shop/cart", Actor: domain.Actor{Kind: "alert", Name: "Crash"}}),
		rec(5, "2026-11-24T09:00:32Z", domain.AuditEvent{Action: domain.ActionStepStarted, Runbook: "restart", WorkflowID: wf, Step: "restart", Detail: map[string]string{"kind": "http.request", "attempt": "1"}}),
		rec(6, "2026-11-24T09:00:33Z", domain.AuditEvent{Action: domain.ActionStepFailed, Runbook: "restart", WorkflowID: wf, Step: "restart", Error: "POST http://x/restart: unexpected status 503 | retry", Detail: map[string]string{"attempt": "1"}}),
		rec(7, "2026-11-24T09:00:35Z", domain.AuditEvent{Action: domain.ActionStepSucceeded, Runbook: "restart", WorkflowID: wf, Step: "restart"}),
		rec(9, "2026-11-24T09:04:02Z", domain.AuditEvent{Action: domain.ActionRunSignalled, Runbook: "restart", WorkflowID: wf, IncidentKey: "shop/cart", Outcome: "resolved", Detail: map[string]string{"alertId": "fp1|resolved|2026-11-24T09:00:00Z"}}),
		rec(10, "2026-11-24T09:05:00Z", domain.AuditEvent{Action: domain.ActionRunFinished, Runbook: "restart", WorkflowID: wf, IncidentKey: "shop/cart", Outcome: "succeeded"}),
	}
	alerts := []audit.Record{
		rec(1, "2026-11-24T09:00:30Z", domain.AuditEvent{Action: domain.ActionAlertAccepted, Outcome: "firing", Detail: map[string]string{"alertname": "Crash", "fingerprint": "fp1", "startsAt": "2026-11-24T09:00:00Z"}}),
		rec(2, "2026-11-24T09:00:30Z", domain.AuditEvent{Action: domain.ActionAlertAccepted, Outcome: "firing", Detail: map[string]string{"alertname": "Other", "fingerprint": "fp2", "startsAt": "2026-11-24T08:00:00Z"}}),
		rec(8, "2026-11-24T09:04:01Z", domain.AuditEvent{Action: domain.ActionAlertAccepted, Outcome: "resolved", Detail: map[string]string{"alertname": "Crash", "fingerprint": "fp1", "startsAt": "2026-11-24T09:00:00Z", "endsAt": "2026-11-24T09:03:45Z"}}),
	}
	tl := timeline.Build("shop/cart", incident, alerts)
	require.Equal(t, []string{"restart"}, tl.Runbooks)
	require.Equal(t, []string{wf}, tl.Runs)
	require.Len(t, tl.Entries, 9, "the other alert's fingerprint is left out")
	require.Equal(t, "alert", tl.Entries[0].Kind, "the alert firing comes first, at its own startsAt")
	require.Equal(t, "run", tl.Entries[len(tl.Entries)-1].Kind)

	var md bytes.Buffer
	require.NoError(t, tl.Markdown(&md))
	golden := "testdata/timeline.md"
	if *update {
		require.NoError(t, os.WriteFile(golden, md.Bytes(), 0o644))
	}
	want, err := os.ReadFile(golden)
	require.NoError(t, err, "run with -update to create it")
	require.Equal(t, string(want), md.String())
}

// Alert-controlled text (an incident key, an alert name, an error) can
// neither break the table nor add markup: no new row, heading, link,
// image or HTML.
func TestMarkdownEscapesUntrustedText(t *testing.T) {
	const wf = "salve/restart/x"
	evil := "x |\n# owned\r\n[click](http://evil) ![i](http://evil/i.png) <img src=x> **b** `c`"
	incident := []audit.Record{
		rec(1, "2026-11-24T09:00:31Z", domain.AuditEvent{Action: domain.ActionRunStarted, Runbook: "restart", WorkflowID: wf, IncidentKey: evil, Actor: domain.Actor{Kind: "alert", Name: evil}}),
		rec(2, "2026-11-24T09:00:33Z", domain.AuditEvent{Action: domain.ActionRunFinished, Runbook: "restart", WorkflowID: wf, IncidentKey: evil, Outcome: "failed", Error: evil}),
	}
	var b bytes.Buffer
	require.NoError(t, timeline.Build(evil, incident, nil).Markdown(&b))
	out := b.String()
	for _, line := range bytes.Split(b.Bytes(), []byte("\n")) {
		require.False(t, bytes.HasPrefix(line, []byte("# owned")), "no heading from the text: %q", line)
	}
	require.NotContains(t, out, "[click](")
	require.NotRegexp(t, `(^|[^\\])<img`, out, "HTML only escaped")
	require.NotContains(t, out, "**b**")
	require.Contains(t, out, `\[click\](http://evil)`)
	rows := 0
	for _, line := range bytes.Split(b.Bytes(), []byte("\n")) {
		if bytes.HasPrefix(line, []byte("| 2026")) {
			rows++
			require.Equal(t, 5, bytes.Count(line, []byte("|"))-bytes.Count(line, []byte(`\|`)), "four cells: %q", line)
		}
	}
	require.Equal(t, 2, rows)
}
