package backtest

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteText prints a result as a table for people.
func WriteText(w io.Writer, r *Result) error {
	fmt.Fprintf(w, "Backtest of %d runbook(s) over %d alert state(s)", len(r.Runbooks), r.AlertStates)
	if r.AlertStates > 0 {
		fmt.Fprintf(w, ", %s to %s", r.From.Format(time.RFC3339), r.To.Format(time.RFC3339))
	}
	fmt.Fprintf(w, "; %d matched no runbook; at most %d run(s) at once.\n", r.NoMatch, r.PeakConcurrent)
	fmt.Fprintf(w, "%s Run duration: %s.\n\n", r.Note, time.Duration(r.RunDurationSeconds*float64(time.Second)))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RUNBOOK\tSTARTED\tJOINED\tSUPPRESSED\tBY CHECK\tINCIDENTS\tTARGETS\tPEAK CONCURRENT")
	for _, rr := range r.Runbooks {
		started := fmt.Sprint(rr.Started)
		var extra []string
		if rr.StartedDryRun > 0 {
			extra = append(extra, fmt.Sprintf("%d dry-run", rr.StartedDryRun))
		}
		if rr.StartedNeedingApproval > 0 {
			extra = append(extra, fmt.Sprintf("%d need approval", rr.StartedNeedingApproval))
		}
		if len(extra) > 0 {
			started += " (" + strings.Join(extra, ", ") + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%d\t%d\t%d\n", rr.Runbook, started, rr.Joined, rr.Suppressed,
			ByCheck(rr.SuppressedBy, false), rr.Incidents, rr.Targets, rr.PeakConcurrent)
		if rr.Failed > 0 {
			fmt.Fprintf(tw, "  %d alert state(s) failed: the runbook cannot handle them (see salve runbook validate / test)\t\t\t\t\t\t\t\n", rr.Failed)
		}
	}
	return tw.Flush()
}

// WriteDiffText prints a comparison as a table for people.
func WriteDiffText(w io.Writer, d Diff) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RUNBOOK\tCHANGE\tSTARTED\tSUPPRESSED\tSUPPRESSED BY CHECK")
	for _, rd := range d.Runbooks {
		change := map[string]string{SideBoth: "changed", SideNew: "new", SideRemoved: "removed"}[rd.Side]
		if rd.Side == SideBoth && rd.StartedDelta == 0 && rd.SuppressedDelta == 0 && len(rd.SuppressedBy) == 0 {
			change = "same"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d -> %d (%+d)\t%d -> %d (%+d)\t%s\n", rd.Runbook, change,
			rd.StartedBefore, rd.Started, rd.StartedDelta, rd.Suppressed-rd.SuppressedDelta, rd.Suppressed, rd.SuppressedDelta,
			ByCheck(rd.SuppressedBy, true))
	}
	return tw.Flush()
}

// ByCheck says counts by safety check, by name: "cooldown 3,
// max_runs_per_hour 1" (signed: "+3", "-1", for differences); "-" for none.
func ByCheck(m map[string]int, signed bool) string {
	if len(m) == 0 {
		return "-"
	}
	var parts []string
	for _, c := range slices.Sorted(maps.Keys(m)) {
		if signed {
			parts = append(parts, fmt.Sprintf("%s %+d", c, m[c]))
		} else {
			parts = append(parts, fmt.Sprintf("%s %d", c, m[c]))
		}
	}
	return strings.Join(parts, ", ")
}
