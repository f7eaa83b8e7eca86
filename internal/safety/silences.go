package safety

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/prometheus/alertmanager/pkg/labels"
	"github.com/salve-sre/salve/internal/tracing"
)

// SilenceChecker finds an active Alertmanager silence matching labels.
type SilenceChecker interface {
	Matching(ctx context.Context, labels map[string]string) (*Silence, error)
}

// Silence is the part of an Alertmanager silence Salve reports.
type Silence struct {
	ID        string    `json:"id"`
	CreatedBy string    `json:"createdBy"`
	Comment   string    `json:"comment"`
	StartsAt  time.Time `json:"startsAt"`
	EndsAt    time.Time `json:"endsAt"`
	Matchers  []struct {
		Name    string `json:"name"`
		Value   string `json:"value"`
		IsRegex bool   `json:"isRegex"`
		IsEqual *bool  `json:"isEqual"` // absent = true (older Alertmanagers)
	} `json:"matchers"`
	Status struct {
		State string `json:"state"`
	} `json:"status"`
}

// Alertmanager reads silences from Alertmanager's API v2.
type Alertmanager struct {
	URL             string
	BearerTokenFile string
	Client          *http.Client // nil = a client with a 10s timeout
}

// Matching returns the first active silence whose matchers all match
// labels, or nil.
func (a *Alertmanager) Matching(ctx context.Context, labels map[string]string) (*Silence, error) {
	silences, err := a.List(ctx)
	if err != nil {
		return nil, err
	}
	for i, s := range silences {
		if s.Status.State == "active" && s.matches(labels) {
			return &silences[i], nil
		}
	}
	return nil, nil
}

// List returns every silence Alertmanager keeps, expired ones included
// (for their retention, 5 days by default).
func (a *Alertmanager) List(ctx context.Context) ([]Silence, error) {
	u, err := url.JoinPath(a.URL, "/api/v2/silences")
	if err != nil {
		return nil, fmt.Errorf("alertmanager url %q: %w", a.URL, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	if a.BearerTokenFile != "" {
		tok, err := os.ReadFile(a.BearerTokenFile)
		if err != nil {
			return nil, fmt.Errorf("alertmanager bearer token: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	}
	c := a.Client
	if c == nil {
		c = &http.Client{Timeout: 10 * time.Second, Transport: tracing.Transport(nil)}
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %.200s", u, resp.Status, body)
	}
	var silences []Silence
	if err := json.Unmarshal(body, &silences); err != nil {
		return nil, fmt.Errorf("GET %s: undecodable answer: %w", u, err)
	}
	return silences, nil
}

// Matches reports whether the silence's matchers all match labels, as
// Alertmanager decides it (whatever the silence's state).
func (s Silence) Matches(labels map[string]string) bool { return s.matches(labels) }

// ActiveAt reports whether the silence was in force at t, from its start
// and end times, for a replay of the past (Status.State is the present).
func (s Silence) ActiveAt(t time.Time) bool { return !t.Before(s.StartsAt) && t.Before(s.EndsAt) }

// matches applies Alertmanager's matcher semantics, with its own matcher
// type: every matcher must match; a regex is anchored; a missing label is
// the empty string. A silence with a matcher Alertmanager would not have
// accepted matches nothing.
func (s Silence) matches(lset map[string]string) bool {
	if len(s.Matchers) == 0 {
		return false
	}
	for _, m := range s.Matchers {
		t := labels.MatchEqual
		switch equal := m.IsEqual == nil || *m.IsEqual; {
		case m.IsRegex && equal:
			t = labels.MatchRegexp
		case m.IsRegex:
			t = labels.MatchNotRegexp
		case !equal:
			t = labels.MatchNotEqual
		}
		lm, err := labels.NewMatcher(t, m.Name, m.Value)
		if err != nil || !lm.Matches(lset[m.Name]) {
			return false
		}
	}
	return true
}
