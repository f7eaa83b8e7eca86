package safety

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/salve-sre/salve/runbooks"
)

// Config is the global part of the safety envelope, from the `safety`
// section of Salve's config file.
type Config struct {
	// MaxConcurrentRuns bounds the alert-triggered runs going at once
	// across every runbook; 0 = no limit.
	MaxConcurrentRuns int `yaml:"maxConcurrentRuns"`
	// Defaults apply to every runbook that leaves the setting unset.
	Defaults Defaults `yaml:"defaults"`
	// MaintenanceWindows turn alert-triggered runs into dry-run plans that
	// change nothing while they are open.
	MaintenanceWindows []MaintenanceWindow `yaml:"maintenanceWindows"`
	Alertmanager       struct {
		// URL of Alertmanager's API, e.g. http://alertmanager:9093, for
		// silences.
		URL string `yaml:"url"`
		// CheckSilences checks silences for every runbook, not only those
		// with safety.respectSilences.
		CheckSilences bool `yaml:"checkSilences"`
		// BearerTokenFile, when set, authenticates to Alertmanager.
		BearerTokenFile string `yaml:"bearerTokenFile"`
	} `yaml:"alertmanager"`
}

// Defaults are runbook safety settings applied where a runbook sets none.
type Defaults struct {
	Cooldown       runbooks.Duration `yaml:"cooldown"`
	MaxRunsPerHour int               `yaml:"maxRunsPerHour"`
	MaxRunsPerDay  int               `yaml:"maxRunsPerDay"`
	MaxConcurrent  int               `yaml:"maxConcurrent"`
}

// MaintenanceWindow is a time range in which runs change nothing.
type MaintenanceWindow struct {
	Name  string    `yaml:"name"`
	Start time.Time `yaml:"start"` // RFC 3339, e.g. 2026-12-01T02:00:00Z
	End   time.Time `yaml:"end"`
	// Runbooks limits the window to these runbooks; empty = all.
	Runbooks []string `yaml:"runbooks"`
}

// Validate names every problem of the config at once.
func (c Config) Validate() error {
	var problems []string
	if c.MaxConcurrentRuns < 0 {
		problems = append(problems, "safety.maxConcurrentRuns must not be negative (0 means no limit)")
	}
	d := c.Defaults
	if d.Cooldown < 0 || d.MaxRunsPerHour < 0 || d.MaxRunsPerDay < 0 || d.MaxConcurrent < 0 {
		problems = append(problems, "safety.defaults must not be negative (0 means no limit)")
	}
	for i, w := range c.MaintenanceWindows {
		where := fmt.Sprintf("safety.maintenanceWindows[%d]", i)
		if w.Name == "" {
			problems = append(problems, where+".name is required")
		}
		if w.Start.IsZero() || w.End.IsZero() {
			problems = append(problems, where+" needs start and end, e.g. start: 2026-12-01T02:00:00Z")
		} else if !w.End.After(w.Start) {
			problems = append(problems, where+".end must be after start")
		}
	}
	if c.Alertmanager.CheckSilences && c.Alertmanager.URL == "" {
		problems = append(problems, "safety.alertmanager.checkSilences needs safety.alertmanager.url")
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "\n"))
	}
	return nil
}

// activeWindow is the maintenance window open for runbook at now, if any.
func (c Config) activeWindow(runbook string, now time.Time) *MaintenanceWindow {
	for i, w := range c.MaintenanceWindows {
		if !now.Before(w.Start) && now.Before(w.End) && (len(w.Runbooks) == 0 || slices.Contains(w.Runbooks, runbook)) {
			return &c.MaintenanceWindows[i]
		}
	}
	return nil
}

// effective is a runbook's safety settings with the global defaults.
func (g *Guard) effective(s runbooks.Safety) runbooks.Safety {
	d := g.cfg.Defaults
	if s.Cooldown == 0 {
		s.Cooldown = d.Cooldown
	}
	if s.MaxRunsPerHour == 0 {
		s.MaxRunsPerHour = d.MaxRunsPerHour
	}
	if s.MaxRunsPerDay == 0 {
		s.MaxRunsPerDay = d.MaxRunsPerDay
	}
	if s.MaxConcurrent == 0 {
		s.MaxConcurrent = d.MaxConcurrent
	}
	return s
}
