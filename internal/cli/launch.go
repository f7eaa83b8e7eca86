package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/salve-sre/salve/internal/runs"
	"github.com/salve-sre/salve/runbooks"
)

func newLaunch(stdout io.Writer) *cobra.Command {
	r := &remote{}
	params := paramsFlag{}
	var req runs.LaunchRequest
	var wait bool
	cmd := &cobra.Command{
		Use:   "launch RUNBOOK",
		Short: "Run a runbook by hand (or see its plan with --dry-run)",
		Long: `Asks Salve's API to start a run of RUNBOOK with the params given by -p,
exactly as an alert would: the same safety checks, approvals, per-step
credentials and audit trail, with you recorded as the person who launched it.

--dry-run starts nothing: it prints the plan of the run instead (each step
with its action, whether it changes anything, its rendered params; the
approvals it would wait for; the credentials it would request; the safety
checks that apply).

Without --wait the command prints the run's workflow ID and returns; with
--wait it follows the run, one line per event, until it ends and prints its
final state. Exit code with --wait: 0 if the run succeeded, 1 if it failed,
was cancelled or rejected, or timed out. With -o json and --wait the output is
JSON lines: the launch result, then each event as {"id","event","data"}.

Launching needs a token with the operator role (or admin), and the runbook's
access.launchers must include you if it sets any.
` + connectionHelp,
		Example: `  # What would a restart of shop/api do?
  salve launch restart-crashlooping -p namespace=shop -p deployment=api --dry-run

  # Do it, say why, and follow it to the end
  salve launch restart-crashlooping -p namespace=shop -p deployment=api \
    --reason "api pods stuck after the node drain" --wait

  # The plan as JSON, for a script
  salve launch restart-crashlooping -p namespace=shop -p deployment=api --dry-run -o json`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := r.client()
			if err != nil {
				return err
			}
			if len(params) > 0 {
				req.Params = params
			}
			res, err := c.Launch(cmd.Context(), args[0], req)
			if err != nil {
				return err
			}
			if req.DryRun {
				if r.output.json() {
					// The plan as the API sent it.
					var body struct {
						Plan json.RawMessage `json:"plan"`
					}
					if json.Unmarshal(r.body, &body) == nil && len(body.Plan) > 0 {
						r.body = body.Plan
						return r.printBody(stdout, res.Plan)
					}
					return printJSON(stdout, res.Plan)
				}
				if res.Plan == nil {
					return fmt.Errorf("the API answered the dry run of %s without a plan", args[0])
				}
				return printLaunchPlan(stdout, res.Plan)
			}
			if res.WorkflowID == "" {
				return fmt.Errorf("the API answered the launch of %s without a workflow ID", args[0])
			}
			if !wait {
				if r.output.json() {
					return r.printBody(stdout, res)
				}
				printLaunched(stdout, res, r.hint())
				return nil
			}
			if r.output.json() {
				var line bytes.Buffer
				if json.Compact(&line, r.body) != nil {
					line.Reset()
					_ = json.NewEncoder(&line).Encode(res)
				}
				fmt.Fprintln(stdout, strings.TrimSpace(line.String()))
			} else {
				fmt.Fprintf(stdout, "Launched %s (run ID %s); following it, Ctrl-C stops following, not the run.\n\n", res.WorkflowID, res.RunID)
			}
			return watchRun(cmd.Context(), c, stdout, res.WorkflowID, r)
		},
	}
	f := cmd.Flags()
	f.VarP(params, "param", "p", "runbook param as key=value (repeat for more)")
	f.BoolVar(&req.DryRun, "dry-run", false, "print the plan; start nothing")
	f.StringVar(&req.Reason, "reason", "", "why you launch it (kept in the audit log)")
	f.StringVar(&req.IncidentKey, "incident-key", "", "incident key of the run (default: manual-<random>); a running run with the same key is a conflict")
	f.BoolVar(&wait, "wait", false, "follow the run until it ends; exit 1 unless it succeeded")
	cmd.MarkFlagsMutuallyExclusive("dry-run", "wait")
	r.flags(cmd)
	return cmd
}

// printLaunched says where a launched run is and how to follow it.
func printLaunched(w io.Writer, res runs.LaunchResult, hint string) {
	id := shellQuote(res.WorkflowID)
	fmt.Fprintf(w, "Launched run of %s for incident %s\n", res.Runbook, res.IncidentKey)
	fmt.Fprintf(w, "  workflow ID: %s\n", res.WorkflowID)
	fmt.Fprintf(w, "  run ID:      %s\n", res.RunID)
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Follow it:  salve runs watch %s%s\n", id, hint)
	fmt.Fprintf(w, "Show it:    salve runs show %s%s\n", id, hint)
	fmt.Fprintf(w, "Cancel it:  salve runs cancel %s --reason '...'%s\n", id, hint)
}

// printLaunchPlan prints a dry run's plan for people.
func printLaunchPlan(w io.Writer, p *runbooks.Plan) error {
	mode := orDash(p.Mode)
	fmt.Fprintf(w, "Plan of %s for incident %s (mode %s", p.Runbook, orDash(p.IncidentKey), mode)
	if p.RunbookHash != "" {
		fmt.Fprintf(w, ", runbook %s", shortHash(p.RunbookHash))
	}
	fmt.Fprintln(w, "); nothing was started.")
	if p.Mode == runbooks.ModeDryRun {
		fmt.Fprintln(w, "The runbook is in dry-run mode: its mutating steps would be planned, not run.")
	}
	if len(p.Params) > 0 {
		fmt.Fprintf(w, "Params: %s\n", compactMap(p.Params))
	}
	fmt.Fprintln(w)
	if err := printPlannedSteps(w, p.Steps); err != nil {
		return err
	}
	if len(p.OnFailure) > 0 {
		fmt.Fprintln(w, "\nOn failure (runs if a step acted and the run then failed or was cancelled):")
		if err := printPlannedSteps(w, p.OnFailure); err != nil {
			return err
		}
	}
	fmt.Fprintln(w, "\nApprovals:")
	if len(p.Approvals) == 0 {
		fmt.Fprintln(w, "  none")
	}
	for _, a := range p.Approvals {
		what := "the whole run, before its first step"
		if a.Step != "" {
			what = "step " + a.Step
		}
		fmt.Fprintf(w, "  %s: waits up to %s, then %s\n", what, fmtDuration(a.Timeout.D()), orDash(a.OnTimeout))
	}
	fmt.Fprintln(w, "\nCredentials:")
	if len(p.Credentials) == 0 {
		fmt.Fprintln(w, "  none")
	}
	for _, c := range p.Credentials {
		ttl := ""
		if c.TTL > 0 {
			ttl = ", ttl " + fmtDuration(c.TTL.D())
		}
		fmt.Fprintf(w, "  %s role %s%s, for %s\n", c.Source, orDash(c.Role), ttl, strings.Join(c.Steps, ", "))
	}
	if p.SLO != nil && p.SLO.Now != "" {
		fmt.Fprintf(w, "\nSLO now:\n  %s\n  a run an alert started now would: %s (this launch acts as launched)\n", p.SLO.Now, p.SLO.AlertRun)
	}
	fmt.Fprintln(w, "\nSafety checks:")
	if len(p.Safety) == 0 {
		fmt.Fprintln(w, "  none")
		return nil
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "  CHECK\tSETTING\tENFORCED")
	for _, s := range p.Safety {
		enforced := "yes"
		if !s.Enforced {
			enforced = "no (not enforced by this version)"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", s.Name, s.Setting, enforced)
	}
	return tw.Flush()
}

func printPlannedSteps(w io.Writer, steps []runbooks.PlannedStep) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "  STEP\tACTION\tMUTATING\tAPPROVAL\tCREDENTIAL\tWITH")
	var notes []string
	for _, s := range steps {
		approval := ""
		if s.Approval {
			approval = "yes"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.Action, yesNo(s.Mutating), orDash(approval), orDash(s.Credential), compactMap(s.With))
		if s.When != "" {
			notes = append(notes, fmt.Sprintf("  %s runs only when: %s", s.Name, s.When))
		}
		if s.Note != "" {
			notes = append(notes, fmt.Sprintf("  %s: %s", s.Name, s.Note))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, n := range notes {
		fmt.Fprintln(w, n)
	}
	return nil
}

func shortHash(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}
