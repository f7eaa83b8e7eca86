package runbooks

import (
	"fmt"
	"slices"
	"strings"
)

// Who may do what with a runbook's runs. These are the one home of the
// rules: the run itself applies MayDecide to every approval, the API
// applies MayLaunch and MayCancel, and the dashboard asks the same
// questions to show or hide its buttons.

// GroupPrefix marks a group in Access lists.
const GroupPrefix = "group:"

// Allows reports whether a subject with groups matches an Access list. An
// empty list allows everyone.
func Allows(list []string, subject string, groups []string) bool {
	if len(list) == 0 {
		return true
	}
	for _, e := range list {
		if g, ok := strings.CutPrefix(e, GroupPrefix); ok {
			if slices.Contains(groups, g) {
				return true
			}
		} else if e == subject {
			return true
		}
	}
	return false
}

// MayLaunch says why subject may not launch runs of the runbook named
// runbook, or nil if they may.
func (a Access) MayLaunch(runbook, subject string, groups []string) error {
	if !Allows(a.Launchers, subject, groups) {
		return fmt.Errorf("%s may not launch runbook %s (access.launchers: %s)", subject, runbook, strings.Join(a.Launchers, ", "))
	}
	return nil
}

// MayDecide says why subject may not approve or reject a run of runbook,
// or nil if they may. launchedBy is the person who launched the run, ""
// for a run an alert started: an approval is a second pair of eyes, so
// the launcher may not decide unless the runbook allows self-approval.
func (a Access) MayDecide(runbook, subject string, groups []string, launchedBy string) error {
	if launchedBy != "" && launchedBy == subject && !a.AllowSelfApproval {
		return fmt.Errorf("%s launched this run and may not decide its approval (runbook %s does not set access.allowSelfApproval)", subject, runbook)
	}
	if !Allows(a.Approvers, subject, groups) {
		return fmt.Errorf("%s is not an approver of runbook %s (access.approvers: %s)", subject, runbook, strings.Join(a.Approvers, ", "))
	}
	return nil
}

// MayCancel says why subject may not cancel a run of runbook, or nil if
// they may. A cancel runs the compensation, much as a rejection does:
// where a runbook names its approvers, only they, its named launchers or
// an admin may cancel its runs.
func (a Access) MayCancel(runbook, subject string, groups []string, admin bool) error {
	if admin || len(a.Approvers) == 0 || Allows(a.Approvers, subject, groups) ||
		len(a.Launchers) > 0 && Allows(a.Launchers, subject, groups) {
		return nil
	}
	return fmt.Errorf("%s may not cancel runs of runbook %s (access.approvers: %s)", subject, runbook, strings.Join(a.Approvers, ", "))
}
