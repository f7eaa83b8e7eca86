package backtest

import (
	"slices"
	"time"

	"github.com/prometheus/common/model"

	"github.com/salve-sre/salve/internal/domain"
)

// Occurrence is one alert firing from Start until End (zero: still firing
// when the recording ends), as Prometheus's ALERTS series or Salve's
// alert history record it.
type Occurrence struct {
	Labels map[string]string
	// Fingerprint is Alertmanager's (Fingerprint); "" = computed.
	Fingerprint string
	Start, End  time.Time
}

// Fingerprint is the fingerprint Alertmanager gives an alert with these
// labels: the Prometheus label-set fingerprint.
func Fingerprint(labels map[string]string) string {
	ls := make(model.LabelSet, len(labels))
	for k, v := range labels {
		ls[model.LabelName(k)] = model.LabelValue(v)
	}
	return ls.Fingerprint().String()
}

// DefaultRepeatInterval is Alertmanager's default repeat_interval: how
// often a firing alert is sent again.
const DefaultRepeatInterval = 4 * time.Hour

// States turns occurrences into the alert states Salve's trigger would
// have received, oldest first: a firing state at Start, a firing repeat
// every repeat (Alertmanager's repeat_interval; 0 = none) while it fires,
// and a resolved state at End. Only states within [from, to) are kept.
func States(occs []Occurrence, repeat time.Duration, from, to time.Time) []domain.AlertEvent {
	out := make([]domain.AlertEvent, 0, 2*len(occs))
	for _, o := range occs {
		fp := o.Fingerprint
		if fp == "" {
			fp = Fingerprint(o.Labels)
		}
		add := func(status string, at time.Time) {
			if at.Before(from) || !at.Before(to) {
				return
			}
			ev := domain.AlertEvent{
				ID: domain.AlertEventID(fp, status, o.Start), Fingerprint: fp, Status: status,
				Labels: o.Labels, StartsAt: o.Start.UTC(), ReceivedAt: at.UTC(),
			}
			if status == domain.StatusResolved {
				ev.EndsAt = at.UTC()
			}
			out = append(out, ev)
		}
		add(domain.StatusFiring, o.Start)
		end := o.End
		if end.IsZero() {
			end = to
		}
		if repeat > 0 {
			for at := o.Start.Add(repeat); at.Before(end); at = at.Add(repeat) {
				add(domain.StatusFiring, at)
			}
		}
		if !o.End.IsZero() {
			add(domain.StatusResolved, o.End)
		}
	}
	// Stable: states at one instant keep their occurrence order, so a
	// replay is deterministic.
	slices.SortStableFunc(out, func(a, b domain.AlertEvent) int { return a.ReceivedAt.Compare(b.ReceivedAt) })
	return out
}
