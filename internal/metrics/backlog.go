package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Backlog is one durable consumer's unprocessed work.
type Backlog struct {
	Consumer      string // trigger, recorder, incidents
	Pending       float64
	OldestSeconds float64
}

var (
	backlogPending = prometheus.NewDesc("salve_consumer_pending_messages",
		"Messages a durable consumer has not processed yet (not delivered, or delivered and not acknowledged): trigger and incidents on ALERTS, recorder on AUDIT.",
		[]string{"consumer"}, nil)
	backlogOldest = prometheus.NewDesc("salve_consumer_oldest_unprocessed_seconds",
		"Age of the oldest message a durable consumer has not acknowledged; 0 when it is caught up. A value that keeps growing is a consumer that is stuck.",
		[]string{"consumer"}, nil)
)

// Backlogs registers the consumer backlog gauges, read from f at each
// scrape. Consumers f leaves out (not created yet) have no series.
func (m *Metrics) Backlogs(f func() []Backlog) {
	if m == nil || f == nil {
		return
	}
	m.reg.MustRegister(backlogCollector(f))
}

type backlogCollector func() []Backlog

func (c backlogCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- backlogPending
	ch <- backlogOldest
}

func (c backlogCollector) Collect(ch chan<- prometheus.Metric) {
	for _, b := range c() {
		ch <- prometheus.MustNewConstMetric(backlogPending, prometheus.GaugeValue, b.Pending, b.Consumer)
		ch <- prometheus.MustNewConstMetric(backlogOldest, prometheus.GaugeValue, b.OldestSeconds, b.Consumer)
	}
}

// EventIsolated counts an event a consumer set aside because its store
// refuses it (salve_consumer_isolated_events_total).
func (m *Metrics) EventIsolated(consumer string) {
	if m == nil {
		return
	}
	m.isolated.WithLabelValues(known(consumer, isolatingConsumers)).Inc()
}

var isolatingConsumers = []string{"recorder", "incidents"}
