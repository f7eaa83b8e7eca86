package runbooks

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"text/template/parse"

	"github.com/salve-sre/salve/activities/step"
)

// Untrusted input (docs/runbooks.md, "Untrusted input").
//
// Alert labels and annotations are written by whoever shapes a metric or
// holds the webhook token; launch parameters by whoever may launch. So a
// runbook template value is untrusted unless the runbook itself pins it:
//
//   - trusted: literal text; .Run.Runbook; a parameter that is
//     constrained — type int, bool, duration, enum, dnsLabel or k8sName,
//     or a string with a pattern;
//   - untrusted: everything else — .Labels, .Annotations, .Alert,
//     .Steps.<name>.Output (what other systems answered), .Run.IncidentKey and
//     .Run.WorkflowID (made of labels), unconstrained parameters.
//
// Where a value lands decides what is allowed (step.Param.Sink):
//
//   - URL: scheme, host and port are literal or trusted; an untrusted value
//     only after a literal '/', '?' or '#' that follows the host, and only
//     through pathEscape or queryEscape. With secretHeaders, the host must
//     be literal text.
//   - PromQL: an untrusted value only through promQuote (a whole string
//     literal, quotes included).
//   - names (Kubernetes namespace, name, selector, cluster; notification
//     targets): trusted values only.
//   - Vault roles and secret paths: literal text or enum parameters only —
//     a pattern still lets an alert choose among credentials.
//
// The rules are checked when a runbook loads, so an unsafe runbook never
// runs; the escaping functions make rendering keep the structure.

// Escaping functions, by the sink position they make an untrusted value
// safe in.
const (
	fnPathEscape  = "pathEscape"
	fnQueryEscape = "queryEscape"
	fnPromQuote   = "promQuote"
)

// Extra parameter types that constrain strings to safe names.
var (
	k8sNameRE  = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	dnsLabelRE = dnsLabel
)

// promQuote renders s as a PromQL string literal, quotes included: no
// value can end the string early and change the query.
func promQuote(s string) string { return strconv.Quote(s) }

// constrained reports whether the runbook pins the parameter's values.
func (p Param) constrained() bool {
	return p.typeOf() != ParamString || p.Pattern != ""
}

// taintRef is one value an action reads, and whether it is trusted.
type taintRef struct {
	path    []string
	trusted bool
	pinned  bool // literal-equivalent: an enum parameter or .Run.Runbook
}

func classify(path []string, params map[string]Param) taintRef {
	r := taintRef{path: path}
	switch path[0] {
	case "Params":
		if len(path) >= 2 {
			if p, ok := params[path[1]]; ok {
				r.trusted = p.constrained()
				r.pinned = p.typeOf() == ParamEnum
			}
		}
	case "Run":
		r.trusted = len(path) >= 2 && path[1] == "Runbook"
		r.pinned = r.trusted
	case "Steps":
		// A step's status is Salve's own word (succeeded, failed, ...);
		// its output is what another system answered.
		r.trusted = len(path) == 3 && path[2] == "Status"
	}
	return r
}

func (r taintRef) String() string {
	if strings.HasPrefix(r.path[0], "(") {
		return r.path[0] // a variable or the whole data
	}
	return "." + strings.Join(r.path, ".")
}

// fieldsIn lists every data field, variable and dot node reads
// (walkFields with all: the worst case).
func fieldsIn(n parse.Node) [][]string {
	var out [][]string
	walkFields(n, true, func(p []string) { out = append(out, p) })
	return out
}

// escaper is the function an action's output last goes through, if any:
// {{ .Labels.x | pathEscape }} and {{ pathEscape .Labels.x }} both give
// pathEscape.
func escaper(a *parse.ActionNode) string {
	if a.Pipe == nil || len(a.Pipe.Cmds) == 0 {
		return ""
	}
	last := a.Pipe.Cmds[len(a.Pipe.Cmds)-1]
	if len(last.Args) == 0 {
		return ""
	}
	if id, ok := last.Args[0].(*parse.IdentifierNode); ok {
		return id.Ident
	}
	return ""
}

// checkSink returns what is wrong with text as a value in sink. literalHost
// (secretHeaders on the step) requires a URL's host to be literal text.
func checkSink(sink, text string, params map[string]Param, literalHost bool) []string {
	if sink == "" || !strings.Contains(text, "{{") {
		return nil
	}
	t, err := parseTemplate(text)
	if err != nil || t.Tree == nil || t.Tree.Root == nil {
		return nil // reported by checkTemplate
	}
	var problems []string
	seen := map[string]bool{}
	add := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		if !seen[msg] {
			seen[msg] = true
			problems = append(problems, msg)
		}
	}
	untrustedIn := func(n parse.Node) (bad []taintRef, unpinned []taintRef) {
		for _, f := range fieldsIn(n) {
			r := classify(f, params)
			if !r.trusted {
				bad = append(bad, r)
			}
			if !r.pinned {
				unpinned = append(unpinned, r)
			}
		}
		return bad, unpinned
	}
	// lit is the URL so far, each action standing for one character: the
	// host ends at the first '/', '?' or '#' after "scheme://".
	var lit strings.Builder
	pastHost := func() bool {
		s := lit.String()
		if i := strings.Index(s, "://"); i >= 0 {
			s = s[i+3:]
		}
		return strings.ContainsAny(s, "/?#")
	}
	for _, n := range t.Tree.Root.Nodes {
		if tn, ok := n.(*parse.TextNode); ok {
			lit.Write(tn.Text)
			continue
		}
		bad, unpinned := untrustedIn(n)
		action, isAction := n.(*parse.ActionNode)
		esc := ""
		if isAction {
			esc = escaper(action)
		}
		switch sink {
		case step.SinkURL:
			host := !pastHost()
			switch {
			case host && literalHost:
				add("a step with secretHeaders sends secrets only to a host written in the runbook: write the URL's scheme, host and port literally, not %s", nodeText(n))
			case host && len(bad) > 0:
				add("%s would let an alert (or a launch) choose where this URL goes: take the scheme, host and port from the runbook (literal text, or a parameter with type enum or a pattern), and put alert values only in the path or query through pathEscape or queryEscape", refList(bad))
			case !host && len(bad) > 0 && esc != fnPathEscape && esc != fnQueryEscape:
				if isAction {
					add("%s goes into the URL unescaped: write {{ %s | pathEscape }} in a path, or | queryEscape in a query", refList(bad), bad[0])
				} else {
					add("%s is used in if/range/with inside a URL: compute the value with one escaped action instead ({{ ... | pathEscape }})", refList(bad))
				}
			}
			lit.WriteByte('x')
		case step.SinkPromQL:
			if len(bad) > 0 && (!isAction || esc != fnPromQuote) {
				add("%s goes into PromQL unquoted, so an alert could change the query: write {{ %s | promQuote }} (it adds the quotes: namespace={{ .Params.namespace | promQuote }}), or give the parameter a type or a pattern", refList(bad), bad[0])
			}
		case step.SinkName:
			if len(bad) > 0 {
				add("%s chooses what this step acts on: take it from a parameter with type k8sName, dnsLabel or enum, or with a pattern (e.g. namespace: {fromLabel: namespace, type: dnsLabel})", refList(bad))
			}
		case step.SinkSecret:
			if len(unpinned) > 0 {
				add("%s would let an alert (or a launch) choose a secret: write the path literally, or use a parameter of type enum", refList(unpinned))
			}
		}
	}
	return problems
}

// checkCredentialTemplate returns what is wrong with a vaultRole template:
// the role decides what Salve may do, so only the runbook chooses it.
func checkCredentialTemplate(text string, params map[string]Param) []string {
	if !strings.Contains(text, "{{") {
		return nil
	}
	t, err := parseTemplate(text)
	if err != nil || t.Tree == nil {
		return nil
	}
	var unpinned []taintRef
	for _, f := range fieldsIn(t.Tree.Root) {
		if r := classify(f, params); !r.pinned {
			unpinned = append(unpinned, r)
		}
	}
	if len(unpinned) == 0 {
		return nil
	}
	return []string{fmt.Sprintf("untrusted input: %s would let an alert (or a launch) choose the Vault role: write the role literally, or use a parameter of type enum listing the roles this runbook may use (e.g. namespace: {type: enum, values: [shop, payments], fromLabel: namespace})", refList(unpinned))}
}

func refList(rs []taintRef) string {
	seen := map[string]bool{}
	var out []string
	for _, r := range rs {
		if s := r.String(); !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return strings.Join(out, ", ")
}

func nodeText(n parse.Node) string { return n.String() }
