package audit_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/internal/audit"
	"github.com/salve-sre/salve/internal/domain"
)

// hostileText is what can reach a store from outside: the webhook refuses
// NUL and invalid UTF-8, but the API, runbooks and older versions may not
// have, and a store that refuses one event must not stop the recorder.
var hostileText = map[string]string{
	"nul":          "nul\x00fp",
	"invalid utf8": "bad\xff\xfe",
	"rtl marks":    "\u202eevil\u202c\u200f",
	"emoji":        "🔥🚒",
	"64 KiB":       strings.Repeat("é", 32<<10),
	"controls":     "bell\a esc\x1b[31m",
}

// Every store keeps every event, whatever its text, and the chain stays
// valid: the record of truth (the event's JSON) escapes every byte, and
// the indexed columns hold what each database accepts.
func TestStoresKeepHostileText(t *testing.T) {
	stores(t, func(t *testing.T, open func() *audit.Store) {
		ctx := context.Background()
		s := open()
		t0 := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
		var evs []domain.AuditEvent
		for name, v := range hostileText {
			evs = append(evs, domain.AuditEvent{
				ID: "ev/" + name + "/" + v, Time: t0, Actor: domain.Actor{Kind: domain.ActorUser, Name: v},
				Action: domain.ActionRunStarted, Runbook: "rb-" + v, WorkflowID: "salve/rb/" + v, IncidentKey: v,
				Detail: map[string]string{"value": v},
			})
		}
		// Two IDs a lossy escape would merge stay two events.
		evs = append(evs, domain.AuditEvent{ID: "ev/nul/nul\uFFFDfp", Time: t0, Action: domain.ActionRunStarted})
		n, err := s.Append(ctx, evs)
		require.NoError(t, err)
		require.Equal(t, len(evs), n)
		n, err = s.Append(ctx, evs) // a redelivery stores nothing twice
		require.NoError(t, err)
		require.Zero(t, n)

		res, err := audit.Verify(ctx, s, nil)
		require.NoError(t, err)
		require.True(t, res.OK, res.Problem)
		require.EqualValues(t, len(evs), res.Checked)

		recs, err := s.Query(ctx, audit.Filter{Limit: 100})
		require.NoError(t, err)
		got := map[string]bool{}
		for _, r := range recs {
			got[r.Event.Detail["value"]] = true
		}
		for name, v := range hostileText {
			if name == "invalid utf8" {
				continue // JSON keeps invalid bytes as U+FFFD
			}
			require.True(t, got[v], "%s comes back as it was sent", name)
		}
		// Filters find what was stored under any of these.
		recs, err = s.Query(ctx, audit.Filter{IncidentKey: hostileText["nul"]})
		require.NoError(t, err)
		require.Len(t, recs, 1)

		for name, v := range hostileText {
			require.NoError(t, s.RecordAlert(ctx, domain.AlertEvent{
				ID: "a/" + name, Fingerprint: v, Status: domain.StatusFiring, StartsAt: t0,
				Labels: map[string]string{"alertname": v, "x": v}, ReceivedAt: t0,
			}), name)
		}
		alerts, err := s.Alerts(ctx, audit.AlertFilter{})
		require.NoError(t, err)
		require.Len(t, alerts, len(hostileText))
	})
}
