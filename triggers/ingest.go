package triggers

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/salve-sre/salve/internal/bus"
	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/internal/httpjson"
	"github.com/salve-sre/salve/internal/tracing"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// AlertStore stores alert events durably; it returns nil only when every
// event is stored. internal/bus implements it.
type AlertStore interface {
	PublishAlerts(ctx context.Context, evs []domain.AlertEvent) error
}

// AuditRecorder stores audit events durably, all or error.
type AuditRecorder interface {
	RecordAll(ctx context.Context, evs []domain.AuditEvent) error
}

// IngestMetrics observes the webhook handler; internal/metrics implements
// it. Ingest.Metrics nil means no metrics.
type IngestMetrics interface {
	// WebhookAnswered is called once per request with the status sent.
	WebhookAnswered(code int)
	// AlertsPublished is how long storing a webhook's alerts took,
	// whether it succeeded or not.
	AlertsPublished(ctx context.Context, took time.Duration)
	// AlertsAccepted is called with a webhook's alerts once it is
	// answered 2xx.
	AlertsAccepted(evs []domain.AlertEvent)
}

// DefaultMaxBody is the webhook body limit: Alertmanager's largest groups
// (1000 alerts with annotations) stay well below it.
const DefaultMaxBody = 4 << 20

// Ingest is the POST /v1/alertmanager handler.
type Ingest struct {
	// Store stores each alert once; the audit recorder derives its
	// alert.accepted record from the stored alert.
	Store AlertStore
	// Audit records what the alerts do not say themselves: a group
	// Alertmanager truncated.
	Audit   AuditRecorder
	Token   string // bearer token Alertmanager sends; required
	MaxBody int64  // 0 = DefaultMaxBody
	Log     *slog.Logger
	Now     func() time.Time // nil = time.Now
	// PublishTimeout bounds how long a webhook waits for JetStream; past it
	// the answer is 503 and Alertmanager retries. 0 = 10s.
	PublishTimeout time.Duration
	Metrics        IngestMetrics // nil = none
	// MaxAlertBytes is the largest alert stored, as JSON; 0 =
	// MaxAlertBytes. Lower it to fit a NATS server whose max_payload is
	// under 1 MiB (MaxAlertFor).
	MaxAlertBytes int
}

// MaxAlertFor is the largest alert a NATS server that takes messages of
// up to maxPayload bytes can store, with room for headers: MaxAlertBytes
// or less.
func MaxAlertFor(maxPayload int64) int {
	return int(min(int64(MaxAlertBytes), maxPayload-4<<10))
}

func (h *Ingest) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	w := rw
	if h.Metrics != nil {
		sw := httpjson.NewStatusRecorder(rw)
		defer func() { h.Metrics.WebhookAnswered(sw.Code) }()
		w = sw
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		httpjson.WriteError(w, http.StatusMethodNotAllowed, "use POST", nil)
		return
	}
	if !h.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="salve"`)
		httpjson.WriteError(w, http.StatusUnauthorized, "missing or wrong bearer token: set http_config.authorization.credentials(_file) in the Alertmanager webhook_config to Salve's webhook token", nil)
		return
	}
	maxBody := h.MaxBody
	if maxBody <= 0 {
		maxBody = DefaultMaxBody
	}
	body, err := io.ReadAll(http.MaxBytesReader(rw, r.Body, maxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			httpjson.WriteError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("webhook body is over %d bytes: lower max_alerts in the Alertmanager webhook_config", maxBody), nil)
			return
		}
		// The sender went away or the body was cut: a retry can help.
		httpjson.WriteError(w, http.StatusBadRequest, "could not read the request body: "+err.Error(), nil)
		return
	}
	now := time.Now
	if h.Now != nil {
		now = h.Now
	}
	maxAlert := h.MaxAlertBytes
	if maxAlert <= 0 {
		maxAlert = MaxAlertBytes
	}
	msg, evs, err := decodeWebhook(body, now(), maxAlert)
	if err != nil {
		h.Log.WarnContext(r.Context(), "webhook rejected", "error", err, "remote", r.RemoteAddr)
		code := http.StatusBadRequest
		if errors.Is(err, ErrTooLarge) {
			code = http.StatusRequestEntityTooLarge
		}
		httpjson.WriteError(w, code, err.Error(), nil)
		return
	}
	timeout := h.PublishTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	if tracing.Enabled() {
		trace.SpanFromContext(ctx).SetAttributes(attribute.Int("salve.alerts", len(evs)), attribute.Int("salve.alerts.truncated", msg.TruncatedAlerts))
	}
	start := time.Now()
	err = h.Store.PublishAlerts(ctx, evs)
	if h.Metrics != nil {
		h.Metrics.AlertsPublished(ctx, time.Since(start))
	}
	if err != nil {
		h.Log.ErrorContext(ctx, "webhook not stored; answering 503 so Alertmanager retries", "error", err, "alerts", len(evs))
		retryLater(w, err, "alerts could not be stored durably; retry later",
			"the ALERTS stream is full (its size limit): nothing was stored; it takes alerts again as old ones age out (raise --alerts-max-bytes or lower --alerts-max-age); retry later")
		return
	}
	if trunc := truncationEvent(msg, evs, now()); trunc != nil {
		if err := h.Audit.RecordAll(ctx, trunc); err != nil {
			// The alerts are stored, but not the record that some were cut:
			// ask for a retry; the stream deduplicates the alerts themselves.
			h.Log.ErrorContext(ctx, "webhook truncation record not stored; answering 503 so Alertmanager retries", "error", err)
			retryLater(w, err, "audit records could not be stored; retry later",
				"the AUDIT stream is full (its size limit): the audit recorder is behind or down, and frees space as it records (see /readyz); retry later")
			return
		}
	}
	if msg.TruncatedAlerts > 0 {
		h.Log.WarnContext(ctx, "Alertmanager truncated a webhook group; raise max_alerts or Salve misses alerts", "truncated", msg.TruncatedAlerts, "group_key", msg.GroupKey)
	}
	if h.Metrics != nil {
		h.Metrics.AlertsAccepted(evs)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_ = json.NewEncoder(w).Encode(map[string]any{"accepted": len(evs)})
}

// retryLater answers 503 with Retry-After, so Alertmanager sends again:
// full names a stream at its size limit, reason any other failure.
func retryLater(w http.ResponseWriter, err error, reason, full string) {
	w.Header().Set("Retry-After", "5")
	if errors.Is(err, bus.ErrStreamFull) {
		reason = full
	}
	httpjson.WriteError(w, http.StatusServiceUnavailable, reason, nil)
}

// truncationEvent audits a webhook whose group Alertmanager cut short; nil
// when it was whole. Accepted alerts need no event here: the audit
// recorder derives their alert.accepted records from ALERTS.
func truncationEvent(msg WebhookMessage, evs []domain.AlertEvent, now time.Time) []domain.AuditEvent {
	if msg.TruncatedAlerts == 0 {
		return nil
	}
	sum := sha256.Sum256([]byte(msg.GroupKey + "|" + evs[0].ID))
	return []domain.AuditEvent{{
		ID:     fmt.Sprintf("%s/%x", domain.ActionAlertTruncated, sum[:8]),
		Time:   now.UTC(),
		Actor:  domain.Actor{Kind: domain.ActorAlert, Name: msg.Receiver},
		Action: domain.ActionAlertTruncated,
		Detail: map[string]string{"groupKey": msg.GroupKey, "truncatedAlerts": strconv.Itoa(msg.TruncatedAlerts)},
	}}
}

func (h *Ingest) authorized(r *http.Request) bool {
	if h.Token == "" {
		return false // never run an open webhook by accident
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(h.Token)) == 1
}
