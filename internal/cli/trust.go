package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/pmezard/go-difflib/difflib"
	"github.com/spf13/cobra"

	"github.com/salve-sre/salve/activities"
	"github.com/salve-sre/salve/internal/backtest"
	"github.com/salve-sre/salve/internal/trust"
	"github.com/salve-sre/salve/runbooks"
)

// `salve runbook evidence` and `promote`: the trust ladder's evidence and
// the audited decision to climb it. Salve never edits a runbook file on
// the server: promote prints the change as a patch, or writes it into the
// file a person names (their git checkout), to be reviewed and reloaded.

func newRunbookEvidence(stdout io.Writer) *cobra.Command {
	r := &remote{}
	var backtestWindow string
	cmd := &cobra.Command{
		Use:   "evidence NAME",
		Short: "Show a runbook's trust evidence: shadow runs, approvals, and whether it may be promoted",
		Long: `Summarises the last 90 days of runbook NAME's evidence, as the server's audit
log has it: its shadow runs (what each would have done, and whether a
person then did the same, something else, or nothing while the alert
resolved on its own) and people's approval decisions. It ends with the
next rung of the trust ladder (dry-run/shadow → approve → enforce) and
whether the server's trust policy (config: trust.minRuns,
trust.minAgreement) allows the promotion. With --backtest 7d the server also
replays the alerts it received in that window through the runbook (see
'salve backtest') and shows what it would have done.
` + connectionHelp,
		Example: `  salve runbook evidence restart-crashlooping
  salve runbook evidence restart-crashlooping --backtest 7d
  salve runbook evidence restart-crashlooping -o json | jq .summary.agreement`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := r.client()
			if err != nil {
				return err
			}
			ans, err := c.Evidence(cmd.Context(), args[0], backtestWindow)
			if err != nil {
				return err
			}
			if r.output.json() {
				return r.printBody(stdout, ans)
			}
			printEvidence(stdout, ans)
			return nil
		},
	}
	cmd.Flags().StringVar(&backtestWindow, "backtest", "", "also backtest the runbook over the alerts Salve received in this window (e.g. 7d)")
	r.flags(cmd)
	return cmd
}

func printEvidence(w io.Writer, ans trust.EvidenceAnswer) {
	s := ans.Summary
	fmt.Fprintf(w, "Runbook %s is on rung %s.\n\n", s.Runbook, s.Rung)
	tw := newTable(w)
	fmt.Fprintf(tw, "Shadow runs\t%d (%d would have acted)\n", s.ShadowRuns, s.WouldHaveActed)
	fmt.Fprintf(tw, "  agreed with a person\t%d\n", s.Agreed)
	fmt.Fprintf(tw, "  a person did otherwise\t%d\n", s.Disagreed)
	fmt.Fprintf(tw, "  resolved on its own\t%d%s\n", s.ResolvedOnItsOwn, share(s.SelfResolvedShare, " of those that would have acted"))
	fmt.Fprintf(tw, "  nobody acted, still firing\t%d\n", s.Unresolved)
	fmt.Fprintf(tw, "Approvals\t%d approved, %d rejected\n", s.Approved, s.Rejected)
	fmt.Fprintf(tw, "Agreement with people\t%s\n", orDash(share(s.Agreement, fmt.Sprintf(" of %d compared", s.Compared))))
	fmt.Fprintf(tw, "Last shadow run\t%s\n", orDash(s.LastShadowRun))
	_ = tw.Flush()
	if len(s.Recent) > 0 {
		fmt.Fprintln(w, "\nRecent shadow runs:")
		for _, v := range s.Recent {
			fmt.Fprintf(w, "  %s  %-20s %s\n", fmtTime(v.Time), v.Verdict, oneLine(v.Summary, 100))
		}
	}
	if b := ans.Backtest; b != nil {
		fmt.Fprintf(w, "\nBacktest over %s to %s (%d alert states): would have started %d runs, %d alerts joined, %d suppressed%s; at most %d at once.\n",
			fmtTime(b.From), fmtTime(b.To), b.AlertStates, b.Started, b.Joined, b.Suppressed, byCheck(b.By), b.Peak)
	}
	fmt.Fprintf(w, "\nPolicy: at least %d runs with evidence and %.0f%% agreement.\n", ans.Policy.MinRuns, ans.Policy.MinAgreement*100)
	switch {
	case ans.Next == "":
		fmt.Fprintln(w, "It is on the top rung: it acts on its own.")
	case ans.Allowed:
		fmt.Fprintf(w, "It may be promoted to %s: salve runbook promote %s --to %s --file FILE\n", ans.Next, s.Runbook, ans.Next)
	default:
		fmt.Fprintf(w, "Not yet for %s: %s\n", ans.Next, strings.TrimPrefix(ans.Missing, trust.ErrBelowThreshold.Error()+": "))
	}
}

func share(v *float64, suffix string) string {
	if v == nil {
		return ""
	}
	return fmt.Sprintf(" (%.0f%%%s)", *v*100, suffix)
}

func newRunbookPromote(stdout io.Writer) *cobra.Command {
	r := &remote{}
	var (
		to, reason, file string
		override, write  bool
	)
	cmd := &cobra.Command{
		Use:   "promote NAME --to approve|enforce",
		Short: "Promote a runbook up the trust ladder on its evidence (admin; audited)",
		Long: `Asks the server to promote runbook NAME to approve (mode enforce, every run
waits for a person's approval) or enforce (runs act on their own). The
server allows it only when the evidence meets its trust policy (see
'salve runbook evidence'), or with --override and a --reason; either way
the decision is audited (runbook.promoted or runbook.promotion_refused).

Salve does not change runbook files behind your back (and git's): with
--file it prints the change to that file as a unified diff, and with
--write it also writes it, for you to review, commit and deploy. The
server's runbook changes when it reloads the file.
` + connectionHelp,
		Example: `  salve runbook promote restart-crashlooping --to approve --file runbooks/restart-crashlooping.yaml
  salve runbook promote restart-crashlooping --to enforce --file runbooks/restart-crashlooping.yaml --write
  salve runbook promote restart-crashlooping --to approve --override --reason "reviewed with the owners"`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if to != trust.RungApprove && to != trust.RungEnforce {
				return usageError{fmt.Errorf("--to: want approve or enforce, got %q", to)}
			}
			if override && strings.TrimSpace(reason) == "" {
				return usageError{errors.New("--override needs --reason: say why the evidence is not needed; it is audited")}
			}
			if write && file == "" {
				return usageError{errors.New("--write needs --file: the runbook file to change")}
			}
			var src []byte
			if file != "" {
				var err error
				if src, err = os.ReadFile(file); err != nil {
					return err
				}
			}
			c, err := r.client()
			if err != nil {
				return err
			}
			ans, err := c.Promote(cmd.Context(), args[0], trust.PromoteRequest{To: to, Override: override, Reason: reason})
			if err != nil {
				return err
			}
			if r.output.json() {
				return r.printBody(stdout, ans)
			}
			how := "on its evidence"
			if ans.Override {
				how = "by override (audited with your reason)"
			}
			fmt.Fprintf(stdout, "Promoted %s from %s to %s %s.\n", ans.Runbook, ans.From, ans.To, how)
			if file == "" {
				fmt.Fprintf(stdout, "Now change its file (%s on the server): %s\n", ans.Source, ans.Change)
				return nil
			}
			return promoteFile(stdout, ans.Runbook, file, src, ans.To, write)
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "rung to promote to: approve or enforce")
	cmd.Flags().BoolVar(&override, "override", false, "promote below the evidence threshold (needs --reason)")
	cmd.Flags().StringVar(&reason, "reason", "", "why (required with --override; audited)")
	cmd.Flags().StringVar(&file, "file", "", "the runbook's file in your checkout: print the change as a diff")
	cmd.Flags().BoolVar(&write, "write", false, "also write the change into --file")
	r.flags(cmd)
	return cmd
}

// promoteFile prints (and with write, writes) the promotion's change to
// runbook name's file. The result must load as that runbook on the new
// rung, or nothing is written.
func promoteFile(w io.Writer, name, file string, src []byte, to string, write bool) error {
	out, err := runbooks.SetRung(src, to)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	reg, err := activities.NewRegistry()
	if err != nil {
		return err
	}
	rb, err := runbooks.Parse(file, out, reg)
	if err != nil {
		return fmt.Errorf("%s: the promoted file would not load, so it is not written: %w", file, err)
	}
	if rb.Name() != name {
		return fmt.Errorf("%s is runbook %q, not %s: name the file of the runbook you promoted", file, rb.Name(), name)
	}
	diff, err := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
		A: difflib.SplitLines(string(src)), B: difflib.SplitLines(string(out)),
		FromFile: "a/" + strings.TrimPrefix(filepath.ToSlash(file), "/"), ToFile: "b/" + strings.TrimPrefix(filepath.ToSlash(file), "/"), Context: 3,
	})
	if err != nil {
		return err
	}
	fmt.Fprint(w, diff)
	if !write {
		fmt.Fprintf(w, "Not written: rerun with --write, or apply the diff, then commit and reload the runbooks.\n")
		return nil
	}
	if err := replaceFile(file, out); err != nil {
		return fmt.Errorf("write %s: %w", file, err)
	}
	fmt.Fprintf(w, "Wrote %s: review, commit, and reload the runbooks.\n", file)
	return nil
}

// byCheck says suppressions by check in parentheses, or nothing.
func byCheck(by map[string]int) string {
	if len(by) == 0 {
		return ""
	}
	return " (" + backtest.ByCheck(by, false) + ")"
}

// replaceFile writes data to path atomically (a file beside it, renamed
// over it), keeping path's permissions: a reload never reads half a file.
func replaceFile(path string, data []byte) error {
	info, err := os.Stat(path)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a successful rename, nothing is there
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Chmod(info.Mode().Perm()); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
