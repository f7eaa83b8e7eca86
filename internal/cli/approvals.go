package cli

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/salve-sre/salve/internal/runs"
)

func newApprovals(stdout io.Writer) *cobra.Command {
	r := &remote{}
	cmd := &cobra.Command{
		Use:   "approvals",
		Short: "List the runs waiting for a person's approval",
		Long: `Lists the runs waiting for an approval now: the run, its runbook, the step
that waits (or the whole run, before its first step), since when, the
deadline after which the approval times out, and who launched the run.
Decide with 'salve approve' or 'salve reject'.
` + connectionHelp,
		Example: `  salve approvals
  salve approvals -o json | jq -r '.approvals[].workflowId'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := r.client()
			if err != nil {
				return err
			}
			list, err := c.Approvals(cmd.Context())
			if err != nil {
				return err
			}
			if r.output.json() {
				return r.printBody(stdout, map[string]any{"approvals": nonNil(list)})
			}
			if len(list) == 0 {
				fmt.Fprintln(stdout, "No runs are waiting for an approval.")
				return nil
			}
			now := time.Now()
			tw := newTable(stdout)
			fmt.Fprintln(tw, "RUN\tRUNBOOK\tSTEP\tWAITING SINCE\tDEADLINE\tON TIMEOUT\tLAUNCHED BY")
			for _, a := range list {
				step := a.Step
				if step == "" {
					step = "(whole run)"
				}
				launchedBy := a.LaunchedBy
				if launchedBy == "" {
					launchedBy = "(alert)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s (%s)\t%s (%s)\t%s\t%s\n", a.WorkflowID, a.Runbook, step,
					fmtTime(a.RequestedAt), fmtAgo(a.RequestedAt, now), fmtTime(a.Deadline), fmtAgo(a.Deadline, now), orDash(a.OnTimeout), launchedBy)
			}
			return tw.Flush()
		},
	}
	r.flags(cmd)
	return cmd
}

func newApprove(stdout io.Writer) *cobra.Command {
	return newDecision(stdout, true)
}

func newReject(stdout io.Writer) *cobra.Command {
	return newDecision(stdout, false)
}

// newDecision builds `salve approve` and `salve reject`.
func newDecision(stdout io.Writer, approve bool) *cobra.Command {
	r := &remote{}
	var req runs.DecisionRequest
	verb, done, effect := "reject", "Rejected", "The run stops; its onFailure steps run if a step acted."
	short := "Reject the approval a run waits for; the run stops"
	if approve {
		verb, done, effect = "approve", "Approved", "The run goes on."
		short = "Approve the approval a run waits for; the run goes on"
	}
	cmd := &cobra.Command{
		Use:   verb + " RUN --reason TEXT",
		Short: short,
		Long: fmt.Sprintf(`%ss the approval RUN waits for (see 'salve approvals'). --reason is
required and kept in the audit log with your name. --step names the step you
mean: if the run waits for another step by then, nothing is decided.

You need a token with the operator role (or admin), must be one of the
runbook's access.approvers if it lists any, and may not decide on a run you
launched yourself unless the runbook sets access.allowSelfApproval.
`, verb) + connectionHelp,
		Example: fmt.Sprintf(`  salve %[1]s salve/restart-crashlooping/shop/api --reason "checked the dashboard"
  salve %[1]s restart-crashlooping/shop/api --step restart --reason "ok to restart in business hours"`, verb),
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireReason(req.Reason, "say why you "+verb+", for the audit log"); err != nil {
				return err
			}
			c, err := r.client()
			if err != nil {
				return err
			}
			id := runArg(args[0])
			if req.Step == "" {
				// Decide on what the run waits for now, as shown here, and
				// on this run only: if it has moved on, nothing is decided.
				d, err := c.Run(cmd.Context(), id, "")
				if err != nil {
					return err
				}
				if d.Run == nil || d.Run.Approval == nil {
					return fmt.Errorf("run %s is not waiting for an approval (salve runs show %s)", id, shellQuote(id))
				}
				req.Step, req.RunID = d.Run.Approval.Step, d.RunID
				fmt.Fprintf(cmd.ErrOrStderr(), "Deciding on %s of run %s (run ID %s)\n", approvalTarget(req.Step), id, d.RunID)
			}
			call := c.Reject
			if approve {
				call = c.Approve
			}
			res, err := call(cmd.Context(), id, req)
			if err != nil {
				return err
			}
			if r.output.json() {
				return r.printBody(stdout, res)
			}
			who := ""
			if res.By != "" {
				who = " as " + res.By
			}
			fmt.Fprintf(stdout, "%s %s of run %s%s. %s\n", done, approvalTarget(firstOf(res.Step, req.Step)), firstOf(res.WorkflowID, id), who, effect)
			fmt.Fprintf(stdout, "Follow it: salve runs watch %s%s\n", shellQuote(firstOf(res.WorkflowID, id)), r.hint())
			return nil
		},
	}
	cmd.Flags().StringVar(&req.Reason, "reason", "", "why you "+verb+" (required; kept in the audit log)")
	cmd.Flags().StringVar(&req.Step, "step", "", "the step you mean to "+verb+"; refused if the run waits for another one")
	r.flags(cmd)
	return cmd
}
