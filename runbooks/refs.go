package runbooks

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"text/template/parse"
)

// Template roots: the fields of TemplateData.
var (
	allRoots      = []string{"Alert", "Labels", "Annotations", "Params", "Steps", "Run"}
	incidentRoots = []string{"Alert", "Labels", "Annotations"}
)

// refs lists the field paths a template reads from its data, e.g.
// ["Params", "namespace"] for {{ .Params.namespace }}. Paths through
// variables ($x.y) are not followed.
func refs(text string) ([][]string, error) {
	t, err := parseTemplate(text)
	if err != nil {
		return nil, err
	}
	var out [][]string
	if t.Tree != nil {
		walkFields(t.Tree.Root, false, func(p []string) { out = append(out, p) })
	}
	return out, nil
}

// walkFields calls add with every data field path node reads. Inside range
// and with, dot changes, so their bodies are not the template data's: with
// all false they are skipped, and variables and a bare dot are ignored
// (reference checks); with all true everything is reported — bodies,
// variables as "(variable $x)", dot as "(the whole data)" — for the
// untrusted-input rules, which must assume the worst.
func walkFields(n parse.Node, all bool, add func([]string)) {
	walk := func(n parse.Node) { walkFields(n, all, add) }
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return
		}
		for _, c := range n.Nodes {
			walk(c)
		}
	case *parse.ActionNode:
		walk(n.Pipe)
	case *parse.PipeNode:
		if n == nil {
			return
		}
		for _, c := range n.Cmds {
			walk(c)
		}
	case *parse.CommandNode:
		for _, a := range n.Args {
			walk(a)
		}
	case *parse.FieldNode:
		add(n.Ident)
	case *parse.ChainNode:
		walk(n.Node)
	case *parse.IfNode:
		walk(n.Pipe)
		walk(n.List)
		walk(n.ElseList)
	case *parse.RangeNode:
		walk(n.Pipe)
		if all {
			walk(n.List)
			walk(n.ElseList)
		}
	case *parse.WithNode:
		walk(n.Pipe)
		if all {
			walk(n.List)
		}
		walk(n.ElseList)
	case *parse.TemplateNode:
		if all {
			walk(n.Pipe)
		}
	case *parse.VariableNode:
		if !all {
			return
		}
		switch {
		case n.Ident[0] != "$":
			add([]string{"(variable " + n.Ident[0] + ")"})
		case len(n.Ident) > 1:
			add(n.Ident[1:])
		default:
			add([]string{"(the whole data)"})
		}
	case *parse.DotNode:
		if all {
			add([]string{"(the whole data)"})
		}
	}
}

// scope is what a template may refer to where it is used.
type scope struct {
	roots  []string
	params map[string]Param
	steps  map[string]bool // steps that have run before this point
	all    map[string]bool // every step of the runbook, for better messages
}

// checkRefs reports references that can only fail at run time: unknown
// roots (.Param.x), undeclared parameters, and steps that do not exist or
// have not run yet at this point.
func checkRefs(text string, sc scope) []string {
	if !strings.Contains(text, "{{") {
		return nil
	}
	paths, err := refs(text)
	if err != nil {
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
	for _, p := range paths {
		root := p[0]
		if !contains(sc.roots, root) {
			msg := fmt.Sprintf("template refers to .%s, which is not available here (available: .%s)", root, strings.Join(sc.roots, ", ."))
			if near := Closest(root, sc.roots); near != "" {
				msg += fmt.Sprintf(" (did you mean .%s?)", near)
			}
			add("%s", msg)
			continue
		}
		if len(p) < 2 {
			continue
		}
		switch root {
		case "Params":
			if _, ok := sc.params[p[1]]; !ok {
				msg := fmt.Sprintf("template refers to parameter %q, which spec.params does not declare", p[1])
				if near := Closest(p[1], slices.Sorted(maps.Keys(sc.params))); near != "" {
					msg += fmt.Sprintf(" (did you mean %q?)", near)
				}
				add("%s", msg)
			}
		case "Steps":
			switch {
			case sc.steps[p[1]]:
			case sc.all[p[1]]:
				add("template refers to step %q, which has not run yet at this point", p[1])
			default:
				msg := fmt.Sprintf("template refers to step %q, which does not exist", p[1])
				if near := Closest(p[1], slices.Sorted(maps.Keys(sc.all))); near != "" {
					msg += fmt.Sprintf(" (did you mean %q?)", near)
				}
				add("%s", msg)
			}
		}
	}
	return problems
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}
