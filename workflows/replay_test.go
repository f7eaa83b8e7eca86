package workflows_test

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/salve-sre/salve/workflows"
)

// Every saved history must replay with today's workflow code: a change that
// would break runs in flight fails here. Histories come from real runs of
// each path — success, flaps, approval, approval timeout, rejection with
// compensation, cancel with onFailure, a failed run, a dry-run plan, a wait
// for a target lock, a step skipped by its when, a shadow run whose alert
// resolved on its own and one a person agreed with — recorded by
// internal/app's end-to-end tests:
//
//	SALVE_UPDATE_HISTORY=1 go test -count=1 -run 'TestDuplicatesAndFlapsMakeExactlyOneRun|TestOperateEndToEnd|TestSafetyEnvelopeEndToEnd|TestKubernetesRunbooksEndToEnd' ./internal/app
//
// Re-record only for a new workflow revision (keep the old revision's
// files: runs started by it must still replay), never to hide a failure.
func TestReplaySavedHistories(t *testing.T) {
	files, err := filepath.Glob("testdata/history-*.json")
	require.NoError(t, err)
	require.NotEmpty(t, files, "no saved histories to replay")
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			r := worker.NewWorkflowReplayer()
			r.RegisterWorkflowWithOptions(workflows.Runbook, workflow.RegisterOptions{Name: workflows.WorkflowName})
			require.NoError(t, r.ReplayWorkflowHistoryFromJSONFile(nil, f))
		})
	}
}
