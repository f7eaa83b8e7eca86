package metrics

import "github.com/prometheus/client_golang/prometheus"

// LeaseTotals are the credential lease counts of this process, summed over
// Vault roles (roles can be templated from alert labels, so they are not
// labels here). internal/vault counts them (vault.LeaseCounters); the
// composition root adapts its Snapshot into this, so neither package
// imports the other.
type LeaseTotals struct {
	Issued, Revoked, IssueFailed, RevokeFailed uint64
}

// Leases sets where the credential counters come from; they read 0 until
// it is called (no Vault configured: nothing was issued). A later call
// replaces f.
func (m *Metrics) Leases(f func() LeaseTotals) {
	if m == nil || f == nil {
		return
	}
	m.leases.Store(&f)
}

var (
	descIssued = prometheus.NewDesc("salve_credentials_issued_total",
		"Short-lived credentials (Vault leases) issued for step attempts.", nil, nil)
	descRevoked = prometheus.NewDesc("salve_credentials_revoked_total",
		"Credential leases revoked when their step attempt ended.", nil, nil)
	descIssueFailed = prometheus.NewDesc("salve_credentials_issue_failures_total",
		"Credential requests Vault refused or failed; the step attempt did not act.", nil, nil)
	descRevokeFailed = prometheus.NewDesc("salve_credentials_revoke_failures_total",
		"Lease revocations that failed (retried until the lease would have expired anyway).", nil, nil)
)

// leaseCollector reads the counters at scrape time: Vault's own counts are
// the source of truth, nothing is copied.
type leaseCollector struct{ m *Metrics }

func (c leaseCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descIssued
	ch <- descRevoked
	ch <- descIssueFailed
	ch <- descRevokeFailed
}

func (c leaseCollector) Collect(ch chan<- prometheus.Metric) {
	var t LeaseTotals
	if f := c.m.leases.Load(); f != nil {
		t = (*f)()
	}
	ch <- prometheus.MustNewConstMetric(descIssued, prometheus.CounterValue, float64(t.Issued))
	ch <- prometheus.MustNewConstMetric(descRevoked, prometheus.CounterValue, float64(t.Revoked))
	ch <- prometheus.MustNewConstMetric(descIssueFailed, prometheus.CounterValue, float64(t.IssueFailed))
	ch <- prometheus.MustNewConstMetric(descRevokeFailed, prometheus.CounterValue, float64(t.RevokeFailed))
}
