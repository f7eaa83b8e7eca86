package dashboard

import (
	"encoding/json"
	"fmt"
	"html/template"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// pageNames are the page templates; each defines "content" inside the
// layout of templates/layout.html.
var pageNames = []string{"login", "error", "overview", "runs", "run", "approvals", "runbooks", "runbook", "audit", "incident", "backtest", "slos", "slo"}

func (d *dashboard) parseTemplates() error {
	funcs := template.FuncMap{
		"runURL":      runURL,
		"runbookURL":  func(name string) string { return "/ui/runbooks/" + url.PathEscape(name) },
		"incidentURL": func(key string) string { return "/ui/incidents/" + url.PathEscape(key) },
		"auditRunURL": func(id string) string { return "/ui/audit?since=&workflowId=" + url.QueryEscape(id) },
		"time":        fmtTime,
		"isoTime":     func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"ago":         func(t time.Time) string { return ago(t, d.now()) },
		"until":       func(t time.Time) string { return until(t, d.now()) },
		"dur":         humanDuration,
		"secs":        secs,
		"secsOf":      func(s float64) string { return humanDuration(time.Duration(s * float64(time.Second))) },
		"pct":         pct,
		"hours":       hours,
		"statusClass": statusClass,
		"json":        prettyJSON,
		"join":        strings.Join,
		"short":       short,
		"barWidth": func(v, maxV float64) float64 {
			if maxV <= 0 {
				return 0
			}
			return round1(v / maxV * 120)
		},
		"inc": func(n int) int { return n + 1 },
		// SLO figures (slos.go).
		"sloURL":        sloURL,
		"share":         share,
		"shareOf":       shareOf,
		"num":           num,
		"numOf":         numOf,
		"percentTarget": percentTarget,
	}
	d.pages = map[string]*template.Template{}
	for _, name := range pageNames {
		t, err := template.New(name).Funcs(funcs).ParseFS(files, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return fmt.Errorf("dashboard template %s: %w", name, err)
		}
		d.pages[name] = t
	}
	return nil
}

// runURL is a run's dashboard page; the workflow ID is one escaped path
// segment, like in the API.
func runURL(workflowID, runID string) string {
	u := "/ui/runs/" + url.PathEscape(workflowID)
	if runID != "" {
		u += "?runId=" + url.QueryEscape(runID)
	}
	return u
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

func ago(t, now time.Time) string {
	if t.IsZero() {
		return ""
	}
	d := now.Sub(t)
	if d < 0 {
		return "in " + humanDuration(-d)
	}
	return humanDuration(d) + " ago"
}

func until(t, now time.Time) string {
	if t.IsZero() {
		return ""
	}
	d := t.Sub(now)
	if d < 0 {
		return humanDuration(-d) + " ago"
	}
	return "in " + humanDuration(d)
}

// humanDuration is a duration as people read it: 850ms, 12s, 4m 12s,
// 3h 05m, 2d 3h.
func humanDuration(d time.Duration) string {
	if d < 0 {
		d = -d
	}
	switch {
	case d < time.Second:
		return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
	case d < 10*time.Second:
		return strconv.FormatFloat(math.Floor(d.Seconds()*10)/10, 'f', -1, 64) + "s"
	case d < time.Minute:
		return strconv.Itoa(int(d.Seconds())) + "s"
	case d < time.Hour:
		return fmt.Sprintf("%dm %02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh %02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd %dh", int(d.Hours())/24, int(d.Hours())%24)
}

func secs(s *float64) string {
	if s == nil {
		return "n/a"
	}
	return humanDuration(time.Duration(*s * float64(time.Second)))
}

func pct(f *float64) string {
	if f == nil {
		return "n/a"
	}
	return trimNum(*f*100, 1) + "%"
}

// hours is a number of seconds in hours, exactly as far as two decimals
// go: 1800 is "0.5", 5400 is "1.5", 36000 is "10".
func hours(seconds float64) string {
	h := seconds / 3600
	switch {
	case h >= 100:
		return trimNum(h, 0)
	case h >= 10:
		return trimNum(h, 1)
	}
	return trimNum(h, 2)
}

// trimNum formats f with at most prec decimals and no trailing zeros.
func trimNum(f float64, prec int) string {
	s := strconv.FormatFloat(f, 'f', prec, 64)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	if s == "-0" {
		s = "0"
	}
	return s
}

func statusClass(status string) string {
	switch status {
	case "succeeded", "approved", "issued", "revoked", "ok":
		return "st st-ok"
	case "running", "waiting_approval", "cancel_requested":
		return "st st-running"
	case "failed", "timed_out", "terminated", "rejected", "revoke_failed":
		return "st st-failed"
	case "cancelled", "skipped":
		return "st st-muted"
	}
	return "st"
}

// prettyJSON is v as indented JSON. It is not HTML-escaped here: the
// template escapes it for where it goes.
func prettyJSON(v any) string {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Sprint(v)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// short abbreviates a long ID for a table cell; the full one is in the
// title attribute.
func short(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "…"
}

func round1(f float64) float64 { return math.Round(f*10) / 10 }
