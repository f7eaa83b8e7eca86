// Package stats computes the toil and reliability figures of the
// dashboard from the audit log and the alerts read model: what automation
// saved, how often it fixed things, and where it should go next.
package stats

import "time"

// Report is every figure for one time window.
type Report struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`

	// ToilSavedSeconds is the sum, over successful automated (alert-
	// triggered) runs that finished in the window, of the runbook's
	// toil.manualMinutes minus the time the run waited for people.
	ToilSavedSeconds float64       `json:"toilSavedSeconds"`
	ToilByRunbook    []RunbookToil `json:"toilByRunbook"`
	ToilByTeam       []TeamToil    `json:"toilByTeam"`
	// Days has one point per UTC day of the window, oldest first.
	Days []DayPoint `json:"days"`

	// Alert occurrences (an alert's firing, by fingerprint and start)
	// that started in the window.
	Alerts int `json:"alerts"`
	// AlertsWithRunbook matched at least one runbook.
	AlertsWithRunbook int `json:"alertsWithRunbook"`
	// Coverage = AlertsWithRunbook / Alerts; nil without alerts.
	Coverage *float64 `json:"coverage"`
	// AutomationRate = occurrences resolved after a successful automated
	// run / AlertsWithRunbook; nil when no alert matched a runbook.
	AutomationRate *float64 `json:"automationRate"`

	// MTTR (firing to resolved, mean) of resolved occurrences that a
	// successful Salve run remediated, and of the others.
	MTTRAutomatedSeconds *float64 `json:"mttrAutomatedSeconds"`
	MTTRManualSeconds    *float64 `json:"mttrManualSeconds"`
	// AlertToFirstActionP50Seconds is the median time from Salve
	// receiving an alert to the first step of its run starting.
	AlertToFirstActionP50Seconds *float64 `json:"alertToFirstActionP50Seconds"`

	// MTBF per alert name: mean time between the starts of its
	// occurrences (needs two); NoisiestAlerts by number of occurrences.
	MTBF           []AlertMTBF  `json:"mtbf"`
	NoisiestAlerts []AlertCount `json:"noisiestAlerts"`

	// Runs that finished in the window, by outcome.
	Runs        int      `json:"runs"`
	Succeeded   int      `json:"succeeded"`
	Failed      int      `json:"failed"`
	Cancelled   int      `json:"cancelled"` // cancelled or rejected by a person
	SuccessRate *float64 `json:"successRate"`
	// TopFailing lists runbooks by failed runs, most first.
	TopFailing []RunbookRuns `json:"topFailing"`
	// PendingApprovals is the number of runs waiting for a person now;
	// PendingApprovalsError says why it could not be counted (then it is
	// a lower bound).
	PendingApprovals      int    `json:"pendingApprovals"`
	PendingApprovalsError string `json:"pendingApprovalsError,omitempty"`
	// CircuitBreakers are the breakers of runbooks that declare one.
	CircuitBreakers []Breaker `json:"circuitBreakers"`
}

// Breaker is one runbook's circuit breaker now.
type Breaker struct {
	Runbook        string    `json:"runbook"`
	Open           bool      `json:"open"`
	OpenSince      time.Time `json:"openSince,omitzero"`
	RecentFailures int       `json:"recentFailures"`
}

// RunbookToil is the toil one runbook saved.
type RunbookToil struct {
	Runbook      string  `json:"runbook"`
	Owner        string  `json:"owner,omitempty"`
	Runs         int     `json:"runs"` // successful automated runs
	SavedSeconds float64 `json:"savedSeconds"`
}

// TeamToil is the toil saved for one runbook owner.
type TeamToil struct {
	Owner        string  `json:"owner"`
	SavedSeconds float64 `json:"savedSeconds"`
}

// DayPoint is one day of the window.
type DayPoint struct {
	Day          time.Time `json:"day"` // midnight UTC
	SavedSeconds float64   `json:"savedSeconds"`
	Runs         int       `json:"runs"`
	Failed       int       `json:"failed"`
	Alerts       int       `json:"alerts"`
}

// AlertMTBF is the mean time between failures of one alert name.
type AlertMTBF struct {
	Alertname   string  `json:"alertname"`
	Occurrences int     `json:"occurrences"`
	MTBFSeconds float64 `json:"mtbfSeconds"`
}

// AlertCount is how often an alert fired.
type AlertCount struct {
	Alertname   string `json:"alertname"`
	Occurrences int    `json:"occurrences"`
	// Automated is how many of them a successful run remediated.
	Automated int `json:"automated"`
}

// RunbookRuns counts one runbook's runs.
type RunbookRuns struct {
	Runbook string `json:"runbook"`
	Runs    int    `json:"runs"`
	Failed  int    `json:"failed"`
}
