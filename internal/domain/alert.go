package domain

import (
	"sort"
	"strings"
	"time"
)

// Alert statuses as Alertmanager sends them.
const (
	StatusFiring   = "firing"
	StatusResolved = "resolved"
)

// AlertEvent is one alert out of an Alertmanager webhook group, as Salve
// stores it in the ALERTS stream. It is the unit that triggers match.
type AlertEvent struct {
	// ID is fingerprint|status|startsAt: the JetStream message ID, so
	// Alertmanager retries and HA duplicates collapse in the stream.
	ID           string            `json:"id"`
	Fingerprint  string            `json:"fingerprint"`
	Status       string            `json:"status"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt,omitzero"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
	// Receiver, GroupKey and ExternalURL come from the enclosing webhook.
	Receiver    string    `json:"receiver,omitempty"`
	GroupKey    string    `json:"groupKey,omitempty"`
	ExternalURL string    `json:"externalURL,omitempty"`
	ReceivedAt  time.Time `json:"receivedAt"`
}

// AlertEventID derives the deduplication ID of one alert notification.
// Alertmanager has no delivery ID; fingerprint, status and start time name
// one state of one alert, which is exactly what a retry repeats.
func AlertEventID(fingerprint, status string, startsAt time.Time) string {
	return fingerprint + "|" + status + "|" + startsAt.UTC().Format(time.RFC3339Nano)
}

// OccurrenceKey names an alert occurrence (fingerprint|startsAt): what
// the firing and the resolved notification of one alert share. From an
// alert event ID (AlertEventID); false when it is not one.
func OccurrenceKey(alertID string) (string, bool) {
	parts := strings.Split(alertID, "|")
	if len(parts) != 3 {
		return "", false
	}
	t, err := time.Parse(time.RFC3339Nano, parts[2])
	if err != nil {
		return "", false
	}
	return OccurrenceKeyOf(parts[0], t), true
}

// OccurrenceKeyOf is the occurrence key of a fingerprint and start.
func OccurrenceKeyOf(fingerprint string, startsAt time.Time) string {
	return fingerprint + "|" + startsAt.UTC().Format(time.RFC3339Nano)
}

// Name returns the alertname label.
func (a AlertEvent) Name() string { return a.Labels["alertname"] }

// LabelString renders labels as {a="1", b="2"} in key order, for logs and
// error messages.
func LabelString(labels map[string]string) string {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(k)
		b.WriteString(`="`)
		b.WriteString(labels[k])
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}

// AlertAccepted is the audit record of an accepted alert. The audit
// recorder derives it from the alert stored in ALERTS, so the webhook
// stores each alert once; its ID makes a republished alert (a retry, a
// redelivery) one record.
//
// It keeps enough for incident timelines (when the alert fired and
// resolved), never its annotations, which may carry anything.
func AlertAccepted(ev AlertEvent) AuditEvent {
	d := map[string]string{"alertId": ev.ID, "alertname": ev.Name(), "fingerprint": ev.Fingerprint,
		"startsAt": ev.StartsAt.UTC().Format(time.RFC3339Nano)}
	if !ev.EndsAt.IsZero() && ev.Status == StatusResolved {
		d["endsAt"] = ev.EndsAt.UTC().Format(time.RFC3339Nano)
	}
	return AuditEvent{
		ID:      ActionAlertAccepted + "/" + ev.ID,
		Time:    ev.ReceivedAt.UTC(),
		Actor:   Actor{Kind: ActorAlert, Name: ev.Receiver},
		Action:  ActionAlertAccepted,
		Outcome: ev.Status,
		Detail:  d,
	}
}
