package cli

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/salve-sre/salve/internal/client"
	"github.com/salve-sre/salve/runbooks"
)

// `salve runbook list` and `show` read runbook files by default, for
// authors. With --remote they ask the API what the server has loaded. An
// --addr given on the command line implies --remote; SALVE_ADDR alone does
// not, so a shell that points at a server can still look at local files.

const runbookRemoteHelp = `
With --remote (implied by --addr on the command line, not by SALVE_ADDR
alone) the runbooks are the ones the server has loaded, asked of its API.
`

// remoteRunbooks adds --remote and the connection flags to a runbook
// command.
type remoteRunbooks struct {
	remote
	on bool
}

func (r *remoteRunbooks) flags(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&r.on, "remote", false, "ask the API what the server has loaded instead of reading files")
	r.remote.flags(cmd)
}

// active reports whether the command asks the API.
func (r *remoteRunbooks) active(cmd *cobra.Command) bool {
	return r.on || cmd.Flags().Changed("addr")
}

// localEnvOverrides applies SALVE_<FLAG> variables to the named flags only
// (the local ones), so SALVE_TOKEN or SALVE_OUTPUT do not leak into them.
func localEnvOverrides(cmd *cobra.Command, names ...string) error {
	fs := pflag.NewFlagSet(cmd.Name(), pflag.ContinueOnError)
	for _, n := range names {
		fs.AddFlag(cmd.Flags().Lookup(n))
	}
	return envOverrides(fs)
}

// runbookInfo is the API's list item for a local runbook, so -o json has
// one shape either way.
func runbookInfo(rb *runbooks.Runbook) client.RunbookInfo {
	it := client.RunbookInfo{Name: rb.Name(), Description: rb.Metadata.Description, Owner: rb.Metadata.Owner,
		Matchers: rb.Spec.Trigger.Matchers, Params: rb.Spec.Params, Mode: rb.Spec.Safety.Mode,
		ToilMinutes: rb.Spec.Toil.ManualMinutes, Source: rb.Source, Hash: rb.Hash, Steps: []string{}}
	it.Approval = rb.NeedsApproval()
	for _, st := range rb.Spec.Steps {
		it.Steps = append(it.Steps, st.Name+" ("+st.Action+")")
	}
	return it
}

func (r *remoteRunbooks) list(ctx context.Context, w io.Writer) error {
	c, err := r.client()
	if err != nil {
		return err
	}
	list, err := c.Runbooks(ctx)
	if err != nil {
		return err
	}
	if r.output.json() {
		return r.printBody(w, map[string]any{"runbooks": nonNil(list)})
	}
	if len(list) == 0 {
		fmt.Fprintf(w, "The server at %s has no runbooks loaded.\n", c.Addr())
		return nil
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "NAME\tMODE\tSTEPS\tAPPROVAL\tTOIL\tOWNER\tTRIGGER")
	for _, rb := range list {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%gm\t%s\t%s\n", rb.Name, firstOf(rb.Mode, runbooks.ModeEnforce), len(rb.Steps), yesNo(rb.Approval), rb.ToilMinutes, orDash(rb.Owner), trigger(rb.Matchers))
	}
	return tw.Flush()
}

func trigger(matchers []string) string {
	if len(matchers) == 0 {
		return "(manual only)"
	}
	return strings.Join(matchers, ", ")
}

func (r *remoteRunbooks) show(ctx context.Context, w io.Writer, name string) error {
	c, err := r.client()
	if err != nil {
		return err
	}
	d, err := c.Runbook(ctx, name)
	if err != nil {
		return err
	}
	if r.output.json() {
		return r.printBody(w, d)
	}
	return printRunbookDetail(w, d, time.Now())
}

func printRunbookDetail(w io.Writer, d client.RunbookDetail, now time.Time) error {
	info, spec := d.Runbook, d.Spec
	tw := newTable(w)
	fmt.Fprintf(tw, "Name:\t%s\n", info.Name)
	if info.Description != "" {
		fmt.Fprintf(tw, "Description:\t%s\n", oneLine(info.Description, 200))
	}
	fmt.Fprintf(tw, "Owner:\t%s\n", orDash(info.Owner))
	src := orDash(info.Source)
	if info.Hash != "" {
		src += " (version " + shortHash(info.Hash) + ")"
	}
	fmt.Fprintf(tw, "Source:\t%s\n", src)
	fmt.Fprintf(tw, "Trigger:\t%s\n", trigger(info.Matchers))
	if info.ToilMinutes > 0 {
		fmt.Fprintf(tw, "Toil saved:\t%gm of manual work per run\n", info.ToilMinutes)
	}
	if spec != nil {
		if k := spec.Spec.Trigger.IncidentKey; k != "" {
			fmt.Fprintf(tw, "Incident key:\t%s\n", k)
		}
		if o := spec.Spec.Trigger.OnResolved; o != "" {
			fmt.Fprintf(tw, "On resolved:\t%s\n", o)
		}
		fmt.Fprintf(tw, "Mode:\t%s\n", firstOf(spec.Spec.Safety.Mode, runbooks.ModeEnforce))
		if a := spec.Spec.Safety.Approval; a != nil && a.Required {
			fmt.Fprintf(tw, "Approval:\tthe whole run, before its first step\n")
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	params := info.Params
	if len(params) == 0 && spec != nil {
		params = spec.Spec.Params
	}
	fmt.Fprintln(w, "\nParams:")
	if len(params) == 0 {
		fmt.Fprintln(w, "  none")
	} else {
		names := make([]string, 0, len(params))
		for n := range params {
			names = append(names, n)
		}
		slices.Sort(names)
		tw = newTable(w)
		fmt.Fprintln(tw, "  NAME\tTYPE\tREQUIRED\tDEFAULT\tFROM\tDESCRIPTION")
		for _, n := range names {
			p := params[n]
			typ := firstOf(p.Type, runbooks.ParamString)
			if len(p.Values) > 0 {
				typ += " (" + strings.Join(p.Values, "|") + ")"
			}
			from := "-"
			switch {
			case p.FromLabel != "":
				from = "label " + p.FromLabel
			case p.FromAnnotation != "":
				from = "annotation " + p.FromAnnotation
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", n, typ, yesNo(p.Required), orDash(p.Default), from, oneLine(p.Description, 60))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}

	fmt.Fprintln(w, "\nSteps:")
	if spec != nil {
		printSpecSteps(w, spec.Spec.Steps)
		if len(spec.Spec.OnFailure) > 0 {
			fmt.Fprintln(w, "\nOn failure:")
			printSpecSteps(w, spec.Spec.OnFailure)
		}
	} else {
		for i, s := range info.Steps {
			fmt.Fprintf(w, "  %d. %s\n", i+1, s)
		}
	}

	fmt.Fprintln(w, "\nRecent runs:")
	if d.StatsError != "" {
		fmt.Fprintf(w, "  %s\n", d.StatsError)
		return nil
	}
	if len(d.RecentRuns) == 0 {
		fmt.Fprintln(w, "  none")
	} else {
		tw = newTable(w)
		fmt.Fprintln(tw, "  RUN\tSTATUS\tSTARTED\tDURATION")
		for _, s := range d.RecentRuns {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", s.WorkflowID, orDash(s.Status), fmtTime(s.StartTime), runDuration(s, now))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}

	st := d.Stats
	fmt.Fprintln(w)
	if st.SuccessRate == nil {
		fmt.Fprintf(w, "Success rate: - (no closed runs among the last %d; %d running)\n", st.Runs, st.Running)
	} else {
		fmt.Fprintf(w, "Success rate: %.0f%% (%d succeeded, %d failed of the last %d runs; %d running)\n",
			*st.SuccessRate*100, st.Succeeded, st.Failed, st.Runs, st.Running)
	}
	return nil
}

func printSpecSteps(w io.Writer, steps []runbooks.Step) {
	for i, s := range steps {
		var extra []string
		if s.Approval != nil && s.Approval.Required {
			extra = append(extra, "needs approval")
		}
		if s.When != "" {
			extra = append(extra, "when "+s.When)
		}
		if s.ContinueOnError {
			extra = append(extra, "continues on error")
		}
		line := fmt.Sprintf("  %d. %s (%s)", i+1, s.Name, s.Action)
		if len(extra) > 0 {
			line += ": " + strings.Join(extra, "; ")
		}
		fmt.Fprintln(w, line)
	}
}
