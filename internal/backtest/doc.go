// Package backtest replays recorded alerts through Salve's real trigger
// (triggers.Trigger) and safety envelope (safety.Guard on a memory store)
// on a simulated clock, with no Temporal and no actions, and reports what
// each runbook would have done: runs started, alerts joined, suppressions
// by safety check, targets touched, peak concurrency.
//
// Runs are modelled, not executed: a simulated run ends after a fixed
// duration (Options.RunDuration) or when a resolved alert reaches it under
// onResolved: cancel or finish, and its end is applied to the guard as a
// success (Guard.Finished), so cooldowns and concurrency limits behave as
// in production. Circuit breakers only open on failures, which a backtest
// cannot know: a breaker is never opened by the simulation.
package backtest
