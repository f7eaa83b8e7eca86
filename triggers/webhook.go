// Package triggers turns Alertmanager webhooks into runs: the ingest
// handler stores each alert in JetStream before answering, and the trigger
// consumer matches stored alerts to runbooks and starts or joins the one
// run per incident.
package triggers

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

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

// DecodeWebhook parses and validates a webhook body and splits it into one
// AlertEvent per alert. All problems are reported together.
func DecodeWebhook(body []byte, receivedAt time.Time) (WebhookMessage, []domain.AlertEvent, error) {
	var msg WebhookMessage
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
	evs := make([]domain.AlertEvent, 0, len(msg.Alerts))
	for i, a := range msg.Alerts {
		var bad []string
		if a.Status != domain.StatusFiring && a.Status != domain.StatusResolved {
			bad = append(bad, fmt.Sprintf("status is %q, want \"firing\" or \"resolved\"", a.Status))
		}
		if a.Fingerprint == "" {
			bad = append(bad, "fingerprint is missing")
		} else if strings.ContainsAny(a.Fingerprint, "|\r\n") {
			bad = append(bad, "fingerprint contains '|' or a newline")
		}
		if a.StartsAt.IsZero() {
			bad = append(bad, "startsAt is missing")
		}
		if len(a.Labels) == 0 {
			bad = append(bad, "labels are missing")
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
	if len(problems) > 0 {
		return msg, nil, fmt.Errorf("%w: %s", ErrBadPayload, strings.Join(problems, "; "))
	}
	return msg, evs, nil
}
