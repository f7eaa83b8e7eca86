// Package runbooktest runs unit tests for runbooks, in the spirit of
// `promtool test rules`: a test file gives input alerts (or a recorded
// Alertmanager payload) and launch params, canned outputs or failures for
// steps, and the expected outcome. Each case runs the real Runbook workflow
// in Temporal's test environment with every step kind replaced by a
// recording fake, so nothing real is touched and timers are skipped.
package runbooktest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/runbooks"
)

// File is one test file.
type File struct {
	// Runbooks are the runbook files (paths relative to the test file)
	// loaded as the set the alerts are matched against.
	Runbooks []string `yaml:"runbooks"`
	Tests    []Case   `yaml:"tests"`

	path string
}

// Case is one test.
type Case struct {
	Name string `yaml:"name"`
	// Alert is an alert written inline; Payload a recorded Alertmanager
	// webhook (path relative to the test file) whose first alert is used.
	// With neither, the case is a manual launch of Runbook.
	Alert   *Alert `yaml:"alert,omitempty"`
	Payload string `yaml:"payload,omitempty"`
	// Runbook picks which matching runbook to run (required when several
	// match, and for manual launches).
	Runbook string            `yaml:"runbook,omitempty"`
	Params  map[string]string `yaml:"params,omitempty"`
	// IncidentKey of a manual launch; default "manual".
	IncidentKey string `yaml:"incidentKey,omitempty"`
	// Steps gives canned behaviour per step name; unlisted steps succeed
	// with no output.
	Steps map[string]Canned `yaml:"steps,omitempty"`
	// ResolveAfter sends the alert's resolution to the run at this point
	// of (skipped) workflow time.
	ResolveAfter runbooks.Duration `yaml:"resolveAfter,omitempty"`
	// Decisions answers approvals: "runbook" (the runbook-level approval)
	// or a step name -> approve, reject or timeout. Unlisted approvals
	// are approved at once.
	Decisions map[string]string `yaml:"decisions,omitempty"`
	Expect    Expect            `yaml:"expect"`
}

// Alert is an input alert. Without a fingerprint, one is derived from the
// labels, so the same labels always make the same incident.
type Alert struct {
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations,omitempty"`
	Status      string            `yaml:"status,omitempty"`
	Fingerprint string            `yaml:"fingerprint,omitempty"`
}

// Canned is what a faked step does.
type Canned struct {
	Output map[string]any `yaml:"output,omitempty"`
	// Error makes every attempt fail with this message (not retried).
	Error string `yaml:"error,omitempty"`
}

// Expect is the expected outcome. Only what is written is compared.
type Expect struct {
	// Matches lists every runbook the alert triggers; [] means none.
	Matches     *[]string         `yaml:"matches,omitempty"`
	IncidentKey string            `yaml:"incidentKey,omitempty"`
	State       string            `yaml:"state,omitempty"`
	Error       string            `yaml:"error,omitempty"` // a substring of the run's error
	Params      map[string]string `yaml:"params,omitempty"`
	Steps       *[]ExpectStep     `yaml:"steps,omitempty"`
	OnFailure   *[]ExpectStep     `yaml:"onFailure,omitempty"`
	// Approvals lists what would wait for a person: "runbook" for the
	// runbook-level approval, then step names.
	Approvals *[]string `yaml:"approvals,omitempty"`
}

// ExpectStep is one expected step, in order.
type ExpectStep struct {
	Name   string         `yaml:"name"`
	Action string         `yaml:"action,omitempty"`
	State  string         `yaml:"state,omitempty"`
	With   map[string]any `yaml:"with,omitempty"` // the rendered params, exactly
}

// Load reads a test file strictly: an unknown field is an error, so a
// misspelt expectation cannot silently test nothing.
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f File
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%s: %s", path, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	f.path = path
	var problems []string
	if len(f.Runbooks) == 0 {
		problems = append(problems, "runbooks: list the runbook files under test, relative to this file")
	}
	if len(f.Tests) == 0 {
		problems = append(problems, "tests: no test cases")
	}
	names := map[string]bool{}
	for i, c := range f.Tests {
		where := fmt.Sprintf("tests[%d]", i)
		switch {
		case c.Name == "":
			problems = append(problems, where+": every test needs a name")
		case names[c.Name]:
			problems = append(problems, fmt.Sprintf("%s: duplicate test name %q", where, c.Name))
		}
		names[c.Name] = true
		if c.Alert != nil && c.Payload != "" {
			problems = append(problems, where+": give alert or payload, not both")
		}
		if c.Alert == nil && c.Payload == "" && c.Runbook == "" {
			problems = append(problems, where+": a manual launch (no alert or payload) needs runbook")
		}
		if c.Alert != nil && c.Alert.Status != "" && c.Alert.Status != domain.StatusFiring && c.Alert.Status != domain.StatusResolved {
			problems = append(problems, fmt.Sprintf("%s.alert.status: firing or resolved, got %q", where, c.Alert.Status))
		}
		for name, cs := range c.Steps {
			if cs.Error != "" && len(cs.Output) > 0 {
				problems = append(problems, fmt.Sprintf("%s.steps.%s: give output or error, not both", where, name))
			}
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%s: %s", path, strings.Join(problems, "; "))
	}
	return &f, nil
}

// rel resolves a path written in the test file.
func (f *File) rel(p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(filepath.Dir(f.path), p)
}

// event turns an inline alert into the event ingest would have stored.
func (a *Alert) event(at time.Time) domain.AlertEvent {
	status := a.Status
	if status == "" {
		status = domain.StatusFiring
	}
	fp := a.Fingerprint
	if fp == "" {
		fp = labelsFingerprint(a.Labels)
	}
	startsAt := at.Add(-time.Minute)
	return domain.AlertEvent{
		ID:          domain.AlertEventID(fp, status, startsAt),
		Fingerprint: fp,
		Status:      status,
		Labels:      a.Labels,
		Annotations: a.Annotations,
		StartsAt:    startsAt,
		ReceivedAt:  at,
	}
}

func labelsFingerprint(l map[string]string) string {
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := sha256.New()
	for _, k := range keys {
		fmt.Fprintf(h, "%s\x00%s\x00", k, l[k])
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// errNoMatch and errAmbiguous explain why a case could not pick a runbook.
var (
	errNoMatch   = errors.New("the alert matches no runbook")
	errAmbiguous = errors.New("the alert matches several runbooks")
)
