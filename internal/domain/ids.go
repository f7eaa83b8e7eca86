package domain

import (
	"fmt"
	"strings"
)

// WorkflowIDPrefix starts every Salve run's Temporal workflow ID.
const WorkflowIDPrefix = "salve/"

// WorkflowID names the one run that may exist at a time for an incident of a
// runbook. Temporal's ID uniqueness is what makes repeats join instead of
// starting a second run.
func WorkflowID(runbook, incidentKey string) string {
	return WorkflowIDPrefix + runbook + "/" + incidentKey
}

// ParseWorkflowID splits a workflow ID made by WorkflowID. Runbook names are
// DNS labels (no slash), so the first slash after the prefix separates them;
// incident keys may contain slashes.
func ParseWorkflowID(id string) (runbook, incidentKey string, err error) {
	rest, ok := strings.CutPrefix(id, WorkflowIDPrefix)
	if !ok {
		return "", "", fmt.Errorf("workflow ID %q does not start with %q", id, WorkflowIDPrefix)
	}
	runbook, incidentKey, ok = strings.Cut(rest, "/")
	if !ok || runbook == "" || incidentKey == "" {
		return "", "", fmt.Errorf("workflow ID %q is not %s<runbook>/<incident key>", id, WorkflowIDPrefix)
	}
	return runbook, incidentKey, nil
}
