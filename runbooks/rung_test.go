package runbooks_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/activities"
	"github.com/salve-sre/salve/runbooks"
)

const shadowFile = `# yaml-language-server: $schema=schema.json
# Restart web when it crash-loops.
apiVersion: salve/v1
kind: Runbook
metadata: {name: restart-web}
spec:
  safety:
    mode: shadow # watching first
    shadowWindow: 20m
    cooldown: 30m
  steps:
    - {name: check, action: http.request, with: {url: "http://svc/health"}}
`

func TestSetRung(t *testing.T) {
	reg, err := activities.NewRegistry()
	require.NoError(t, err)
	for _, tt := range []struct {
		src, rung    string
		wantApproval bool
	}{
		{shadowFile, runbooks.RungApprove, true},
		{shadowFile, runbooks.RungEnforce, false},
		// No safety section at all: one is added.
		{"apiVersion: salve/v1\nkind: Runbook\nmetadata: {name: x}\nspec:\n  steps:\n    - {name: check, action: http.request, with: {url: \"http://svc/health\"}}\n", runbooks.RungApprove, true},
	} {
		out, err := runbooks.SetRung([]byte(tt.src), tt.rung)
		require.NoError(t, err)
		rb, err := runbooks.Parse("x.yaml", out, reg)
		require.NoError(t, err, "%s", out)
		require.Equal(t, runbooks.ModeEnforce, rb.Spec.Safety.Mode)
		require.Zero(t, rb.Spec.Safety.ShadowWindow)
		require.Equal(t, tt.wantApproval, rb.Spec.Safety.Approval != nil && rb.Spec.Safety.Approval.Required, "%s", out)
		if tt.src == shadowFile {
			require.Contains(t, string(out), "# Restart web when it crash-loops.", "comments are kept")
			require.Equal(t, "30m0s", rb.Spec.Safety.Cooldown.String(), "the rest of the file is kept")
		}
	}
	// approve: a run that times out waiting must not act unapproved.
	out, err := runbooks.SetRung([]byte(strings.Replace(shadowFile, "    cooldown: 30m\n", "    cooldown: 30m\n    approval: {required: false, timeout: 10m, onTimeout: continue}\n", 1)), runbooks.RungApprove)
	require.NoError(t, err)
	rb, err := runbooks.Parse("x.yaml", out, reg)
	require.NoError(t, err, "%s", out)
	require.True(t, rb.Spec.Safety.Approval.Required)
	require.Empty(t, rb.Spec.Safety.Approval.OnTimeout, "%s", out)
	require.Equal(t, "10m0s", rb.Spec.Safety.Approval.Timeout.String())

	_, err = runbooks.SetRung([]byte(shadowFile), "shadow")
	require.ErrorContains(t, err, "want approve or enforce")
	_, err = runbooks.SetRung([]byte("- a\n- b\n"), runbooks.RungEnforce)
	require.ErrorContains(t, err, "not a runbook")
}

// FuzzSetRung: a promotion rewrites whatever runbook file it is given
// without panicking, and a valid runbook stays the same runbook — same
// name, steps and trigger — on the rung asked for.
func FuzzSetRung(f *testing.F) {
	f.Add([]byte(shadowFile), true)
	f.Add([]byte("apiVersion: salve/v1\nkind: Runbook\nmetadata: {name: x}\nspec:\n  safety: null\n  steps:\n    - {name: check, action: http.request, with: {url: \"http://svc/health\"}}\n"), false)
	f.Add([]byte("spec: [1, 2]\n"), true)
	f.Add([]byte("apiVersion: salve/v1\nkind: Runbook\nmetadata: {name: x}\nspec:\n  safety: {approval: {required: true, timeout: 15m, onTimeout: continue}}\n  steps:\n    - {name: check, action: http.request, with: {url: \"http://svc/health\"}}\n"), false)
	f.Add([]byte("a: &x {b: *x}\n"), false)
	reg, err := activities.NewRegistry()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, src []byte, approve bool) {
		rung := runbooks.RungEnforce
		if approve {
			rung = runbooks.RungApprove
		}
		before, err := runbooks.Parse("x.yaml", src, reg)
		out, serr := runbooks.SetRung(src, rung)
		if err != nil || serr != nil {
			return // not a runbook: nothing to keep
		}
		after, err := runbooks.Parse("x.yaml", out, reg)
		if err != nil {
			t.Fatalf("a valid runbook became invalid: %v\n%s", err, out)
		}
		if after.Name() != before.Name() || len(after.Spec.Steps) != len(before.Spec.Steps) || after.Spec.Trigger.IncidentKey != before.Spec.Trigger.IncidentKey {
			t.Fatalf("the runbook changed beyond its rung:\n%s\n---\n%s", src, out)
		}
		if after.Spec.Safety.Mode != runbooks.ModeEnforce || (after.Spec.Safety.Approval != nil && after.Spec.Safety.Approval.Required) != approve {
			t.Fatalf("not on rung %s:\n%s", rung, out)
		}
	})
}
