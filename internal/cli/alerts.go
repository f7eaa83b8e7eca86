package cli

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
)

func newAlerts(stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "alerts",
		Short: "See and retry alerts the trigger could not handle",
		Long: `An alert whose handling by a runbook fails in a way no retry can fix (the
runbook's incident key does not render for it, Temporal refuses the request)
is parked: audited as trigger.failed, counted in salve_trigger_parked_alerts,
and kept here for a person, while the trigger goes on with every other alert.
Fix the cause (usually the runbook), then retry the alert.`,
	}
	cmd.AddCommand(newAlertsFailed(stdout), newAlertsRetry(stdout))
	return cmd
}

func newAlertsFailed(stdout io.Writer) *cobra.Command {
	r := &remote{}
	cmd := &cobra.Command{
		Use:   "failed",
		Short: "List the parked alerts, newest first, with why each failed",
		Long: `Lists the parked alerts: the ID to retry with, the alert, the runbook,
when and why its handling failed.
` + connectionHelp,
		Example: `  salve alerts failed
  salve alerts failed -o json | jq -r '.failedAlerts[].id'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := r.client()
			if err != nil {
				return err
			}
			list, err := c.FailedAlerts(cmd.Context())
			if err != nil {
				return err
			}
			if r.output.json() {
				return r.printBody(stdout, map[string]any{"failedAlerts": nonNil(list)})
			}
			if len(list) == 0 {
				fmt.Fprintln(stdout, "No alerts are parked: the trigger handled every alert it could.")
				return nil
			}
			now := time.Now()
			tw := newTable(stdout)
			fmt.Fprintln(tw, "ID\tALERT\tSTATUS\tRUNBOOK\tFAILED\tREASON")
			for _, f := range list {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s (%s)\t%s\n", f.ID, orDash(f.Alertname), f.Status, f.Runbook,
					fmtTime(f.FailedAt), fmtAgo(f.FailedAt, now), oneLine(f.Reason, 120))
			}
			return tw.Flush()
		},
	}
	r.flags(cmd)
	return cmd
}

func newAlertsRetry(stdout io.Writer) *cobra.Command {
	r := &remote{}
	var reason string
	cmd := &cobra.Command{
		Use:   "retry ID...",
		Short: "Send parked alerts back to the trigger, after a fix",
		Long: `Sends each parked alert back to the trigger, for the runbook it failed
with only, and removes it from the list; if it fails again it is parked
again. Needs the operator role; audited as trigger.retried with your reason.
` + connectionHelp,
		Example: `  salve alerts retry 3f2a9c... --reason "fixed the incident key template"`,
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, ids []string) error {
			c, err := r.client()
			if err != nil {
				return err
			}
			for _, id := range ids {
				f, err := c.RetryFailedAlert(cmd.Context(), id, reason)
				if err != nil {
					return fmt.Errorf("retry %s: %w", id, err)
				}
				fmt.Fprintf(stdout, "Sent back: %s (alert %s, runbook %s)\n", f.ID, f.AlertID, f.Runbook)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why you retry (goes into the audit log)")
	r.flags(cmd)
	return cmd
}
