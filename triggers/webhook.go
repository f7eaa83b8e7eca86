// Package triggers turns Alertmanager webhooks into runs: the ingest
// handler stores each alert in JetStream before answering, and the trigger
// consumer matches stored alerts to runbooks and starts or joins the one
// run per incident.
package triggers

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/salve-sre/salve/internal/domain"
)

// WebhookMessage is Salve's own copy of Alertmanager's webhook payload
// (version "4"). It is decoded leniently: Alertmanager adds fields over
// time (notification_reason, routeLabels, ...) and old ones lack them.
type WebhookMessage struct {
	Version           string            `json:"version"`
	GroupKey          string            `json:"groupKey"`
	TruncatedAlerts   int               `json:"truncatedAlerts"`
	Status            string            `json:"status"`
	Receiver          string            `json:"receiver"`
	GroupLabels       map[string]string `json:"groupLabels"`
	CommonLabels      map[string]string `json:"commonLabels"`
	CommonAnnotations map[string]string `json:"commonAnnotations"`
	ExternalURL       string            `json:"externalURL"`
	Alerts            []WebhookAlert    `json:"alerts"`
}

// WebhookAlert is one alert of a webhook group.
type WebhookAlert struct {
	Status       string            `json:"status"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
	Fingerprint  string            `json:"fingerprint"`
}

// ErrBadPayload wraps every reason a webhook body cannot be accepted. A
// retry of the same body cannot succeed, so ingest answers 400.
var ErrBadPayload = errors.New("bad webhook payload")

// MaxAlertsPerWebhook bounds one group; Alertmanager's max_alerts setting
// truncates larger groups on its side.
const MaxAlertsPerWebhook = 1000

// MaxAlertBytes is the largest alert Salve stores: one alert, as JSON,
// with its labels and annotations. It stays well under NATS's default
// 1 MiB message limit, with room for headers; a larger alert gets 413.
const MaxAlertBytes = 512 << 10

// maxProblems bounds the problems one answer lists: a group of 1,000
// alerts wrong in the same way needs a few to be understood, not all.
const maxProblems = 10

// ErrTooLarge wraps the reason a webhook holds an alert over the size
// limit: ingest answers 413.
var ErrTooLarge = errors.New("alert too large")

// DecodeWebhook parses and validates a webhook body and splits it into one
// AlertEvent per alert. All problems are reported together.
func DecodeWebhook(body []byte, receivedAt time.Time) (WebhookMessage, []domain.AlertEvent, error) {
	return decodeWebhook(body, receivedAt, MaxAlertBytes)
}

func decodeWebhook(body []byte, receivedAt time.Time, maxAlert int) (WebhookMessage, []domain.AlertEvent, error) {
	var msg WebhookMessage
	// Alertmanager sends UTF-8; Go's decoder would quietly turn invalid
	// bytes into U+FFFD, storing something the sender never sent.
	if !utf8.Valid(body) {
		return msg, nil, fmt.Errorf("%w: the body is not valid UTF-8 (first bad byte at offset %d)", ErrBadPayload, firstInvalidUTF8(body))
	}
	// json.Unmarshal, not a Decoder: the body is already in memory, and
	// Unmarshal rejects trailing data by itself.
	if err := json.Unmarshal(body, &msg); err != nil {
		if strings.Contains(err.Error(), "after top-level value") {
			return msg, nil, fmt.Errorf("%w: trailing data after the JSON object: send one webhook per request", ErrBadPayload)
		}
		return msg, nil, fmt.Errorf("%w: not valid JSON for an Alertmanager webhook: %v", ErrBadPayload, err)
	}
	var problems []string
	if msg.Version != "4" {
		problems = append(problems, fmt.Sprintf("version is %q; Salve accepts Alertmanager webhook version \"4\"", msg.Version))
	}
	if len(msg.Alerts) == 0 {
		problems = append(problems, "alerts: empty; nothing to accept")
	}
	if len(msg.Alerts) > MaxAlertsPerWebhook {
		problems = append(problems, fmt.Sprintf("alerts: %d alerts in one webhook; at most %d (set max_alerts in the Alertmanager webhook_config)", len(msg.Alerts), MaxAlertsPerWebhook))
	}
	for _, f := range []struct{ name, value string }{{"receiver", msg.Receiver}, {"groupKey", msg.GroupKey}, {"externalURL", msg.ExternalURL}} {
		if p := badText(f.value); p != "" {
			problems = append(problems, f.name+": "+p)
		}
	}
	evs := make([]domain.AlertEvent, 0, len(msg.Alerts))
	for i, a := range msg.Alerts {
		var bad []string
		if a.Status != domain.StatusFiring && a.Status != domain.StatusResolved {
			bad = append(bad, fmt.Sprintf("status is %q, want \"firing\" or \"resolved\"", a.Status))
		}
		if a.Fingerprint == "" {
			bad = append(bad, "fingerprint is missing")
		} else if !isFingerprint(a.Fingerprint) {
			bad = append(bad, fmt.Sprintf("fingerprint %s is not an Alertmanager fingerprint (16 lowercase hex digits)", quoteShort(a.Fingerprint)))
		}
		if a.StartsAt.IsZero() {
			bad = append(bad, "startsAt is missing")
		}
		if len(a.Labels) == 0 {
			bad = append(bad, "labels are missing")
		}
		bad = append(bad, badMap("labels", a.Labels, true)...)
		bad = append(bad, badMap("annotations", a.Annotations, false)...)
		if p := badText(a.GeneratorURL); p != "" {
			bad = append(bad, "generatorURL: "+p)
		}
		for _, b := range bad {
			problems = append(problems, fmt.Sprintf("alerts[%d]: %s", i, b))
		}
		if len(bad) > 0 {
			continue
		}
		evs = append(evs, domain.AlertEvent{
			ID:           domain.AlertEventID(a.Fingerprint, a.Status, a.StartsAt),
			Fingerprint:  a.Fingerprint,
			Status:       a.Status,
			Labels:       a.Labels,
			Annotations:  a.Annotations,
			StartsAt:     a.StartsAt.UTC(),
			EndsAt:       a.EndsAt.UTC(),
			GeneratorURL: a.GeneratorURL,
			Receiver:     msg.Receiver,
			GroupKey:     msg.GroupKey,
			ExternalURL:  msg.ExternalURL,
			ReceivedAt:   receivedAt.UTC(),
		})
	}
	if len(problems) > maxProblems {
		problems = append(problems[:maxProblems], fmt.Sprintf("and %d more problems", len(problems)-maxProblems))
	}
	if len(problems) > 0 {
		return msg, nil, fmt.Errorf("%w: %s", ErrBadPayload, strings.Join(problems, "; "))
	}
	// An event's JSON is at most six times the body (json.Marshal writes
	// <, > and & as six bytes) plus its fixed fields: a small body needs
	// no check, which spares encoding every alert twice.
	if 6*len(body)+1024 <= maxAlert {
		return msg, evs, nil
	}
	for i, ev := range evs {
		if b, err := json.Marshal(ev); err == nil && len(b) > maxAlert {
			return msg, nil, fmt.Errorf("%w: alerts[%d] (%s) is %d bytes as JSON; Salve stores alerts up to %d bytes: shorten its annotations or labels", ErrTooLarge, i, quoteShort(ev.Name()), len(b), maxAlert)
		}
	}
	return msg, evs, nil
}

// isFingerprint reports whether s is written as Alertmanager writes a
// fingerprint: a 64-bit hash in 16 lowercase hex digits.
func isFingerprint(s string) bool {
	if len(s) != 16 {
		return false
	}
	for i := range len(s) {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// badText says what is wrong with a string no store can keep: a NUL
// (PostgreSQL refuses it in text) — "" when nothing is.
func badText(s string) string {
	if strings.IndexByte(s, 0) >= 0 {
		return "contains a NUL character (\\u0000)"
	}
	return ""
}

// badMap checks a label or annotation map; label names must not be empty.
func badMap(field string, m map[string]string, labels bool) []string {
	var out []string
	for k, v := range m {
		if labels && k == "" {
			out = append(out, field+": a label has an empty name")
		}
		if p := badText(k); p != "" {
			out = append(out, fmt.Sprintf("%s: the name %s %s", field, quoteShort(k), p))
		}
		if p := badText(v); p != "" {
			out = append(out, fmt.Sprintf("%s[%s]: %s", field, quoteShort(k), p))
		}
	}
	slices.Sort(out) // maps have no order; the answer should
	return out
}

// quoteShort quotes s for an error message, cut to 64 bytes.
func quoteShort(s string) string {
	if len(s) > 64 {
		return strconv.Quote(s[:64]) + "..."
	}
	return strconv.Quote(s)
}

func firstInvalidUTF8(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return -1
}
