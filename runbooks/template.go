package runbooks

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"text/template"

	"github.com/salve-sre/salve/internal/domain"
)

// TemplateData is what templates in a runbook can read:
// {{ .Labels.namespace }}, {{ .Params.url }}, {{ .Steps.check.Output.status }}.
type TemplateData struct {
	Alert       domain.AlertEvent   // zero for manual launches
	Labels      map[string]string   // the triggering alert's labels
	Annotations map[string]string   // the triggering alert's annotations
	Params      map[string]string   // resolved runbook parameters
	Steps       map[string]StepData // outcomes of the steps run so far
	Run         RunData
}

// StepData is one earlier step's outcome, as templates see it.
type StepData struct {
	Status string
	Output map[string]any
}

// RunData identifies the run.
type RunData struct {
	Runbook     string
	WorkflowID  string
	IncidentKey string
}

// funcs is the documented template function set. Every function is pure,
// so rendering inside the workflow is deterministic.
var funcs = template.FuncMap{
	"default": func(def string, v any) string {
		if s := fmt.Sprint(v); v != nil && s != "" {
			return s
		}
		return def
	},
	"lower":   strings.ToLower,
	"upper":   strings.ToUpper,
	"trim":    strings.TrimSpace,
	"replace": func(old, new, s string) string { return strings.ReplaceAll(s, old, new) },
	"quote":   func(s string) string { b, _ := json.Marshal(s); return string(b) },
	"host":    hostOf,
	// Escaping for untrusted values (taint.go): each keeps a value inside
	// its place in a URL path, a URL query or a PromQL string.
	fnPathEscape:  func(v any) string { return url.PathEscape(str(v)) },
	fnQueryEscape: func(v any) string { return url.QueryEscape(str(v)) },
	fnPromQuote:   func(v any) string { return promQuote(str(v)) },
	"regexQuote":  func(v any) string { return regexp.QuoteMeta(str(v)) },
	"toJSON": func(v any) (string, error) {
		b, err := json.Marshal(v)
		return string(b), err
	},
}

// str is how a template prints v: a step output may be a number.
func str(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	default:
		return fmt.Sprint(x)
	}
}

// hostOf drops the port from an Alertmanager instance label such as
// "node-1:9100" or "[::1]:9100".
func hostOf(hostport string) string {
	if strings.HasPrefix(hostport, "[") {
		if i := strings.Index(hostport, "]"); i > 0 {
			return hostport[1:i]
		}
	}
	if i := strings.LastIndex(hostport, ":"); i >= 0 && strings.Count(hostport, ":") == 1 {
		return hostport[:i]
	}
	return hostport
}

func parseTemplate(text string) (*template.Template, error) {
	return template.New("").Funcs(funcs).Option("missingkey=error").Parse(text)
}

// RenderLenient is Render for dry-run plans: a missing key (an output of a
// step that did not act) renders as "<no value>" instead of failing.
func RenderLenient(with map[string]any, data TemplateData) (map[string]any, error) {
	out, err := renderWith(with, data, "missingkey=zero")
	if err != nil {
		return nil, err
	}
	m, _ := out.(map[string]any)
	return m, nil
}

func checkTemplate(text string) error {
	if !strings.Contains(text, "{{") {
		return nil
	}
	if _, err := parseTemplate(text); err != nil {
		return fmt.Errorf("bad template %q: %v", text, strings.TrimPrefix(err.Error(), "template: :"))
	}
	return nil
}

// RenderString renders one template string. Strings without "{{" are
// returned as they are.
func RenderString(text string, data TemplateData) (string, error) {
	return renderString(text, data, "missingkey=error")
}

func renderString(text string, data TemplateData, missing string) (string, error) {
	if !strings.Contains(text, "{{") {
		return text, nil
	}
	t, err := template.New("").Funcs(funcs).Option(missing).Parse(text)
	if err != nil {
		return "", fmt.Errorf("template %q: %w", text, err)
	}
	var b strings.Builder
	if err := t.Execute(&b, data); err != nil {
		return "", fmt.Errorf("template %q: %w", text, err)
	}
	return b.String(), nil
}

// Render renders every string inside a step's `with` parameters. Keys are
// visited in sorted order so the first error reported is always the same.
func Render(with map[string]any, data TemplateData) (map[string]any, error) {
	out, err := renderWith(with, data, "missingkey=error")
	if err != nil {
		return nil, err
	}
	m, _ := out.(map[string]any)
	return m, nil
}

func renderWith(v any, data TemplateData, missing string) (any, error) {
	switch x := v.(type) {
	case string:
		return renderString(x, data, missing)
	case map[string]any:
		if x == nil {
			return map[string]any(nil), nil
		}
		out := make(map[string]any, len(x))
		for _, k := range slices.Sorted(maps.Keys(x)) {
			r, err := renderWith(x[k], data, missing)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			out[k] = r
		}
		return out, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			r, err := renderWith(e, data, missing)
			if err != nil {
				return nil, fmt.Errorf("[%d]: %w", i, err)
			}
			out[i] = r
		}
		return out, nil
	default:
		return v, nil
	}
}

// EvalWhen evaluates a step's `when` guard. An empty guard is true; the
// rendered text must be "true" or "false" so a typo cannot silently skip a
// step.
func EvalWhen(when string, data TemplateData) (bool, error) {
	if strings.TrimSpace(when) == "" {
		return true, nil
	}
	s, err := RenderString(when, data)
	if err != nil {
		return false, err
	}
	switch strings.TrimSpace(s) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, fmt.Errorf("when %q rendered %q; it must render true or false", when, s)
}

// IncidentKey derives the incident key of an alert for this runbook.
func (r *Runbook) IncidentKey(a domain.AlertEvent) (string, error) {
	tmpl := r.Spec.Trigger.IncidentKey
	if tmpl == "" {
		if a.Fingerprint == "" {
			return "", errors.New("alert has no fingerprint to use as incident key")
		}
		return a.Fingerprint, nil
	}
	key, err := RenderString(tmpl, TemplateData{Alert: a, Labels: a.Labels, Annotations: a.Annotations})
	if err != nil {
		return "", fmt.Errorf("incident key of runbook %q: %w", r.Name(), err)
	}
	if strings.TrimSpace(key) == "" {
		return "", fmt.Errorf("incident key of runbook %q rendered empty for alert %s", r.Name(), domain.LabelString(a.Labels))
	}
	return key, nil
}

// ErrParams is wrapped by parameter resolution errors.
var ErrParams = errors.New("bad runbook parameters")

// ResolveParams fills the runbook's parameters from launch params, then the
// alert's labels or annotations, then defaults. Every problem is reported
// at once; unknown launch params are errors so a typo is not ignored.
func (r *Runbook) ResolveParams(alert *domain.AlertEvent, launch map[string]string) (map[string]string, error) {
	out := make(map[string]string, len(r.Spec.Params))
	var problems []string
	// Keys are sorted before use: deterministic in workflows.
	//workflowcheck:ignore
	for _, name := range slices.Sorted(maps.Keys(launch)) {
		if _, ok := r.Spec.Params[name]; !ok {
			problems = append(problems, fmt.Sprintf("unknown parameter %q", name))
		}
	}
	//workflowcheck:ignore
	for _, name := range slices.Sorted(maps.Keys(r.Spec.Params)) {
		// An empty value counts as absent, so a blank label or annotation
		// falls through to the default.
		p := r.Spec.Params[name]
		v := launch[name]
		if v == "" && alert != nil && p.FromLabel != "" {
			v = alert.Labels[p.FromLabel]
		}
		if v == "" && alert != nil && p.FromAnnotation != "" {
			v = alert.Annotations[p.FromAnnotation]
		}
		if v == "" {
			v = p.Default
		}
		if v == "" && p.Required {
			problems = append(problems, fmt.Sprintf("missing required parameter %q%s", name, paramSource(p)))
			continue
		}
		if v != "" {
			if err := p.Check(v); err != nil {
				problems = append(problems, fmt.Sprintf("parameter %q: %v", name, err))
				continue
			}
		}
		// Optional parameters without a value are present as "", so
		// templates can write {{ .Params.x | default "y" }}.
		out[name] = v
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%w: %s", ErrParams, strings.Join(problems, "; "))
	}
	return out, nil
}

func paramSource(p Param) string {
	switch {
	case p.FromLabel != "":
		return fmt.Sprintf(" (from alert label %q or a launch param)", p.FromLabel)
	case p.FromAnnotation != "":
		return fmt.Sprintf(" (from alert annotation %q or a launch param)", p.FromAnnotation)
	}
	return " (pass it as a launch param)"
}

// Target renders the runbook's safety.target for an alert: what a run for
// it would act on ("" when the runbook names no target).
func (r *Runbook) Target(alert *domain.AlertEvent, launch map[string]string) (string, error) {
	tmpl := r.Spec.Safety.Target
	if tmpl == "" {
		return "", nil
	}
	params, err := r.ResolveParams(alert, launch)
	if err != nil {
		return "", err
	}
	data := TemplateData{Params: params}
	if alert != nil {
		data.Alert, data.Labels, data.Annotations = *alert, alert.Labels, alert.Annotations
	}
	t, err := RenderString(tmpl, data)
	if err != nil {
		return "", fmt.Errorf("safety.target of runbook %q: %w", r.Name(), err)
	}
	if strings.TrimSpace(t) == "" {
		return "", fmt.Errorf("safety.target of runbook %q rendered empty", r.Name())
	}
	return t, nil
}
