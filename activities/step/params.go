package step

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Param types a ParamSchema knows.
const (
	TypeString   = "string"
	TypeInt      = "int"
	TypeBool     = "bool"
	TypeDuration = "duration"
	TypeMap      = "map"  // string keys, string values
	TypeList     = "list" // list of scalars
	TypeAny      = "any"
)

// Param is one parameter of a step kind.
type Param struct {
	Name     string
	Type     string
	Required bool
	Doc      string
	// Sink says what a value here can steer (SinkURL, SinkPromQL,
	// SinkName, SinkSecret): where a runbook must not let alert contents
	// in unconstrained. "" = plain data (a message, a body).
	Sink string
}

// Sinks: positions where an untrusted value (from an alert or a launch)
// could choose where Salve acts or with what. The runbook loader enforces
// the rules for each (runbooks: "Untrusted input").
const (
	// SinkURL: a URL Salve calls. Its scheme, host and port come from the
	// runbook; alert values only in the path or query, escaped.
	SinkURL = "url"
	// SinkPromQL: a PromQL expression. Alert values only as quoted string
	// literals (promQuote).
	SinkPromQL = "promql"
	// SinkName: what a step acts on (a Kubernetes namespace, name,
	// selector or cluster; a notification target). Constrained parameters
	// only.
	SinkName = "name"
	// SinkSecret: a Vault secret path. The runbook's text or enum
	// parameters only.
	SinkSecret = "secret"
)

// ParamSchema lists a step kind's parameters. Unknown parameters are errors:
// a typo in a runbook must fail at load, not be ignored mid-incident.
type ParamSchema struct {
	Params []Param
}

// Lookup returns the named parameter.
func (s ParamSchema) Lookup(name string) (Param, bool) {
	for _, p := range s.Params {
		if p.Name == name {
			return p, true
		}
	}
	return Param{}, false
}

// Validate checks params against the schema and returns every problem found,
// in a stable order. A string containing "{{" is a template: its type is
// checked after rendering, at run time, by Coerce in the executor.
func (s ParamSchema) Validate(params map[string]any) []error {
	var errs []error
	names := make([]string, 0, len(params))
	for k := range params {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, name := range names {
		p, ok := s.Lookup(name)
		if !ok {
			errs = append(errs, fmt.Errorf("%w: unknown parameter %q (known: %s)", ErrInvalidParams, name, s.names()))
			continue
		}
		v := params[name]
		if str, isStr := v.(string); isStr && strings.Contains(str, "{{") {
			continue
		}
		if err := checkType(p.Type, v); err != nil {
			errs = append(errs, fmt.Errorf("%w: parameter %q: %v", ErrInvalidParams, name, err))
		}
	}
	for _, p := range s.Params {
		if _, ok := params[p.Name]; p.Required && !ok {
			errs = append(errs, fmt.Errorf("%w: missing required parameter %q", ErrInvalidParams, p.Name))
		}
	}
	return errs
}

func (s ParamSchema) names() string {
	n := make([]string, len(s.Params))
	for i, p := range s.Params {
		n[i] = p.Name
	}
	return strings.Join(n, ", ")
}

func checkType(typ string, v any) error {
	var err error
	switch typ {
	case TypeString:
		_, err = String(v)
	case TypeInt:
		_, err = Int(v)
	case TypeBool:
		_, err = Bool(v)
	case TypeDuration:
		_, err = Duration(v)
	case TypeMap:
		_, err = StringMap(v)
	case TypeList:
		if _, ok := v.([]any); !ok {
			err = fmt.Errorf("want a list, got %T", v)
		}
	case TypeAny:
	default:
		err = fmt.Errorf("schema has unknown type %q", typ)
	}
	return err
}

// String coerces a parameter value to a string. Numbers and booleans are
// accepted because YAML authors write `replicas: 3` and templates render "3".
func String(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case int, int64, float64, bool:
		return fmt.Sprint(x), nil
	default:
		return "", fmt.Errorf("want a string, got %T", v)
	}
}

// Int coerces a parameter value to an int. JSON round trips turn YAML ints
// into float64, and rendered templates into strings.
func Int(v any) (int, error) {
	switch x := v.(type) {
	case int:
		return x, nil
	case int64:
		return int(x), nil
	case float64:
		if x != float64(int(x)) {
			return 0, fmt.Errorf("want a whole number, got %v", x)
		}
		return int(x), nil
	case string:
		var n int
		if _, err := fmt.Sscanf(strings.TrimSpace(x), "%d", &n); err != nil || fmt.Sprint(n) != strings.TrimSpace(x) {
			return 0, fmt.Errorf("want a whole number, got %q", x)
		}
		return n, nil
	default:
		return 0, fmt.Errorf("want a whole number, got %T", v)
	}
}

// Bool coerces a parameter value to a bool.
func Bool(v any) (bool, error) {
	switch x := v.(type) {
	case bool:
		return x, nil
	case string:
		switch strings.TrimSpace(x) {
		case "true":
			return true, nil
		case "false":
			return false, nil
		}
		return false, fmt.Errorf("want true or false, got %q", x)
	default:
		return false, fmt.Errorf("want true or false, got %T", v)
	}
}

// Duration coerces a parameter value ("30s", "5m") to a duration.
func Duration(v any) (time.Duration, error) {
	s, ok := v.(string)
	if !ok {
		return 0, fmt.Errorf("want a duration such as \"30s\", got %T", v)
	}
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("want a duration such as \"30s\", got %q", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("duration %q is negative", s)
	}
	return d, nil
}

// StringMap coerces a parameter value to a map of strings (e.g. headers).
func StringMap(v any) (map[string]string, error) {
	switch x := v.(type) {
	case map[string]string:
		return x, nil
	case map[string]any:
		out := make(map[string]string, len(x))
		for k, val := range x {
			s, err := String(val)
			if err != nil {
				return nil, fmt.Errorf("key %q: %v", k, err)
			}
			out[k] = s
		}
		return out, nil
	default:
		return nil, fmt.Errorf("want a map of strings, got %T", v)
	}
}
