package runbooks_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/runbooks"
)

func TestAccessRules(t *testing.T) {
	open := runbooks.Access{}
	strict := runbooks.Access{Launchers: []string{"lea", "group:oncall"}, Approvers: []string{"bob", "group:sre"}}
	self := runbooks.Access{Approvers: []string{"bob"}, AllowSelfApproval: true}

	require.NoError(t, open.MayLaunch("rb", "anyone", nil), "no launchers: everyone")
	require.NoError(t, strict.MayLaunch("rb", "lea", nil))
	require.NoError(t, strict.MayLaunch("rb", "x", []string{"oncall"}), "by group")
	require.EqualError(t, strict.MayLaunch("rb", "eve", []string{"dev"}), "eve may not launch runbook rb (access.launchers: lea, group:oncall)")

	require.NoError(t, open.MayDecide("rb", "anyone", nil, ""))
	require.EqualError(t, open.MayDecide("rb", "lea", nil, "lea"), "lea launched this run and may not decide its approval (runbook rb does not set access.allowSelfApproval)")
	require.NoError(t, self.MayDecide("rb", "bob", nil, "bob"), "self-approval allowed")
	require.NoError(t, strict.MayDecide("rb", "sam", []string{"sre"}, "lea"))
	require.EqualError(t, strict.MayDecide("rb", "lea", nil, "bob"), "lea is not an approver of runbook rb (access.approvers: bob, group:sre)")

	require.NoError(t, open.MayCancel("rb", "anyone", nil, false), "no approvers: everyone who may operate")
	require.NoError(t, strict.MayCancel("rb", "bob", nil, false), "an approver")
	require.NoError(t, strict.MayCancel("rb", "lea", nil, false), "a named launcher")
	require.NoError(t, strict.MayCancel("rb", "eve", nil, true), "an admin")
	require.EqualError(t, strict.MayCancel("rb", "eve", nil, false), "eve may not cancel runs of runbook rb (access.approvers: bob, group:sre)")
	require.EqualError(t, self.MayCancel("rb", "eve", nil, false), "eve may not cancel runs of runbook rb (access.approvers: bob)", "approvers but no launchers: only approvers")
}
