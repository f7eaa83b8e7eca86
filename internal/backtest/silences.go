package backtest

import (
	"context"
	"time"

	"github.com/salve-sre/salve/internal/safety"
)

// silencesAt is the guard's SilenceChecker in a replay: the silences in
// force at the simulated time, matched as Alertmanager matches them.
type silencesAt struct {
	list []safety.Silence
	now  func() time.Time
}

func (s silencesAt) Matching(_ context.Context, labels map[string]string) (*safety.Silence, error) {
	t := s.now()
	for i, sil := range s.list {
		if sil.ActiveAt(t) && sil.Matches(labels) {
			return &s.list[i], nil
		}
	}
	return nil, nil
}
