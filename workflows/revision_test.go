package workflows_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/workflows"
)

func TestStartRevisionIsOneEveryPollingWorkerRuns(t *testing.T) {
	cur := workflows.CurrentRevision
	tagged := "salve-worker@w1 " + workflows.IdentityTag()
	require.Equal(t, cur, workflows.RevisionOf(tagged))
	require.Equal(t, workflows.OldestRevision, workflows.RevisionOf("salve-worker@old-pod"), "a worker from before the tags")
	require.Equal(t, workflows.OldestRevision, workflows.RevisionOf("x workflow-rev=junk"))
	require.Equal(t, 7, workflows.RevisionOf("x workflow-rev=7 more"))

	require.Equal(t, cur, workflows.StartRevision([]string{tagged, tagged}))
	require.Equal(t, workflows.OldestRevision, workflows.StartRevision([]string{tagged, "salve-worker@old-pod"}), "mid-rollout: what the old worker runs")
	require.Equal(t, cur, workflows.StartRevision([]string{tagged, "y workflow-rev=99"}), "never newer than this starter knows")
	require.Equal(t, workflows.OldestRevision, workflows.StartRevision(nil), "no worker yet: one any worker runs")
}
