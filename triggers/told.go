package triggers

import (
	"sync"

	"github.com/salve-sre/salve/internal/domain"
)

// MaxToldPerRun bounds how many alert notifications the trigger signals to
// one run. Every signal is kept in the run's Temporal history, and a
// history past Temporal's limit (51,200 events) terminates the run
// mid-step: without a bound, an incident that keeps firing new alerts
// (one a second while a run waits four hours for approval) would kill
// its own remediation. Past the bound the run is told only of its first
// resolution (onResolved must still work); the other notifications are
// audited as joins that were not told (detail told: "no"), so nothing is
// lost from the record. It matches the alerts a run remembers
// (workflows.Status.Alerts).
const MaxToldPerRun = 1000

// toldRuns counts, per run, what this process has signalled to it. It is
// memory only: after a restart a run may be told up to MaxToldPerRun
// more, which keeps its history bounded all the same.
type toldRuns struct {
	mu   sync.Mutex
	runs map[string]*toldRun
}

type toldRun struct {
	n        int
	resolved bool
}

// maxToldRuns bounds the map; past it the counts start over (bounded
// memory, at worst MaxToldPerRun more signals per run).
const maxToldRuns = 100_000

// split reports which of evs to tell workflowID's run and which to
// skip, keeping their order. Nothing is counted until told is called:
// an alert whose signal failed must be told when it is redelivered.
func (t *toldRuns) split(workflowID string, evs []domain.AlertEvent) (tell, skip []domain.AlertEvent) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var n int
	var resolved bool
	if r := t.runs[workflowID]; r != nil {
		n, resolved = r.n, r.resolved
	}
	for _, ev := range evs {
		isResolved := ev.Status == domain.StatusResolved
		if n < MaxToldPerRun || (isResolved && !resolved) {
			n++
			resolved = resolved || isResolved
			tell = append(tell, ev)
			continue
		}
		skip = append(skip, ev)
	}
	return tell, skip
}

// told counts evs as delivered to workflowID's run.
func (t *toldRuns) told(workflowID string, evs []domain.AlertEvent) {
	if len(evs) == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.runs == nil || len(t.runs) >= maxToldRuns {
		t.runs = map[string]*toldRun{}
	}
	r := t.runs[workflowID]
	if r == nil {
		r = &toldRun{}
		t.runs[workflowID] = r
	}
	for _, ev := range evs {
		r.n++
		r.resolved = r.resolved || ev.Status == domain.StatusResolved
	}
}

// forget drops a run's count: its incident's next run starts afresh.
func (t *toldRuns) forget(workflowID string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.runs, workflowID)
}
