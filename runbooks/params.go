package runbooks

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// typeOf returns the parameter's type, string when unset.
func (p Param) typeOf() string {
	if p.Type == "" {
		return ParamString
	}
	return p.Type
}

// Check reports why v is not a valid value of the parameter, or nil.
// Messages say what to write instead, because people read them at launch.
func (p Param) Check(v string) error {
	switch p.typeOf() {
	case ParamInt:
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return fmt.Errorf("want a whole number, got %q", v)
		}
		if lo, ok := parseIntBound(p.Min); ok && n < lo {
			return fmt.Errorf("%d is below the minimum %d", n, lo)
		}
		if hi, ok := parseIntBound(p.Max); ok && n > hi {
			return fmt.Errorf("%d is above the maximum %d", n, hi)
		}
	case ParamBool:
		if v != "true" && v != "false" {
			return fmt.Errorf("want true or false, got %q", v)
		}
	case ParamDuration:
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil || d < 0 {
			return fmt.Errorf("want a duration such as 30s or 5m, got %q", v)
		}
		if lo, err := time.ParseDuration(p.Min); p.Min != "" && err == nil && d < lo {
			return fmt.Errorf("%s is below the minimum %s", d, lo)
		}
		if hi, err := time.ParseDuration(p.Max); p.Max != "" && err == nil && d > hi {
			return fmt.Errorf("%s is above the maximum %s", d, hi)
		}
	case ParamDNSLabel:
		if len(v) > 63 || !dnsLabelRE.MatchString(v) {
			return fmt.Errorf("want a DNS label (lowercase letters, digits and '-', at most 63, e.g. a Kubernetes namespace), got %q", v)
		}
	case ParamK8sName:
		if len(v) > 253 || !k8sNameRE.MatchString(v) {
			return fmt.Errorf("want a Kubernetes name (lowercase letters, digits, '-' and '.', at most 253), got %q", v)
		}
	case ParamEnum:
		for _, allowed := range p.Values {
			if v == allowed {
				return nil
			}
		}
		msg := fmt.Sprintf("want one of %s, got %q", strings.Join(p.Values, ", "), v)
		if near := Closest(v, p.Values); near != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", near)
		}
		return fmt.Errorf("%s", msg)
	}
	if p.Pattern != "" {
		re, err := regexp.Compile(`^(?:` + p.Pattern + `)$`)
		if err == nil && !re.MatchString(v) {
			return fmt.Errorf("%q does not match the pattern %s", v, p.Pattern)
		}
	}
	return nil
}

func parseIntBound(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	return n, err == nil
}

// param validates a parameter declaration itself: its type, its
// bounds and that its default is a valid value.
func (v *validator) param(path string, p Param) {
	typ := p.typeOf()
	known := false
	for _, t := range ParamTypes {
		known = known || t == typ
	}
	if !known {
		msg := fmt.Sprintf("unknown type %q (one of: %s)", p.Type, strings.Join(ParamTypes, ", "))
		if near := Closest(p.Type, ParamTypes); near != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", near)
		}
		v.add(path+".type", "%s", msg)
		return
	}
	if typ == ParamEnum && len(p.Values) == 0 {
		v.add(path+".values", "an enum needs values, e.g. values: [staging, production]")
	}
	if typ != ParamEnum && len(p.Values) > 0 {
		v.add(path+".values", "values apply to type enum only (this parameter is %s)", typ)
	}
	if p.Min != "" || p.Max != "" {
		switch typ {
		case ParamInt:
			for _, b := range []struct{ name, val string }{{"min", p.Min}, {"max", p.Max}} {
				if _, ok := parseIntBound(b.val); b.val != "" && !ok {
					v.add(path+"."+b.name, "want a whole number for an int parameter, got %q", b.val)
				}
			}
			lo, okLo := parseIntBound(p.Min)
			hi, okHi := parseIntBound(p.Max)
			if okLo && okHi && lo > hi {
				v.add(path+".min", "min %d is above max %d", lo, hi)
			}
		case ParamDuration:
			for _, b := range []struct{ name, val string }{{"min", p.Min}, {"max", p.Max}} {
				if _, err := time.ParseDuration(b.val); b.val != "" && err != nil {
					v.add(path+"."+b.name, "want a duration such as 30s for a duration parameter, got %q", b.val)
				}
			}
		default:
			v.add(path+".min", "min and max apply to int and duration parameters (this parameter is %s); use pattern for strings", typ)
		}
	}
	if p.Pattern != "" {
		if typ != ParamString && typ != ParamDNSLabel && typ != ParamK8sName {
			v.add(path+".pattern", "pattern applies to string parameters (this parameter is %s)", typ)
		} else if _, err := regexp.Compile(p.Pattern); err != nil {
			v.add(path+".pattern", "bad regular expression: %v", err)
		}
	}
	if p.Default != "" {
		if err := p.Check(p.Default); err != nil {
			v.add(path+".default", "%v", err)
		}
	}
}
