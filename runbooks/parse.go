package runbooks

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/prometheus/alertmanager/pkg/labels"
	"gopkg.in/yaml.v3"

	"github.com/salve-sre/salve/activities/step"
)

// ErrInvalid is wrapped by every error that says a runbook is not valid.
var ErrInvalid = errors.New("invalid runbook")

// StepCatalog is what validation needs to know about step kinds;
// *step.Registry implements it.
type StepCatalog interface {
	Lookup(kind string) (step.Spec, bool)
	Kinds() []string
}

// Problem is one thing wrong with a runbook, located in its file.
type Problem struct {
	Source string
	Line   int
	Col    int    // 0 when only the line is known (YAML type errors)
	Path   string // e.g. spec.steps[1].action
	Msg    string
}

func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.Source)
	if p.Line > 0 {
		b.WriteString(":" + strconv.Itoa(p.Line))
		if p.Col > 0 {
			b.WriteString(":" + strconv.Itoa(p.Col))
		}
	}
	b.WriteString(": ")
	if p.Path != "" {
		b.WriteString(p.Path + ": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// ValidationError lists every problem found in one file, not just the first.
type ValidationError struct {
	Problems []Problem
}

func (e *ValidationError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

var (
	dnsLabel      = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	yamlLineError = regexp.MustCompile(`^line (\d+): (.*)$`)
)

// Parse decodes and validates one runbook file strictly: unknown fields,
// wrong types, unknown step kinds and bad step parameters are all errors,
// reported together with file and line.
func Parse(source string, data []byte, cat StepCatalog) (*Runbook, error) {
	empty := &ValidationError{Problems: []Problem{{Source: source, Msg: "empty file: a runbook starts with apiVersion: salve/v1"}}}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, empty
	}
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); errors.Is(err, io.EOF) { // only comments
		return nil, empty
	} else if err != nil {
		return nil, &ValidationError{Problems: YAMLProblems(source, err)}
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, &ValidationError{Problems: YAMLProblems(source, err)}
	case extra.Kind != 0 && !(extra.Kind == yaml.DocumentNode && len(extra.Content) == 0):
		return nil, &ValidationError{Problems: []Problem{{Source: source, Line: extra.Line, Msg: "more than one YAML document: put one runbook per file"}}}
	}

	// Strict decoding finds unknown fields and wrong types. yaml.v3 keeps
	// decoding past type errors, so the semantic checks below still run on
	// what did decode, and every problem in the file is reported at once.
	var rb Runbook
	var problems []Problem
	sdec := yaml.NewDecoder(bytes.NewReader(data))
	sdec.KnownFields(true)
	if err := sdec.Decode(&rb); err != nil {
		problems = YAMLProblems(source, err)
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return nil, &ValidationError{Problems: problems}
		}
	}
	sum := sha256.Sum256(data)
	rb.Source = source
	rb.Hash = hex.EncodeToString(sum[:])

	v := validator{source: source, root: &root}
	v.runbook(&rb, cat)
	typeLines := map[int]bool{}
	for _, p := range problems {
		typeLines[p.Line] = true
	}
	for _, p := range v.problems {
		if !typeLines[p.Line] { // a follow-on of a type error on that line
			problems = append(problems, p)
		}
	}
	if len(problems) > 0 {
		sort.SliceStable(problems, func(i, j int) bool { return problems[i].Line < problems[j].Line })
		return nil, &ValidationError{Problems: problems}
	}
	return &rb, nil
}

// YAMLProblems turns a yaml.v3 decoding error into located problems: one
// per type error, with its line.
func YAMLProblems(source string, err error) []Problem {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		out := make([]Problem, 0, len(te.Errors))
		for _, msg := range te.Errors {
			out = append(out, lineProblem(source, msg))
		}
		return out
	}
	return []Problem{lineProblem(source, strings.TrimPrefix(err.Error(), "yaml: "))}
}

func lineProblem(source, msg string) Problem {
	if m := yamlLineError.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return Problem{Source: source, Line: line, Msg: friendlyYAML(m[2])}
	}
	return Problem{Source: source, Msg: friendlyYAML(msg)}
}

var unknownField = regexp.MustCompile(`^field (\S+) not found in type runbooks\.(\w+)$`)

// friendlyYAML rewrites yaml.v3's unknown-field message, which names Go
// types, into one that names the YAML fields and suggests the near miss.
func friendlyYAML(msg string) string {
	m := unknownField.FindStringSubmatch(msg)
	if m == nil {
		return msg
	}
	known := yamlFields[m[2]]
	out := fmt.Sprintf("unknown field %q", m[1])
	if near := Closest(m[1], known); near != "" {
		out += fmt.Sprintf(" (did you mean %q?)", near)
	}
	if len(known) > 0 {
		out += " (known here: " + strings.Join(known, ", ") + ")"
	}
	return out
}

// yamlFields maps each runbook Go type to the YAML field names it accepts.
var yamlFields = func() map[string][]string {
	out := map[string][]string{}
	for _, v := range []any{Runbook{}, Metadata{}, Spec{}, Trigger{}, Param{}, Toil{}, Safety{}, TargetLock{}, BlastRadius{}, Access{}, CircuitBreaker{}, Approval{}, Step{}, Retry{}, Credential{}} {
		t := reflect.TypeOf(v)
		var names []string
		for i := range t.NumField() {
			tag := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]
			if tag != "" && tag != "-" {
				names = append(names, tag)
			}
		}
		out[t.Name()] = names
	}
	return out
}()

type validator struct {
	source   string
	root     *yaml.Node
	problems []Problem
	params   map[string]Param // the runbook's, for the untrusted-input rules
}

// add records a problem at a path such as "spec.steps[1].action".
func (v *validator) add(path, format string, args ...any) {
	line, col := LineOf(v.root, path)
	v.problems = append(v.problems, Problem{Source: v.source, Line: line, Col: col, Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) runbook(rb *Runbook, cat StepCatalog) {
	v.params = rb.Spec.Params
	if rb.APIVersion != APIVersion {
		v.add("apiVersion", "must be %q, got %q", APIVersion, rb.APIVersion)
	}
	if rb.Kind != Kind {
		v.add("kind", "must be %q, got %q", Kind, rb.Kind)
	}
	if !dnsLabel.MatchString(rb.Metadata.Name) || len(rb.Metadata.Name) > 63 {
		v.add("metadata.name", "must be a DNS label (lowercase letters, digits and '-', at most 63), got %q", rb.Metadata.Name)
	}
	if p := rb.Spec.SLO; p != nil {
		if !dnsLabel.MatchString(p.Name) {
			v.add("spec.slo.name", "%q: the metadata.name of a kind: SLO file next to the runbooks", p.Name)
		}
		for _, f := range [][2]string{{"onFastBurn", p.OnFastBurn}, {"onSlowBurn", p.OnSlowBurn}, {"otherwise", p.Otherwise}, {"onUnknown", p.OnUnknown}} {
			if a := f[1]; a != "" && a != SLOAct && a != SLOApprove && a != SLONotify {
				v.add("spec.slo."+f[0], "%q: want act, approve or notify", a)
			}
		}
	}
	for i, s := range rb.Spec.Trigger.Matchers {
		m, err := labels.ParseMatcher(s)
		if err != nil {
			v.add(fmt.Sprintf("spec.trigger.matchers[%d]", i), "bad matcher %q: %v (write e.g. alertname=\"HighLatency\" or severity=~\"warning|critical\")", s, err)
			continue
		}
		rb.matchers = append(rb.matchers, m)
	}
	if k := rb.Spec.Trigger.IncidentKey; k != "" {
		if err := checkTemplate(k); err != nil {
			v.add("spec.trigger.incidentKey", "%v", err)
		}
		for _, p := range checkRefs(k, scope{roots: incidentRoots}) {
			v.add("spec.trigger.incidentKey", "%s", p)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(rb.Spec.Params)) {
		p := rb.Spec.Params[name]
		path := "spec.params." + name
		if !paramName.MatchString(name) {
			v.add(path, "parameter names are letters, digits and '_' starting with a letter, got %q", name)
		}
		if p.FromLabel != "" && p.FromAnnotation != "" {
			v.add(path, "set fromLabel or fromAnnotation, not both")
		}
		if p.Required && p.Default != "" {
			v.add(path, "a required parameter cannot have a default")
		}
		v.param(path, p)
	}
	v.oneOf("spec.trigger.onResolved", rb.Spec.Trigger.OnResolved, OnResolvedIgnore, OnResolvedFinish, OnResolvedCancel)
	v.safety("spec.safety", rb.Spec.Safety)
	v.access("spec.access", rb.Spec.Access)
	sources := credentialSources(cat)
	for _, name := range slices.Sorted(maps.Keys(rb.Spec.Credentials)) {
		c := rb.Spec.Credentials[name]
		path := "spec.credentials." + name
		if !contains(sources, name) {
			msg := fmt.Sprintf("no step kind uses a credential named %q (known: %s)", name, strings.Join(sources, ", "))
			if near := Closest(name, sources); near != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", near)
			}
			v.add(path, "%s", msg)
		}
		if strings.TrimSpace(c.VaultRole) == "" {
			v.add(path+".vaultRole", "needs the Vault role to issue the credential with, e.g. 'salve-{{ .Params.namespace }}'")
		} else if err := checkTemplate(c.VaultRole); err != nil {
			v.add(path+".vaultRole", "%v", err)
		} else {
			for _, p := range checkRefs(c.VaultRole, scope{roots: []string{"Params", "Labels", "Annotations", "Alert", "Run"}, params: rb.Spec.Params}) {
				v.add(path+".vaultRole", "%s", p)
			}
			for _, p := range checkCredentialTemplate(c.VaultRole, rb.Spec.Params) {
				v.add(path+".vaultRole", "%s", p)
			}
		}
	}
	if rb.Spec.Toil.ManualMinutes < 0 {
		v.add("spec.toil.manualMinutes", "must not be negative")
	}
	if len(rb.Spec.Steps) == 0 {
		v.add("spec.steps", "a runbook needs at least one step")
	}
	seen := map[string]string{}
	sc := scope{roots: allRoots, params: rb.Spec.Params, steps: map[string]bool{}, all: map[string]bool{}}
	for _, s := range append(append([]Step{}, rb.Spec.Steps...), rb.Spec.OnFailure...) {
		sc.all[s.Name] = true
	}
	v.steps("spec.steps", rb.Spec.Steps, cat, seen, sc)
	v.steps("spec.onFailure", rb.Spec.OnFailure, cat, seen, sc)
}

// credentialSources lists the credentials the catalog's step kinds need.
func credentialSources(cat StepCatalog) []string {
	seen := map[string]bool{}
	var out []string
	for _, k := range cat.Kinds() {
		if s, ok := cat.Lookup(k); ok && s.Credential != "" && !seen[s.Credential] {
			seen[s.Credential] = true
			out = append(out, s.Credential)
		}
	}
	return out
}

// oneOf checks an optional enumerated field.
func (v *validator) oneOf(path, got string, allowed ...string) {
	if got == "" {
		return
	}
	for _, a := range allowed {
		if got == a {
			return
		}
	}
	msg := fmt.Sprintf("must be one of %s, got %q", strings.Join(allowed, ", "), got)
	if near := Closest(got, allowed); near != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", near)
	}
	v.add(path, "%s", msg)
}

func (v *validator) access(path string, a Access) {
	for _, l := range []struct {
		name string
		list []string
	}{{"launchers", a.Launchers}, {"approvers", a.Approvers}} {
		name := l.name
		for i, e := range l.list {
			g, isGroup := strings.CutPrefix(e, GroupPrefix)
			switch {
			case strings.TrimSpace(e) == "":
				v.add(fmt.Sprintf("%s.%s[%d]", path, name, i), "empty entry: give a token subject (alice) or a group (group:sre)")
			case isGroup && g == "":
				v.add(fmt.Sprintf("%s.%s[%d]", path, name, i), "group: needs a group name, e.g. group:sre")
			case e != strings.TrimSpace(e):
				v.add(fmt.Sprintf("%s.%s[%d]", path, name, i), "%q has surrounding spaces, which no subject or group has", e)
			}
		}
	}
}

func (v *validator) safety(path string, s Safety) {
	v.oneOf(path+".mode", s.Mode, ModeEnforce, ModeDryRun, ModeShadow)
	switch {
	case s.ShadowWindow < 0:
		v.add(path+".shadowWindow", "must not be negative")
	case s.ShadowWindow.D() > MaxShadowWindow:
		v.add(path+".shadowWindow", "at most %s: a shadow run holds its workflow open that long", MaxShadowWindow)
	case s.ShadowWindow > 0 && !s.Shadow():
		v.add(path+".shadowWindow", "applies only with mode: shadow")
	}
	if s.MaxRunsPerHour < 0 {
		v.add(path+".maxRunsPerHour", "must not be negative (0 means no limit)")
	}
	if s.MaxConcurrent < 0 {
		v.add(path+".maxConcurrent", "must not be negative (0 means no limit)")
	}
	if s.MaxRunsPerDay < 0 {
		v.add(path+".maxRunsPerDay", "must not be negative (0 means no limit)")
	}
	if s.Target != "" {
		if err := checkTemplate(s.Target); err != nil {
			v.add(path+".target", "%v", err)
		}
	}
	if l := s.TargetLock; l != nil {
		if s.Target == "" {
			v.add(path+".targetLock", "needs safety.target, the template naming what a run acts on")
		}
		v.oneOf(path+".targetLock.onBusy", l.OnBusy, TargetBusyWait, TargetBusySuppress)
		if l.MaxWait < 0 {
			v.add(path+".targetLock.maxWait", "must not be negative")
		}
	}
	if b := s.BlastRadius; b != nil {
		if s.Target == "" {
			v.add(path+".blastRadius", "needs safety.target, the template naming what a run acts on")
		}
		if b.MaxTargets < 1 {
			v.add(path+".blastRadius.maxTargets", "must be at least 1, e.g. maxTargets: 5")
		}
		if b.Window <= 0 {
			v.add(path+".blastRadius.window", "needs a window such as 1h")
		}
		v.oneOf(path+".blastRadius.onExceed", b.OnExceed, BlastRefuse, BlastApprove)
	}
	if cb := s.CircuitBreaker; cb != nil {
		if cb.Failures < 1 {
			v.add(path+".circuitBreaker.failures", "must be at least 1, e.g. failures: 3")
		}
		if cb.Window <= 0 {
			v.add(path+".circuitBreaker.window", "needs a window such as 1h")
		}
	}
	if s.Approval != nil {
		v.approval(path+".approval", *s.Approval)
	}
}

func (v *validator) approval(path string, a Approval) {
	v.oneOf(path+".onTimeout", a.OnTimeout, ApprovalTimeoutFail, ApprovalTimeoutGoOn)
	if !a.Required && (a.Timeout > 0 || a.OnTimeout != "") {
		v.add(path+".required", "timeout and onTimeout apply only when required: true")
	}
}

var paramName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]*$`)

func (v *validator) steps(base string, steps []Step, cat StepCatalog, seen map[string]string, sc scope) {
	for i, s := range steps {
		path := fmt.Sprintf("%s[%d]", base, i)
		switch {
		case s.Name == "":
			v.add(path+".name", "every step needs a name")
		case !paramName.MatchString(s.Name):
			v.add(path+".name", "step names are letters, digits and '_' starting with a letter (they are used as {{ .Steps.<name> }}), got %q", s.Name)
		case seen[s.Name] != "":
			v.add(path+".name", "duplicate step name %q (first at %s)", s.Name, seen[s.Name])
		default:
			seen[s.Name] = path
		}
		if w := strings.TrimSpace(s.When); w != "" {
			if !strings.Contains(w, "{{") && w != "true" && w != "false" {
				v.add(path+".when", "must be a template that renders true or false, e.g. '{{ eq .Params.env \"prod\" }}', got %q", s.When)
			} else if err := checkTemplate(s.When); err != nil {
				v.add(path+".when", "%v", err)
			}
			for _, p := range checkRefs(s.When, sc) {
				v.add(path+".when", "%s", p)
			}
		}
		if s.Approval != nil {
			v.approval(path+".approval", *s.Approval)
		}
		if s.Retry != nil && (s.Retry.MaxAttempts < 0 || s.Retry.MaxAttempts > MaxMaxAttempts) {
			v.add(path+".retry.maxAttempts", "must be from 0 (default %d) to %d", DefaultMaxAttempts, MaxMaxAttempts)
		}
		for _, k := range slices.Sorted(maps.Keys(s.With)) {
			if bad := nonStringKey(s.With[k]); bad != "" {
				v.add(path+".with."+k, "map keys must be strings, got %s", bad)
			}
			walkStrings(s.With[k], func(str string) {
				if err := checkTemplate(str); err != nil {
					v.add(path+".with."+k, "%v", err)
				}
				for _, p := range checkRefs(str, sc) {
					v.add(path+".with."+k, "%s", p)
				}
			})
		}
		v.action(path, s, cat)
		sc.steps[s.Name] = true
	}
}

func (v *validator) action(path string, s Step, cat StepCatalog) {
	if s.Action == ActionSleep {
		d, ok := s.With["duration"]
		if !ok || len(s.With) != 1 {
			v.add(path+".with", "sleep takes exactly one parameter, duration (e.g. duration: 5m)")
			return
		}
		if str, isStr := d.(string); !isStr || !strings.Contains(str, "{{") {
			if _, err := step.Duration(d); err != nil {
				v.add(path+".with.duration", "%v", err)
			}
		}
		return
	}
	if s.Action == "" {
		v.add(path+".action", "every step needs an action (one of: %s)", strings.Join(append(cat.Kinds(), ActionSleep), ", "))
		return
	}
	spec, ok := cat.Lookup(s.Action)
	if !ok {
		msg := fmt.Sprintf("unknown step kind %q", s.Action)
		if near := Closest(s.Action, append(cat.Kinds(), ActionSleep)); near != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", near)
		}
		v.add(path+".action", "%s", msg)
		return
	}
	_, secrets := s.With["secretHeaders"]
	for _, k := range slices.Sorted(maps.Keys(s.With)) {
		p, ok := spec.Params.Lookup(k)
		if !ok || p.Sink == "" {
			continue
		}
		walkStrings(s.With[k], func(str string) {
			for _, msg := range checkSink(p.Sink, str, v.params, secrets) {
				v.add(path+".with."+k, "untrusted input: %s", msg)
			}
		})
	}
	for _, err := range spec.Params.Validate(s.With) {
		v.add(path+".with", "%s", strings.TrimPrefix(err.Error(), step.ErrInvalidParams.Error()+": "))
	}
}

// nonStringKey finds a map with non-string keys (YAML `{1: 2}`), which
// cannot travel in JSON to the workflow.
func nonStringKey(v any) string {
	switch x := v.(type) {
	case map[any]any:
		for k := range x {
			return fmt.Sprintf("%v (%T)", k, k)
		}
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(x)) {
			if bad := nonStringKey(x[k]); bad != "" {
				return bad
			}
		}
	case []any:
		for _, e := range x {
			if bad := nonStringKey(e); bad != "" {
				return bad
			}
		}
	}
	return ""
}

func walkStrings(v any, fn func(string)) {
	switch x := v.(type) {
	case string:
		fn(x)
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(x)) {
			walkStrings(x[k], fn)
		}
	case []any:
		for _, e := range x {
			walkStrings(e, fn)
		}
	}
}

// LineOf finds the line and column of a path like "spec.steps[1].with.url"
// in the YAML tree, falling back to the nearest ancestor that exists.
func LineOf(root *yaml.Node, path string) (int, int) {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line, col := n.Line, n.Column
	for _, part := range splitPath(path) {
		var next *yaml.Node
		switch {
		case strings.HasPrefix(part, "[") && n.Kind == yaml.SequenceNode:
			i, _ := strconv.Atoi(strings.Trim(part, "[]"))
			if i < len(n.Content) {
				next = n.Content[i]
			}
		case n.Kind == yaml.MappingNode:
			for j := 0; j+1 < len(n.Content); j += 2 {
				if n.Content[j].Value == part {
					next = n.Content[j+1]
					line, col = n.Content[j].Line, n.Content[j].Column
					break
				}
			}
		}
		if next == nil {
			return line, col
		}
		n = next
		if n.Kind != yaml.MappingNode && n.Kind != yaml.SequenceNode || strings.HasPrefix(part, "[") {
			line, col = n.Line, n.Column
		}
	}
	return line, col
}

func splitPath(path string) []string {
	var parts []string
	for _, p := range strings.Split(path, ".") {
		for p != "" {
			i := strings.Index(p, "[")
			switch {
			case i < 0:
				parts = append(parts, p)
				p = ""
			case i == 0:
				j := strings.Index(p, "]")
				if j < 0 { // a key that merely contains '['
					parts = append(parts, p)
					p = ""
					break
				}
				parts = append(parts, p[:j+1])
				p = p[j+1:]
			default:
				parts = append(parts, p[:i])
				p = p[i:]
			}
		}
	}
	return parts
}

// Closest returns the candidate nearest to s by edit distance, if near
// enough to be a plausible typo ("" if none is): for did-you-mean hints.
func Closest(s string, candidates []string) string {
	if len(s) >= 3 { // "prod" for "production"
		for _, c := range candidates {
			if strings.HasPrefix(c, s) && c != s {
				return c
			}
		}
	}
	best, bestD := "", len(s)/3+2
	for _, c := range candidates {
		if d := editDistance(s, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
