// Package workflows holds the one generic, deterministic Runbook workflow.
// It interprets a snapshot of a runbook taken at start and calls each step
// kind as the activity step.ActivityName(kind), so it imports no
// implementation package. Workflow code here never reads clocks, files,
// randomness or the network, never ranges over a map, and never uses `go`
// or `select` (see the import-rule test and CONVENTIONS).
package workflows
