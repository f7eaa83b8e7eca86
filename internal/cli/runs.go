package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/salve-sre/salve/internal/client"
	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/internal/runs"
	"github.com/salve-sre/salve/workflows"
)

func newRuns(stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "runs",
		Short: "List, inspect, follow and cancel runbook runs",
		Long: `Runs are the runbook executions Salve started, for an alert or by hand
(salve launch). RUN arguments are a run's workflow ID,
salve/<runbook>/<incident key>, as 'salve runs list' prints it; the salve/
prefix may be left out.`,
		Example: `  salve runs list --status running
  salve runs show salve/restart-crashlooping/shop/api
  salve runs watch salve/restart-crashlooping/shop/api
  salve runs cancel salve/restart-crashlooping/shop/api --reason "fixed by hand"`,
	}
	cmd.AddCommand(newRunsList(stdout, stderr), newRunsShow(stdout), newRunsCancel(stdout), newRunsWatch(stdout))
	return cmd
}

func newRunsList(stdout, stderr io.Writer) *cobra.Command {
	r := &remote{}
	var (
		f     runs.ListFilter
		limit int
		all   bool
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List runs, newest first",
		Long: `Lists runs, newest first, one page of --limit runs; --all follows the
pages to the last. Filters: --runbook, --status (running, succeeded, failed,
cancelled, terminated, timed_out), --incident-key (with --runbook) and --since
(an age such as 1h or 2d, or an RFC 3339 time).

-o json prints {"runs": [...], "nextPageToken": "..."}; with --all, every
page's runs in one list.
` + connectionHelp,
		Example: `  salve runs list
  salve runs list --runbook restart-crashlooping --status failed --since 24h
  salve runs list --all -o json | jq -r '.runs[].workflowId'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 0 {
				return fmt.Errorf("the --limit flag must not be negative, got %d", limit)
			}
			if all && !cmd.Flags().Changed("limit") {
				limit = 1000 // fewer, larger pages
			}
			c, err := r.client()
			if err != nil {
				return err
			}
			var (
				list []runs.Summary
				next string
			)
			for {
				page, tok, err := c.Runs(cmd.Context(), f, limit, next)
				if err != nil {
					return err
				}
				if tok != "" && tok == next {
					return fmt.Errorf("the API answered page token %q with itself", tok)
				}
				list, next = append(list, page...), tok
				if !all || next == "" {
					break
				}
			}
			if r.output.json() {
				body := map[string]any{"runs": nonNil(list)}
				if next != "" {
					body["nextPageToken"] = next
				}
				if all {
					return printJSON(stdout, body) // all pages in one list
				}
				return r.printBody(stdout, body)
			}
			if len(list) == 0 {
				fmt.Fprintln(stdout, "No runs.")
			} else if err := printRunList(stdout, list, time.Now()); err != nil {
				return err
			}
			if next != "" {
				fmt.Fprintln(stderr, "More runs: add --all, or filter with --since, --runbook or --status.")
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.Runbook, "runbook", "", "only runs of this runbook")
	fl.StringVar(&f.Status, "status", "", "only runs with this status: running, succeeded, failed, cancelled, terminated or timed_out")
	fl.StringVar(&f.IncidentKey, "incident-key", "", "only runs of this incident key (with --runbook)")
	fl.Var(&sinceFlag{t: &f.Since}, "since", "only runs started after this: an age (30m, 1h, 2d) or an RFC 3339 time")
	fl.IntVar(&limit, "limit", 50, "runs per page (with --all: 1000 unless given)")
	fl.BoolVar(&all, "all", false, "follow the pages to the last run")
	r.flags(cmd)
	return cmd
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func printRunList(w io.Writer, list []runs.Summary, now time.Time) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "RUN\tSTATUS\tSTARTED\tDURATION")
	for _, s := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", s.WorkflowID, orDash(s.Status), fmtTime(s.StartTime), runDuration(s, now))
	}
	return tw.Flush()
}

// runDuration is how long a run took, or has been running.
func runDuration(s runs.Summary, now time.Time) string {
	switch {
	case s.StartTime.IsZero():
		return "-"
	case s.CloseTime.IsZero():
		return fmtDuration(now.Sub(s.StartTime)) + " so far"
	}
	return fmtDuration(s.CloseTime.Sub(s.StartTime))
}

func newRunsShow(stdout io.Writer) *cobra.Command {
	r := &remote{}
	var runID string
	cmd := &cobra.Command{
		Use:   "show RUN",
		Short: "Show a run: its steps, outputs, approvals and why it stopped",
		Long: `Shows one run: its status, who or what started it, a timeline of its steps
(action, state, attempts, when each started, how long it took, its error),
the steps' outputs, the approval it waits for if any, and why it stopped.
RUN is the run's workflow ID; --run-id picks an earlier run of it (default:
the latest).
` + connectionHelp,
		Example: `  salve runs show salve/restart-crashlooping/shop/api
  salve runs show restart-crashlooping/shop/api -o json | jq .run.steps`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := r.client()
			if err != nil {
				return err
			}
			d, err := c.Run(cmd.Context(), runArg(args[0]), runID)
			if err != nil {
				return err
			}
			if r.output.json() {
				return r.printBody(stdout, d)
			}
			return printRunDetail(stdout, d, time.Now(), r.hint())
		},
	}
	cmd.Flags().StringVar(&runID, "run-id", "", "Temporal run ID of an earlier run of the workflow (default: the latest)")
	r.flags(cmd)
	return cmd
}

// runState is a run's outcome: the workflow's own state when known (it
// tells a rejected run from a cancelled one), else the API's status.
func runState(d runs.Detail) string {
	if d.Run != nil && d.Run.State != "" {
		return d.Run.State
	}
	return d.Status
}

// printRunDetail prints a run for people.
func printRunDetail(w io.Writer, d runs.Detail, now time.Time, hint string) error {
	st := d.Run
	tw := newTable(w)
	fmt.Fprintf(tw, "Run:\t%s\n", d.WorkflowID)
	fmt.Fprintf(tw, "Run ID:\t%s\n", orDash(d.RunID))
	rb := d.Runbook
	if st != nil && st.RunbookHash != "" {
		rb += " (version " + shortHash(st.RunbookHash) + ")"
	}
	fmt.Fprintf(tw, "Runbook:\t%s\n", orDash(rb))
	fmt.Fprintf(tw, "Incident:\t%s\n", orDash(d.IncidentKey))
	fmt.Fprintf(tw, "Status:\t%s\n", orDash(runState(d)))
	fmt.Fprintf(tw, "Started:\t%s\n", fmtTime(d.StartTime))
	switch {
	case d.TraceURL != "":
		fmt.Fprintf(tw, "Trace:\t%s\n", d.TraceURL)
	case d.TraceID != "":
		fmt.Fprintf(tw, "Trace:\t%s (set tracing.traceURL in Salve's config for a link)\n", d.TraceID)
	}
	if !d.CloseTime.IsZero() {
		fmt.Fprintf(tw, "Ended:\t%s (took %s)\n", fmtTime(d.CloseTime), runDuration(d.Summary, now))
	} else if !d.StartTime.IsZero() {
		fmt.Fprintf(tw, "Running for:\t%s\n", fmtDuration(now.Sub(d.StartTime)))
	}
	if st != nil {
		by := "an alert"
		if st.LaunchedBy != "" {
			by = st.LaunchedBy
		}
		if st.Reason != "" {
			by += fmt.Sprintf(" (reason: %s)", st.Reason)
		}
		fmt.Fprintf(tw, "Launched by:\t%s\n", by)
		if len(st.Params) > 0 {
			fmt.Fprintf(tw, "Params:\t%s\n", compactMap(st.Params))
		}
		if st.DryRunReason != "" {
			fmt.Fprintf(tw, "Plan only:\t%s\n", st.DryRunReason)
		}
		if st.ApprovalReason != "" {
			fmt.Fprintf(tw, "Approval required:\t%s\n", st.ApprovalReason)
		}
		if len(st.Alerts) > 0 {
			resolved := ""
			if st.Resolved {
				resolved = ", resolved"
			}
			fmt.Fprintf(tw, "Alerts:\t%d notification(s)%s\n", len(st.Alerts), resolved)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if st == nil {
		if d.RunError != "" {
			fmt.Fprintf(w, "\nNo step details: %s\n", d.RunError)
		}
		return nil
	}

	fmt.Fprintln(w, "\nSteps:")
	var fullErrors []string
	if len(st.Steps) == 0 {
		fmt.Fprintln(w, "  none started yet")
	} else {
		fullErrors = append(fullErrors, printSteps(w, st.Steps, now)...)
	}
	if len(st.OnFailure) > 0 {
		fmt.Fprintln(w, "\nOn failure:")
		fullErrors = append(fullErrors, printSteps(w, st.OnFailure, now)...)
	}
	if len(fullErrors) > 0 {
		fmt.Fprintln(w, "\nErrors:")
		for _, e := range fullErrors {
			fmt.Fprintln(w, e)
		}
	}

	var outputs []string
	for _, s := range slices.Concat(st.Steps, st.OnFailure) {
		keys := make([]string, 0, len(s.Output))
		for k := range s.Output {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			outputs = append(outputs, fmt.Sprintf("  %s.%s = %s", s.Name, k, oneLine(compactValue(s.Output[k]), 200)))
		}
	}
	if len(outputs) > 0 {
		fmt.Fprintln(w, "\nOutputs:")
		for _, o := range outputs {
			fmt.Fprintln(w, o)
		}
	}

	if len(st.Approvals) > 0 {
		fmt.Fprintln(w, "\nApprovals:")
		for _, a := range st.Approvals {
			line := fmt.Sprintf("  %s: %s", approvalTarget(a.Step), a.Decision)
			if a.By != "" {
				line += " by " + a.By
			}
			line += " at " + fmtTime(a.At)
			if a.Reason != "" {
				line += fmt.Sprintf(" (reason: %s)", a.Reason)
			}
			fmt.Fprintln(w, line)
		}
	}
	if a := st.Approval; a != nil {
		fmt.Fprintf(w, "\nWaiting for approval of %s since %s (%s); deadline %s (%s), then %s.\n",
			approvalTarget(a.Step), fmtTime(a.RequestedAt), fmtAgo(a.RequestedAt, now), fmtTime(a.Deadline), fmtAgo(a.Deadline, now), orDash(a.OnTimeout))
		step := ""
		if a.Step != "" {
			step = " --step " + shellQuote(a.Step)
		}
		id := shellQuote(d.WorkflowID)
		fmt.Fprintf(w, "  approve: salve approve %s%s --reason '...'%s\n", id, step, hint)
		fmt.Fprintf(w, "  reject:  salve reject %s%s --reason '...'%s\n", id, step, hint)
	}
	if st.StopReason != "" || st.Error != "" {
		fmt.Fprintln(w)
	}
	if st.StopReason != "" {
		fmt.Fprintf(w, "Stopped: %s\n", st.StopReason)
	}
	if st.Error != "" {
		fmt.Fprintf(w, "Error: %s\n", st.Error)
	}
	return nil
}

func approvalTarget(step string) string {
	if step == "" {
		return "the whole run"
	}
	return "step " + step
}

// printSteps prints a step timeline and returns the full text of errors
// the table shortened.
func printSteps(w io.Writer, steps []workflows.StepStatus, now time.Time) []string {
	tw := newTable(w)
	fmt.Fprintln(tw, "  STEP\tACTION\tSTATE\tATTEMPTS\tSTARTED\tDURATION\tERROR")
	var full []string
	for _, s := range steps {
		attempts := "-"
		if s.Attempts > 0 {
			attempts = fmt.Sprint(s.Attempts)
		}
		dur := "-"
		switch {
		case s.StartedAt.IsZero():
		case !s.FinishedAt.IsZero():
			dur = fmtDuration(s.FinishedAt.Sub(s.StartedAt))
		case s.State == workflows.StepStateRunning || s.State == workflows.StepStateWaiting:
			dur = fmtDuration(now.Sub(s.StartedAt)) + " so far"
		}
		short := oneLine(s.Error, 80)
		if short != strings.TrimSpace(s.Error) {
			full = append(full, fmt.Sprintf("  %s: %s", s.Name, s.Error))
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.Action, orDash(s.State), attempts, fmtClock(s.StartedAt), dur, short)
	}
	_ = tw.Flush()
	return full
}

func newRunsCancel(stdout io.Writer) *cobra.Command {
	r := &remote{}
	var req runs.CancelRequest
	cmd := &cobra.Command{
		Use:   "cancel RUN",
		Short: "Ask a running run to stop",
		Long: `Asks a running run to stop: the step running now is cancelled, no further
step starts, and if a step already acted the runbook's onFailure steps run to
undo it. The run ends as cancelled. --reason is required and kept in the
audit log. Needs a token with the operator role (or admin).
` + connectionHelp,
		Example: `  salve runs cancel salve/restart-crashlooping/shop/api --reason "fixed by hand"`,
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireReason(req.Reason, "say why you cancel the run, for the audit log"); err != nil {
				return err
			}
			c, err := r.client()
			if err != nil {
				return err
			}
			id := runArg(args[0])
			res, err := c.Cancel(cmd.Context(), id, req)
			if err != nil {
				return err
			}
			if r.output.json() {
				return r.printBody(stdout, res)
			}
			fmt.Fprintf(stdout, "Asked run %s (run ID %s) to stop: %s.\n", firstOf(res.WorkflowID, id), orDash(res.RunID), orDash(res.Status))
			fmt.Fprintf(stdout, "Its onFailure steps run if a step acted. Follow it: salve runs watch %s%s\n", shellQuote(firstOf(res.WorkflowID, id)), r.hint())
			return nil
		},
	}
	cmd.Flags().StringVar(&req.Reason, "reason", "", "why you cancel it (required; kept in the audit log)")
	r.flags(cmd)
	return cmd
}

func newRunsWatch(stdout io.Writer) *cobra.Command {
	r := &remote{}
	cmd := &cobra.Command{
		Use:   "watch RUN",
		Short: "Follow a run live until it ends; exit 1 unless it succeeded",
		Long: `Follows a run as it happens, one line per event (time, step, what
happened), from its start, until it ends; then prints its final state like
'salve runs show'. If the connection drops (a server restart, say), watch
reconnects and carries on where it left off.

Exit code: 0 if the run succeeded; 1 if it failed, was cancelled or
rejected, or timed out. With -o json the output is JSON lines, one per event:
{"id","event","data"}, where data is the audit event, and for the last
event, "end", the final run as 'salve runs show -o json' prints it.
` + connectionHelp,
		Example: `  salve runs watch salve/restart-crashlooping/shop/api
  salve runs watch restart-crashlooping/shop/api && echo fixed`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := r.client()
			if err != nil {
				return err
			}
			return watchRun(cmd.Context(), c, stdout, runArg(args[0]), r)
		},
	}
	r.flags(cmd)
	return cmd
}

// errRunNotSucceeded ends watch with exit 1 when the run did not succeed;
// the final state was printed already.
type errRunNotSucceeded struct{ state string }

func (e errRunNotSucceeded) Error() string {
	return "the run did not succeed: " + strings.ReplaceAll(e.state, "_", " ")
}

// watchRun follows a run to its end, printing its events, then its final
// state; it returns errRunNotSucceeded unless the run succeeded.
func watchRun(ctx context.Context, c *client.Client, w io.Writer, workflowID string, r *remote) error {
	lv := &liveView{w: w, workflowID: workflowID, hint: r.hint(), width: 12}
	var final *runs.Detail
	err := c.Events(ctx, workflowID, func(ev client.Event) error {
		if r.output.json() {
			if err := printJSONLine(w, ev); err != nil {
				return err
			}
		}
		if ev.Name == client.EventEnd {
			d, err := ev.Final()
			if err != nil {
				return err
			}
			final = &d
			return nil
		}
		if !r.output.json() {
			lv.event(ev)
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, context.Canceled) && ctx.Err() != nil {
			return fmt.Errorf("stopped following run %s; the run goes on (salve runs watch %s)", workflowID, shellQuote(workflowID))
		}
		return err
	}
	if !r.output.json() {
		fmt.Fprintln(w)
		if err := printRunDetail(w, *final, time.Now(), r.hint()); err != nil {
			return err
		}
	}
	if s := runState(*final); s != runs.StatusSucceeded {
		return errRunNotSucceeded{state: orDash(s)}
	}
	return nil
}

func printJSONLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// liveView prints one line per event of a run.
type liveView struct {
	w          io.Writer
	workflowID string
	hint       string
	width      int // of the step column; grows with long step names
}

func (lv *liveView) event(ev client.Event) {
	a, err := ev.Audit()
	if err != nil {
		fmt.Fprintf(lv.w, "%s  %-*s  %s (undecodable: %v)\n", fmtClock(time.Now()), lv.width, "?", ev.Name, err)
		return
	}
	if a.Action == "" {
		a.Action = ev.Name
	}
	step := a.Step
	if step == "" {
		step = "(run)"
	}
	lv.width = max(lv.width, len(step))
	fmt.Fprintf(lv.w, "%s  %-*s  %s\n", fmtClock(a.Time), lv.width, step, lv.describe(a))
}

// describe says what an audit event means, in a few words.
func (lv *liveView) describe(a domain.AuditEvent) string {
	var what string
	by := a.Actor.Kind == domain.ActorUser && a.Actor.Name != ""
	switch a.Action {
	case domain.ActionRunLaunched:
		what = "launched"
	case domain.ActionRunStarted:
		what = "run started"
		if a.Actor.Kind == domain.ActorAlert && a.Actor.Name != "" {
			what += " for alert " + a.Actor.Name
		}
	case domain.ActionRunJoined, domain.ActionRunSignalled:
		what = "alert notification received"
	case domain.ActionRunCancelRequest:
		what = "cancel requested"
	case domain.ActionRunFinished:
		what = "run finished: " + orDash(a.Outcome)
	case domain.ActionStepStarted:
		what = "started"
	case domain.ActionStepSucceeded:
		what = "succeeded"
	case domain.ActionStepFailed:
		what = "failed"
	case domain.ActionStepSkipped:
		what = "skipped"
	case domain.ActionStepPlanned:
		what = "planned, not run (dry-run mode)"
	case domain.ActionApprovalRequested:
		by = false // the actor is who launched the run
		step := ""
		if a.Step != "" {
			step = " --step " + shellQuote(a.Step)
		}
		what = fmt.Sprintf("waiting for approval: salve approve %s%s --reason '...'%s", shellQuote(lv.workflowID), step, lv.hint)
	case domain.ActionApprovalGranted:
		what = "approved"
	case domain.ActionApprovalRejected:
		what = "rejected"
	case domain.ActionApprovalTimedOut:
		what = "approval timed out"
		if a.Outcome != "" {
			what += ": " + a.Outcome
		}
	case domain.ActionCredentialIssued:
		what = "credential issued"
	case domain.ActionCredentialRevoked:
		what = "credential revoked"
	case domain.ActionCredentialRevokeFailed:
		what = "credential revoke failed"
	default:
		what = a.Action
		if a.Outcome != "" {
			what += ": " + a.Outcome
		}
	}
	if by {
		what += " by " + a.Actor.Name
	}
	if a.Target != "" {
		what += " on " + a.Target
	}
	if r := a.Detail["reason"]; r != "" {
		what += fmt.Sprintf(" (reason: %s)", r)
	}
	if a.Error != "" {
		what += ": " + oneLine(a.Error, 300)
	}
	return what
}
