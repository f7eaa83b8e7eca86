package slos

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/prometheus/promql/parser"
	"gopkg.in/yaml.v3"

	"github.com/salve-sre/salve/runbooks"
)

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// kindSLO finds a top-level kind: SLO line, also in a file that is not
// valid YAML: a broken SLO file must be reported as an SLO, not as a
// runbook.
var kindSLO = regexp.MustCompile(`(?m)^kind:[ \t]*["']?SLO["']?[ \t]*(#.*)?\r?$`)

// IsSLO reports whether a file declares kind: SLO, so that a directory of
// runbooks and SLOs can send each file to its parser.
func IsSLO(data []byte) bool { return kindSLO.Match(data) }

// Parse decodes and validates one SLO file strictly, reporting every
// problem with its file and line (runbooks.ValidationError: the same form
// as a runbook's).
func Parse(source string, data []byte) (*SLO, error) {
	fail := func(line int, msg string) error {
		return &runbooks.ValidationError{Problems: []runbooks.Problem{{Source: source, Line: line, Msg: msg}}}
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fail(0, "empty file: an SLO starts with apiVersion: "+APIVersion)
	}
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); errors.Is(err, io.EOF) {
		return nil, fail(0, "empty file: an SLO starts with apiVersion: "+APIVersion)
	} else if err != nil {
		return nil, &runbooks.ValidationError{Problems: runbooks.YAMLProblems(source, err)}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil && extra.Kind != 0 {
		return nil, fail(extra.Line, "more than one YAML document: put one SLO per file")
	}
	var s SLO
	var problems []runbooks.Problem
	sdec := yaml.NewDecoder(bytes.NewReader(data))
	sdec.KnownFields(true)
	if err := sdec.Decode(&s); err != nil {
		problems = runbooks.YAMLProblems(source, err)
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return nil, &runbooks.ValidationError{Problems: problems}
		}
	}
	sum := sha256.Sum256(data)
	s.Source, s.Hash = source, hex.EncodeToString(sum[:])
	v := validator{source: source, root: &root}
	v.slo(&s)
	typeLines := map[int]bool{}
	for _, p := range problems {
		typeLines[p.Line] = true
	}
	for _, p := range v.problems {
		if !typeLines[p.Line] {
			problems = append(problems, p)
		}
	}
	if len(problems) > 0 {
		sort.SliceStable(problems, func(i, j int) bool { return problems[i].Line < problems[j].Line })
		return nil, &runbooks.ValidationError{Problems: problems}
	}
	return &s, nil
}

type validator struct {
	source   string
	root     *yaml.Node
	problems []runbooks.Problem
}

func (v *validator) addf(path, format string, args ...any) {
	line, col := runbooks.LineOf(v.root, path)
	v.problems = append(v.problems, runbooks.Problem{Source: v.source, Line: line, Col: col, Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) slo(s *SLO) {
	if s.APIVersion != APIVersion {
		v.addf("apiVersion", "is %q; an SLO file has apiVersion: %s", s.APIVersion, APIVersion)
	}
	if s.Kind != Kind {
		v.addf("kind", "is %q; an SLO file has kind: %s", s.Kind, Kind)
	}
	if !dnsLabel.MatchString(s.Metadata.Name) || len(s.Metadata.Name) > 63 {
		v.addf("metadata.name", "%q: lowercase letters, digits and '-', at most 63 (runbooks refer to the SLO by it)", s.Metadata.Name)
	}
	if !dnsLabel.MatchString(s.Spec.Service) || len(s.Spec.Service) > 63 {
		v.addf("spec.service", "%q: required; lowercase letters, digits and '-' (MTTR and MTBF are reported per service)", s.Spec.Service)
	}
	if m := s.Spec.BudgetingMethod; m != "" && m != "Occurrences" {
		v.addf("spec.budgetingMethod", "%q: only Occurrences (good events / total events) is supported", m)
	}
	switch n := len(s.Spec.Objectives); {
	case n == 0:
		v.addf("spec.objectives", "missing: one objective with ratioMetrics (good, total) and a target")
	case n > 1:
		v.addf("spec.objectives[1]", "one objective per SLO file; put another objective in a file of its own")
	default:
		v.objective(s.Spec.Objectives[0])
		if len(v.problems) == 0 && len(s.Spec.TimeWindows) == 1 {
			// What Salve and the rules query is the two together.
			if _, err := parser.ParseExpr(s.ErrorRatioQuery(5 * time.Minute)); err != nil {
				v.addf("spec.objectives[0].ratioMetrics", "good and total do not make a valid 1 - good/total query: %v", err)
			}
		}
	}
	switch n := len(s.Spec.TimeWindows); {
	case n != 1:
		v.addf("spec.timeWindows", "want exactly one time window: [{count: 30, unit: Day}] (or 28)")
	default:
		tw := s.Spec.TimeWindows[0]
		if tw.Unit != "Day" || (tw.Count != 30 && tw.Count != 28) {
			v.addf("spec.timeWindows[0]", "%d %s: want 30 or 28 Day (the burn-rate alert windows are defined for those periods)", tw.Count, tw.Unit)
		}
		if tw.IsRolling != nil && !*tw.IsRolling {
			v.addf("spec.timeWindows[0].isRolling", "calendar windows are not supported: omit it or set true")
		}
	}
}

func (v *validator) objective(o Objective) {
	const path = "spec.objectives[0]"
	if !(o.Target > 0 && o.Target < 1) {
		v.addf(path+".target", "%v: the share of good events, between 0 and 1 exclusive (e.g. 0.999 for 99.9 %%)", o.Target)
	}
	for _, m := range []struct {
		name string
		m    Metric
	}{{"good", o.RatioMetrics.Good}, {"total", o.RatioMetrics.Total}} {
		p := path + ".ratioMetrics." + m.name
		if m.m.Source != "prometheus" {
			v.addf(p+".source", "%q: want prometheus", m.m.Source)
		}
		if m.m.QueryType != "promql" {
			v.addf(p+".queryType", "%q: want promql", m.m.QueryType)
		}
		if strings.TrimSpace(m.m.Query) == "" {
			v.addf(p+".query", "missing: a PromQL query with %s as its range, e.g. sum(rate(http_requests_total{job=\"checkout\"}[%s]))", WindowPlaceholder, WindowPlaceholder)
			continue
		}
		if !strings.Contains(m.m.Query, WindowPlaceholder) {
			v.addf(p+".query", "has no %s: the query is read over several windows (5m to 30d), e.g. rate(x[%s])", WindowPlaceholder, WindowPlaceholder)
		}
		if _, err := parser.ParseExpr(strings.ReplaceAll(m.m.Query, WindowPlaceholder, "5m")); err != nil {
			v.addf(p+".query", "not valid PromQL: %v", err)
		}
	}
}
