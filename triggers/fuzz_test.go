package triggers_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/triggers"
)

// FuzzDecodeWebhook feeds arbitrary bodies to the webhook decoder, which
// reads input from the network before anything else looks at it.
func FuzzDecodeWebhook(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "webhook-*.json"))
	if err != nil {
		f.Fatal(err)
	}
	if len(files) == 0 {
		f.Fatal("no recorded webhook payloads in testdata/")
	}
	for _, name := range files {
		f.Add(whReadFixture(f, filepath.Base(name)))
	}
	okAlert := whAlertJSON("00000000000000f1", domain.StatusFiring, "2026-11-24T09:00:00Z")
	for _, s := range []string{
		"",
		"null",
		"{}",
		"[]",
		whBody("4", okAlert) + "}",
		whBody("4", okAlert) + " trailing",
		whBody("3", okAlert),
		whBody("4"),
		whBody("4", whAlertJSON("a|b", "firing", "2026-11-24T09:00:00Z")),
		whBody("4", whAlertJSON("00000000000000f0", "resolved", "2026-11-24T11:00:00.999999999+02:00")),
		`{"version":"4","alerts":[{"status":"firing","labels":{"":""},"startsAt":"2026-11-24T09:00:00Z","fingerprint":"\u2028"}]}`,
	} {
		f.Add([]byte(s))
	}

	receivedAt := time.Date(2026, 11, 24, 10, 0, 0, 0, time.FixedZone("X", -7*3600))
	f.Fuzz(func(t *testing.T, body []byte) {
		msg, evs, err := triggers.DecodeWebhook(body, receivedAt)
		if err != nil {
			if !errors.Is(err, triggers.ErrBadPayload) {
				t.Fatalf("error does not wrap ErrBadPayload (ingest would answer 5xx and Alertmanager retry forever): %v", err)
			}
			if evs != nil {
				t.Fatalf("events returned with an error: %v", evs)
			}
			return
		}
		if len(evs) == 0 || len(evs) > triggers.MaxAlertsPerWebhook {
			t.Fatalf("accepted %d events", len(evs))
		}
		if len(evs) != len(msg.Alerts) {
			t.Fatalf("%d alerts became %d events", len(msg.Alerts), len(evs))
		}
		if msg.Version != "4" {
			t.Fatalf("accepted version %q", msg.Version)
		}
		for i, ev := range evs {
			if ev.ID == "" || ev.Fingerprint == "" {
				t.Fatalf("event %d without ID or fingerprint: %#v", i, ev)
			}
			if ev.Status != domain.StatusFiring && ev.Status != domain.StatusResolved {
				t.Fatalf("event %d has status %q", i, ev.Status)
			}
			if want := domain.AlertEventID(ev.Fingerprint, ev.Status, ev.StartsAt); ev.ID != want {
				t.Fatalf("event %d has ID %q, want %q", i, ev.ID, want)
			}
			if parts := strings.Split(ev.ID, "|"); len(parts) != 3 || parts[0] != ev.Fingerprint || parts[1] != ev.Status {
				t.Fatalf("event %d ID %q is not fingerprint|status|startsAt", i, ev.ID)
			}
			if ev.Fingerprint != msg.Alerts[i].Fingerprint || ev.Status != msg.Alerts[i].Status {
				t.Fatalf("event %d does not describe alert %d", i, i)
			}
			if ev.StartsAt.IsZero() || ev.StartsAt.Location() != time.UTC {
				t.Fatalf("event %d startsAt %v", i, ev.StartsAt)
			}
			if len(ev.Labels) == 0 {
				t.Fatalf("event %d has no labels", i)
			}
			if !ev.ReceivedAt.Equal(receivedAt) || ev.ReceivedAt.Location() != time.UTC {
				t.Fatalf("event %d receivedAt %v", i, ev.ReceivedAt)
			}
		}
	})
}
