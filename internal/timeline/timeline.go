// Package timeline turns an incident's audit records into one chronological
// story — alert fired, runbook matched, steps ran, alert resolved — as the
// starting point of a blameless postmortem.
package timeline

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/salve-sre/salve/internal/audit"
	"github.com/salve-sre/salve/internal/domain"
)

// Entry is one line of the timeline.
type Entry struct {
	Time    time.Time `json:"time"`
	Seq     int64     `json:"seq"` // audit sequence number, to cite
	Kind    string    `json:"kind"`
	Text    string    `json:"text"`
	Run     string    `json:"run,omitempty"`
	Outcome string    `json:"outcome,omitempty"`
	Error   string    `json:"error,omitempty"`
}

// Timeline is an incident's story.
type Timeline struct {
	Incident string   `json:"incident"`
	Runbooks []string `json:"runbooks"`
	Runs     []string `json:"runs"`
	Entries  []Entry  `json:"entries"`
}

// Build makes the timeline of an incident from its audit records (those
// carrying its incident key or run) and the alert.accepted records of the
// alerts that took part. Records of other alerts are ignored.
func Build(incident string, incidentRecords, alertRecords []audit.Record) Timeline {
	tl := Timeline{Incident: incident}
	fingerprints := map[string]bool{}
	runbooks, runs := map[string]bool{}, map[string]bool{}
	for _, r := range incidentRecords {
		ev := r.Event
		if id := ev.Detail["alertId"]; id != "" {
			fingerprints[strings.SplitN(id, "|", 2)[0]] = true
		}
		if ev.Runbook != "" && !runbooks[ev.Runbook] {
			runbooks[ev.Runbook] = true
			tl.Runbooks = append(tl.Runbooks, ev.Runbook)
		}
		if ev.WorkflowID != "" && !runs[ev.WorkflowID] {
			runs[ev.WorkflowID] = true
			tl.Runs = append(tl.Runs, ev.WorkflowID)
		}
		if e, ok := entry(r); ok {
			tl.Entries = append(tl.Entries, e)
		}
	}
	for _, r := range alertRecords {
		if r.Event.Action != domain.ActionAlertAccepted || !fingerprints[r.Event.Detail["fingerprint"]] {
			continue
		}
		if e, ok := entry(r); ok {
			tl.Entries = append(tl.Entries, e)
		}
	}
	sort.Strings(tl.Runbooks)
	sort.Strings(tl.Runs)
	sort.SliceStable(tl.Entries, func(i, j int) bool {
		if !tl.Entries[i].Time.Equal(tl.Entries[j].Time) {
			return tl.Entries[i].Time.Before(tl.Entries[j].Time)
		}
		return tl.Entries[i].Seq < tl.Entries[j].Seq
	})
	return tl
}

func entry(r audit.Record) (Entry, bool) {
	ev := r.Event
	e := Entry{Time: ev.Time.UTC(), Seq: r.Seq, Run: ev.WorkflowID, Outcome: ev.Outcome, Error: ev.Error}
	d := ev.Detail
	switch ev.Action {
	case domain.ActionAlertAccepted:
		e.Kind = "alert"
		// The alert's own clock says when it fired or resolved; Salve's
		// receipt time is when we learned of it.
		if t, err := time.Parse(time.RFC3339Nano, d["startsAt"]); err == nil && ev.Outcome == domain.StatusFiring {
			e.Text = fmt.Sprintf("alert %s fired (received by Salve at %s)", d["alertname"], ev.Time.UTC().Format(time.TimeOnly))
			e.Time = t.UTC()
		} else if t, err := time.Parse(time.RFC3339Nano, d["endsAt"]); err == nil && ev.Outcome == domain.StatusResolved {
			e.Text = fmt.Sprintf("alert %s resolved (received by Salve at %s)", d["alertname"], ev.Time.UTC().Format(time.TimeOnly))
			e.Time = t.UTC()
		} else {
			e.Text = fmt.Sprintf("alert %s %s received", d["alertname"], ev.Outcome)
		}
	case domain.ActionTriggerMatched:
		e.Kind, e.Text = "trigger", fmt.Sprintf("runbook %s matched; run started", ev.Runbook)
	case domain.ActionRunJoined:
		e.Kind, e.Text = "trigger", fmt.Sprintf("repeat alert joined the running run of %s", ev.Runbook)
	case domain.ActionRunSignalled:
		e.Kind, e.Text = "trigger", fmt.Sprintf("resolved alert delivered to %s (%s)", ev.Runbook, ev.Outcome)
	case domain.ActionTriggerSuppressed:
		e.Kind, e.Text = "trigger", fmt.Sprintf("runbook %s suppressed: %s", ev.Runbook, ev.Outcome)
	case domain.ActionRunStarted:
		e.Kind, e.Text = "run", fmt.Sprintf("run of %s started by %s", ev.Runbook, actor(ev.Actor))
	case domain.ActionRunFinished:
		e.Kind, e.Text = "run", fmt.Sprintf("run of %s finished: %s", ev.Runbook, ev.Outcome)
	case domain.ActionStepStarted:
		e.Kind, e.Text = "step", fmt.Sprintf("step %s (%s) started, attempt %s", ev.Step, d["kind"], d["attempt"])
	case domain.ActionStepSucceeded:
		e.Kind, e.Text = "step", fmt.Sprintf("step %s succeeded", ev.Step)
	case domain.ActionStepFailed:
		e.Kind, e.Text = "step", fmt.Sprintf("step %s failed, attempt %s", ev.Step, d["attempt"])
	case domain.ActionStepSkipped:
		e.Kind, e.Text = "step", fmt.Sprintf("step %s skipped (when was false)", ev.Step)
	default:
		if ev.Action == "" {
			return Entry{}, false
		}
		e.Kind, e.Text = strings.SplitN(ev.Action, ".", 2)[0], ev.Action
	}
	return e, true
}

func actor(a domain.Actor) string {
	if a.Name == "" {
		return a.Kind
	}
	return a.Kind + " " + a.Name
}

// JSON writes the timeline as indented JSON.
func (tl Timeline) JSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(tl)
}

// Markdown writes the timeline as a postmortem-ready Markdown section.
func (tl Timeline) Markdown(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# Incident timeline: %s\n\n", mdEscape(tl.Incident))
	fmt.Fprintf(&b, "- Runbooks: %s\n", mdEscape(listOrNone(tl.Runbooks)))
	fmt.Fprintf(&b, "- Runs: %s\n", mdEscape(listOrNone(tl.Runs)))
	if len(tl.Entries) > 0 {
		first, last := tl.Entries[0].Time, tl.Entries[len(tl.Entries)-1].Time
		fmt.Fprintf(&b, "- From %s to %s (%s)\n", first.Format(time.RFC3339), last.Format(time.RFC3339), last.Sub(first).Round(time.Second))
	}
	b.WriteString("\n| time (UTC) | since start | what happened | audit # |\n|---|---|---|---|\n")
	for _, e := range tl.Entries {
		text := e.Text
		if e.Error != "" {
			text += ": " + e.Error
		}
		fmt.Fprintf(&b, "| %s | +%s | %s | %d |\n", e.Time.Format("2006-01-02 15:04:05"), e.Time.Sub(tl.Entries[0].Time).Round(time.Second),
			mdEscape(text), e.Seq)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// mdEscape makes untrusted text (alert names, incident keys, errors) one
// line of literal Markdown: line breaks become spaces, so no text can end
// the table row or start a heading, and the characters that make
// emphasis, code, links, images, HTML or a table cell are backslash-
// escaped (the rest of the punctuation stays readable).
func mdEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\r' || r == '\n' || r == '\u2028' || r == '\u2029':
			b.WriteByte(' ')
		case strings.ContainsRune("\\`*_[]<>|~", r):
			b.WriteByte('\\')
			b.WriteRune(r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "(none)"
	}
	return strings.Join(s, ", ")
}
