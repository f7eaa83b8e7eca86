// Package slos reads service level objectives as code: `kind: SLO` files
// in the shape of OpenSLO v1alpha (a subset: one ratio objective over
// Prometheus), kept next to the runbooks. It validates them strictly with
// file:line problems, renders their SLI queries for a window, and holds
// the multi-window, multi-burn-rate thresholds of the Google SRE
// workbook, which both the generated alerting rules (rules.go, Sloth's
// generator) and Salve's own budget decisions use.
//
// An SLO file is configuration written by the team, like a runbook: its
// queries are trusted. Nothing from an alert ever reaches a query here.
package slos

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// APIVersion and Kind name an SLO file (OpenSLO's own: an OpenSLO v1alpha
// SLO within the subset below is a Salve SLO file).
const (
	APIVersion = "openslo/v1alpha"
	Kind       = "SLO"
)

// WindowPlaceholder is where a query takes its range, as in OpenSLO
// files for Sloth: sum(rate(x[{{.window}}])).
const WindowPlaceholder = "{{.window}}"

// SLO is one objective.
type SLO struct {
	APIVersion string   `yaml:"apiVersion" json:"apiVersion"`
	Kind       string   `yaml:"kind" json:"kind"`
	Metadata   Metadata `yaml:"metadata" json:"metadata"`
	Spec       Spec     `yaml:"spec" json:"spec"`

	// Source is the file it came from; Hash the sha256 of its bytes.
	Source string `yaml:"-" json:"source,omitempty"`
	Hash   string `yaml:"-" json:"hash,omitempty"`
}

// Metadata names the SLO.
type Metadata struct {
	Name        string `yaml:"name" json:"name"`
	DisplayName string `yaml:"displayName,omitempty" json:"displayName,omitempty"`
}

// Spec is the objective.
type Spec struct {
	// Service is what the objective is about, e.g. checkout: MTTR and
	// MTBF are reported per service.
	Service     string `yaml:"service" json:"service"`
	Description string `yaml:"description,omitempty" json:"description,omitempty"`
	// BudgetingMethod is Occurrences (good events / total events), the
	// only method supported.
	BudgetingMethod string        `yaml:"budgetingMethod,omitempty" json:"budgetingMethod,omitempty"`
	Objectives      []Objective   `yaml:"objectives" json:"objectives"`
	TimeWindows     []TimeWindows `yaml:"timeWindows" json:"timeWindows"`
}

// Objective is the SLI (good/total) and the target ratio of good events.
type Objective struct {
	DisplayName  string       `yaml:"displayName,omitempty" json:"displayName,omitempty"`
	RatioMetrics RatioMetrics `yaml:"ratioMetrics" json:"ratioMetrics"`
	// Target is the share of good events, e.g. 0.999.
	Target float64 `yaml:"target" json:"target"`
}

// RatioMetrics is the SLI as two queries.
type RatioMetrics struct {
	Good  Metric `yaml:"good" json:"good"`
	Total Metric `yaml:"total" json:"total"`
}

// Metric is one PromQL query with {{.window}} as its range.
type Metric struct {
	Source    string `yaml:"source" json:"source"`       // prometheus
	QueryType string `yaml:"queryType" json:"queryType"` // promql
	Query     string `yaml:"query" json:"query"`
}

// TimeWindows is the SLO period: 28 or 30 days, rolling.
type TimeWindows struct {
	Count     int    `yaml:"count" json:"count"`
	Unit      string `yaml:"unit" json:"unit"` // Day
	IsRolling *bool  `yaml:"isRolling,omitempty" json:"isRolling,omitempty"`
}

// Name is the SLO's name.
func (s *SLO) Name() string { return s.Metadata.Name }

// Target is the objective's target ratio (0.999).
func (s *SLO) Target() float64 { return s.Spec.Objectives[0].Target }

// ErrorBudget is the share of events allowed to be bad (0.001).
func (s *SLO) ErrorBudget() float64 { return 1 - s.Target() }

// Period is the SLO's window (30 days).
func (s *SLO) Period() time.Duration {
	return time.Duration(s.Spec.TimeWindows[0].Count) * 24 * time.Hour
}

// ErrorRatioQuery is the query of the share of bad events over window:
// 1 - good/total, with the SLO's own queries, each on lines of its own (a
// query may end in a # comment).
func (s *SLO) ErrorRatioQuery(window time.Duration) string {
	w := PromDuration(window)
	rm := s.Spec.Objectives[0].RatioMetrics
	return "1 - ((\n" + strings.ReplaceAll(rm.Good.Query, WindowPlaceholder, w) + "\n) / (\n" + strings.ReplaceAll(rm.Total.Query, WindowPlaceholder, w) + "\n))"
}

// PromDuration writes d as Prometheus writes durations: 5m, 1h, 3d.
func PromDuration(d time.Duration) string {
	switch {
	case d%(24*time.Hour) == 0:
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return fmt.Sprintf("%ds", int64(math.Ceil(d.Seconds())))
}

// BurnWindow is one multi-window burn-rate condition: the error ratio over
// both windows above Factor x the error budget. Factor is the share of a
// 30-day budget the long window would use, scaled to the period.
type BurnWindow struct {
	Short, Long time.Duration
	Factor      float64
}

// The SRE workbook's thresholds for a 30-day period (the ones Sloth's
// google-30d windows are made of: 2 % of the budget in 1 h, 5 % in 6 h
// page; 10 % in 1 d and 10 % in 3 d ticket). A 28-day period scales them.
var (
	// FastBurn pages: either pair above its rate.
	FastBurn = []BurnWindow{{Short: 5 * time.Minute, Long: time.Hour, Factor: 14.4}, {Short: 30 * time.Minute, Long: 6 * time.Hour, Factor: 6}}
	// SlowBurn makes a ticket.
	SlowBurn = []BurnWindow{{Short: 2 * time.Hour, Long: 24 * time.Hour, Factor: 3}, {Short: 6 * time.Hour, Long: 3 * 24 * time.Hour, Factor: 1}}
)

// Factor scales a 30-day burn factor to the SLO's period: the same share
// of the budget in the same window. It is rounded to six decimals, so
// the rules and Salve's own decisions compare with the same number
// (13.44, not 13.440000000000001).
func (s *SLO) Factor(f float64) float64 {
	return math.Round(f*s.Period().Hours()/(30*24)*1e6) / 1e6
}

// Windows are every window the burn conditions and the budget read, short
// to long, without repeats.
func (s *SLO) Windows() []time.Duration {
	seen := map[time.Duration]bool{}
	var out []time.Duration
	for _, set := range [][]BurnWindow{FastBurn, SlowBurn} {
		for _, w := range set {
			for _, d := range []time.Duration{w.Short, w.Long} {
				if !seen[d] {
					seen[d] = true
					out = append(out, d)
				}
			}
		}
	}
	out = append(out, s.Period())
	slices.Sort(out)
	return out
}
