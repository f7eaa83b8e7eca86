package backtest

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/internal/safety"
	"github.com/salve-sre/salve/runbooks"
	"github.com/salve-sre/salve/triggers"
)

// DefaultRunDuration is how long a simulated run lasts when its alert does
// not end it first: long enough for a typical remediation and its verify
// step.
const DefaultRunDuration = 2 * time.Minute

// Options configure a backtest.
type Options struct {
	// Runbooks are the runbooks to try, loaded as Salve loads them.
	Runbooks *runbooks.Set
	// Safety is the safety section of Salve's config (defaults, global
	// limit, maintenance windows, silences policy).
	Safety safety.Config
	// RunDuration is the modelled length of a run; 0 = DefaultRunDuration.
	RunDuration time.Duration
	// Silences, when set, are the Alertmanager silences (expired ones
	// included) checked against each alert at its simulated time.
	Silences []safety.Silence
	// Progress, when set, is called every ProgressEvery alert states.
	Progress func(done, total int)
}

// MaxStates bounds one backtest's alert states (about 10 minutes and a
// few GB at the measured speed): a larger history is a mistake of window
// or selection, or an attempt to exhaust whoever runs it.
const MaxStates = 5_000_000

// ProgressEvery is how often Options.Progress is called, in alert states.
const ProgressEvery = 10000

// Run replays states (oldest first, as States returns them) through the
// trigger and the guard and reports what each runbook would have done.
func Run(ctx context.Context, states []domain.AlertEvent, o Options) (*Result, error) {
	if o.Runbooks == nil {
		return nil, errors.New("backtest: no runbooks")
	}
	if o.RunDuration <= 0 {
		o.RunDuration = DefaultRunDuration
	}
	if len(states) > MaxStates {
		return nil, fmt.Errorf("backtest: %d alert states, more than %d: shorten the window or narrow the selection", len(states), MaxStates)
	}
	s := newSim(o)
	for i := range states {
		if i%1000 == 0 && ctx.Err() != nil {
			return nil, fmt.Errorf("backtest stopped after %d of %d alert states: %w", i, len(states), ctx.Err())
		}
		ev := states[i]
		s.endRunsUntil(ctx, ev.ReceivedAt, false)
		s.clock = ev.ReceivedAt
		if err := s.trigger.Handle(ctx, ev); err != nil {
			return nil, fmt.Errorf("alert %s at %s: %w", ev.ID, ev.ReceivedAt.Format(time.RFC3339), err)
		}
		if err := s.err; err != nil {
			return nil, err
		}
		if o.Progress != nil && (i+1)%ProgressEvery == 0 {
			o.Progress(i+1, len(states))
		}
	}
	// Runs going when the recording ends end as modelled, so the report
	// counts whole runs; their ends change no decision.
	s.endRunsUntil(ctx, time.Time{}, true)
	if s.err != nil {
		return nil, s.err
	}
	return s.result(states, o), nil
}

// sim is one backtest's world: a clock, the guard on a memory store, the
// trigger, the runs going and the decisions recorded.
type sim struct {
	clock   time.Time
	guard   *safety.Guard
	trigger *triggers.Trigger
	runs    map[string]*simRun // going, by workflow ID
	ends    endQueue
	nextRun int
	dur     time.Duration
	rec     *recorder
	err     error // the first failure of a run's end (Guard.Finished)
}

type simRun struct {
	id, workflowID string
	runbook        *runbooks.Runbook
	ended          bool
}

func newSim(o Options) *sim {
	s := &sim{runs: map[string]*simRun{}, dur: o.RunDuration, rec: newRecorder()}
	now := func() time.Time { return s.clock }
	s.guard = safety.NewGuard(safety.NewMemoryStore(), now)
	s.guard.Configure(o.Safety)
	if len(o.Silences) > 0 {
		s.guard.Silences = silencesAt{list: o.Silences, now: now}
	}
	s.trigger = &triggers.Trigger{
		Runbooks: triggers.StaticRunbooks{Set: o.Runbooks},
		Starter:  (*starter)(s),
		Audit:    s.rec,
		Log:      slog.New(slog.DiscardHandler),
		Guard:    s.guard,
		Now:      now,
	}
	return s
}

// endRunsUntil ends the runs due at or before t (all with everything).
func (s *sim) endRunsUntil(ctx context.Context, t time.Time, everything bool) {
	for s.ends.Len() > 0 && (everything || !s.ends[0].at.After(t)) {
		e := heap.Pop(&s.ends).(runEnd)
		s.end(ctx, e.run, e.at)
	}
}

// end finishes a run as production does when its workflow ends: the guard
// frees its place and starts its incident's cooldown.
func (s *sim) end(ctx context.Context, r *simRun, at time.Time) {
	if r.ended {
		return // ended earlier by its alert's resolution
	}
	r.ended = true
	if s.clock.Before(at) {
		s.clock = at
	}
	delete(s.runs, r.workflowID)
	s.rec.runEnded(r.runbook.Name(), at)
	if err := s.guard.Finished(ctx, r.runbook.Name(), r.workflowID, "succeeded", at); err != nil && s.err == nil {
		s.err = fmt.Errorf("end run %s: %w", r.workflowID, err)
	}
}

// starter is the sim's triggers.Starter: runs are bookkeeping only.
type starter sim

func (st *starter) StartOrJoin(_ context.Context, req triggers.StartRequest) (triggers.StartResult, error) {
	s := (*sim)(st)
	if r, ok := s.runs[req.WorkflowID]; ok {
		return triggers.StartResult{RunID: r.id}, nil
	}
	if req.JoinOnly {
		return triggers.StartResult{}, triggers.ErrRunEnded
	}
	s.nextRun++
	r := &simRun{id: fmt.Sprintf("sim-%d", s.nextRun), workflowID: req.WorkflowID, runbook: req.Runbook}
	s.runs[req.WorkflowID] = r
	heap.Push(&s.ends, runEnd{at: s.clock.Add(s.dur), seq: s.nextRun, run: r})
	s.rec.runStarted(req.Runbook.Name(), s.clock)
	return triggers.StartResult{RunID: r.id, Started: true}, nil
}

// Notify delivers alerts to a going run; a resolution ends it now when
// its runbook says onResolved: cancel or finish, as the workflow does.
func (st *starter) Notify(_ context.Context, workflowID string, evs ...domain.AlertEvent) (bool, error) {
	s := (*sim)(st)
	r, ok := s.runs[workflowID]
	if !ok {
		return false, nil
	}
	switch r.runbook.Spec.Trigger.OnResolved {
	case runbooks.OnResolvedCancel, runbooks.OnResolvedFinish:
		for _, ev := range evs {
			if ev.Status == domain.StatusResolved {
				// Ended after this decision, before the next one.
				s.nextRun++
				heap.Push(&s.ends, runEnd{at: s.clock, seq: s.nextRun, run: r})
				break
			}
		}
	}
	return true, nil
}

// runEnd is a run's modelled end, in a queue ordered by time.
type runEnd struct {
	at  time.Time
	seq int
	run *simRun
}

type endQueue []runEnd

func (q endQueue) Len() int { return len(q) }
func (q endQueue) Less(i, j int) bool {
	if !q[i].at.Equal(q[j].at) {
		return q[i].at.Before(q[j].at)
	}
	return q[i].seq < q[j].seq
}
func (q endQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *endQueue) Push(x any)   { *q = append(*q, x.(runEnd)) }
func (q *endQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}
