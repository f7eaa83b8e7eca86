package notify

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"os"
	"slices"
	"strings"

	"github.com/salve-sre/salve/activities/step"
	"github.com/salve-sre/salve/runbooks"
)

// Target kinds.
const (
	// KindSlack is a Slack-compatible incoming webhook (Slack, Mattermost,
	// Rocket.Chat): a JSON {"text": ...} message.
	KindSlack = "slack"
	// KindWebhook is a generic JSON POST.
	KindWebhook = "webhook"
)

var targetKinds = []string{KindSlack, KindWebhook}

// Config is the notification configuration (the notifications section of
// Salve's --config file). The zero value configures nothing: the notify
// step fails and says so, and hooks do nothing.
type Config struct {
	// PublicURL is the base URL people open, e.g. https://salve.example.com.
	// Messages link to PublicURL + "/v1/runs/" + url.PathEscape(workflowID);
	// without it they carry no link.
	PublicURL string            `yaml:"publicURL,omitempty" json:"publicURL,omitempty"`
	Targets   map[string]Target `yaml:"targets,omitempty" json:"targets,omitempty"`
	Hooks     []Hook            `yaml:"hooks,omitempty" json:"hooks,omitempty"`
}

// Target is where a notification goes. Its URL and header values are
// secrets (a Slack webhook URL is a bearer token): Target prints and
// marshals them as <redacted>, and errors name the target, never its URL.
type Target struct {
	// Kind is "slack" or "webhook".
	Kind string `yaml:"kind" json:"kind"`
	// URL is the webhook URL. Prefer URLFile, which keeps it out of the
	// configuration.
	URL string `yaml:"url,omitempty" json:"url,omitempty"`
	// URLFile is a file holding the URL, read once by New and trimmed. New
	// takes a relative path as relative to the working directory: the
	// config loader resolves it against the config file's directory.
	URLFile string `yaml:"urlFile,omitempty" json:"urlFile,omitempty"`
	// Headers are sent with every request to the target (e.g. an
	// Authorization header for a generic webhook).
	Headers map[string]string `yaml:"headers,omitempty" json:"headers,omitempty"`
}

// Hook sends run-level events to a target.
type Hook struct {
	// Target is a name in Config.Targets.
	Target string `yaml:"target" json:"target"`
	// Events is a subset of step.HookEvents; empty = all.
	Events []string `yaml:"events,omitempty" json:"events,omitempty"`
	// Runbooks are runbook names; empty = all.
	Runbooks []string `yaml:"runbooks,omitempty" json:"runbooks,omitempty"`
}

const redacted = "<redacted>"

// redactedTarget is Target with its secrets replaced, for printing and
// marshalling. It has no methods, so marshalling it does not recurse.
type redactedTarget struct {
	Kind    string            `yaml:"kind" json:"kind"`
	URL     string            `yaml:"url,omitempty" json:"url,omitempty"`
	URLFile string            `yaml:"urlFile,omitempty" json:"urlFile,omitempty"`
	Headers map[string]string `yaml:"headers,omitempty" json:"headers,omitempty"`
}

func (t Target) redacted() redactedTarget {
	r := redactedTarget{Kind: t.Kind, URLFile: t.URLFile}
	if t.URL != "" {
		r.URL = redacted
	}
	if len(t.Headers) > 0 {
		r.Headers = make(map[string]string, len(t.Headers))
		for k := range t.Headers {
			r.Headers[k] = redacted
		}
	}
	return r
}

// String prints the target with its URL and header values redacted.
func (t Target) String() string { return fmt.Sprintf("%+v", t.redacted()) }

// GoString is String, for %#v.
func (t Target) GoString() string { return t.String() }

// MarshalJSON writes the target with its URL and header values redacted:
// a marshalled config cannot leak them (nor be used to reload them).
func (t Target) MarshalJSON() ([]byte, error) { return json.Marshal(t.redacted()) }

// MarshalYAML is MarshalJSON for YAML.
func (t Target) MarshalYAML() (any, error) { return t.redacted(), nil }

// configure checks cfg and resolves its targets. It returns every problem,
// one per line, each starting with the key to fix (targets.<name>.url,
// hooks[2].events[0]), naming targets, never quoting URLs or headers.
func (n *Notifier) configure(cfg Config) error {
	var errs []error
	problem := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if cfg.PublicURL != "" {
		if _, err := parseHTTPURL(cfg.PublicURL); err != nil {
			problem("publicURL: %v, e.g. https://salve.example.com", err)
		} else {
			n.publicURL = strings.TrimRight(cfg.PublicURL, "/")
		}
	}
	n.targets = make(map[string]target, len(cfg.Targets))
	for _, name := range slices.Sorted(maps.Keys(cfg.Targets)) {
		if strings.TrimSpace(name) == "" {
			problem("targets: a target has an empty name")
			continue
		}
		n.names = append(n.names, name)
		t, terrs := resolveTarget(name, cfg.Targets[name])
		errs = append(errs, terrs...)
		if len(terrs) == 0 {
			n.targets[name] = t
		}
	}
	for i, h := range cfg.Hooks {
		switch _, ok := cfg.Targets[h.Target]; {
		case h.Target == "":
			problem("hooks[%d].target: required, the name of a target (known: %s)", i, known(n.names))
		case !ok:
			problem("hooks[%d].target: unknown target %q%s (known: %s)", i, h.Target, didYouMean(h.Target, n.names), known(n.names))
		}
		for j, ev := range h.Events {
			if !slices.Contains(step.HookEvents, ev) {
				problem("hooks[%d].events[%d]: unknown event %q%s (known: %s)", i, j, ev, didYouMean(ev, step.HookEvents), strings.Join(step.HookEvents, ", "))
			}
		}
		for j, rb := range h.Runbooks {
			if strings.TrimSpace(rb) == "" {
				problem("hooks[%d].runbooks[%d]: empty runbook name (leave runbooks out to match every runbook)", i, j)
			}
		}
	}
	n.hooks = slices.Clone(cfg.Hooks)
	return errors.Join(errs...)
}

// resolveTarget checks one target and reads its URL.
func resolveTarget(name string, in Target) (target, []error) {
	var errs []error
	problem := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("targets.%s%s: %s", name, field, fmt.Sprintf(format, args...)))
	}
	t := target{name: name, kind: in.Kind, headers: in.Headers}
	switch {
	case in.Kind == "":
		problem(".kind", "required (known: %s)", known(targetKinds))
	case !slices.Contains(targetKinds, in.Kind):
		problem(".kind", "unknown kind %q%s (known: %s)", in.Kind, didYouMean(in.Kind, targetKinds), known(targetKinds))
	}
	switch {
	case in.URL != "" && in.URLFile != "":
		problem("", "set url or urlFile, not both")
	case in.URL == "" && in.URLFile == "":
		problem("", "url or urlFile is required (prefer urlFile: a webhook URL is a secret)")
	case in.URL != "":
		if _, err := parseHTTPURL(in.URL); err != nil {
			problem(".url", "%v", err)
		} else {
			t.url = in.URL
		}
	default:
		b, err := os.ReadFile(in.URLFile)
		raw := strings.TrimSpace(string(b))
		switch {
		case err != nil:
			problem(".urlFile", "%v", err)
		case raw == "":
			problem(".urlFile", "%q is empty: write the webhook URL in it", in.URLFile)
		default:
			if _, err := parseHTTPURL(raw); err != nil {
				problem(".urlFile", "the URL in %q %v", in.URLFile, err)
			} else {
				t.url = raw
			}
		}
	}
	for _, k := range slices.Sorted(maps.Keys(in.Headers)) {
		if !validHeaderName(k) {
			problem(".headers", "%q is not a valid header name", k)
		}
		if strings.ContainsAny(in.Headers[k], "\r\n\x00") {
			problem(".headers."+k, "the value contains a line break or NUL")
		}
	}
	if len(errs) > 0 {
		return target{}, errs
	}
	t.secrets = secretsOf(t)
	return t, nil
}

// parseHTTPURL checks an http(s) URL. Its errors never quote the URL.
func parseHTTPURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// Not even the cause: net/url quotes the offending part (a port,
		// a host, an escape), which may be the secret.
		return nil, errors.New("is not a valid URL (look for spaces, stray characters or a bad port or escape)")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, errors.New("must start with http:// or https://")
	}
	if u.Host == "" {
		return nil, errors.New("has no host")
	}
	return u, nil
}

// secretsOf lists the strings scrubbed from any text an error quotes from
// outside (a transport error, a response body): the URL, the parts of it
// that carry tokens, and header values.
func secretsOf(t target) []string {
	s := []string{t.url}
	if u, err := url.Parse(t.url); err == nil {
		s = append(s, u.EscapedPath(), u.Path, u.RawQuery)
		if u.User != nil {
			s = append(s, u.User.String())
		}
	}
	for _, v := range t.headers {
		s = append(s, v)
	}
	// Longest first, so a part never breaks up a longer secret it is in;
	// short strings ("/", "json") are too common to be worth hiding.
	s = slices.DeleteFunc(s, func(x string) bool { return len(x) < 4 })
	slices.SortFunc(s, func(a, b string) int { return len(b) - len(a) })
	return slices.Compact(s)
}

func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c <= ' ' || c >= 0x7f || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, c) {
			return false
		}
	}
	return true
}

func known(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

func didYouMean(s string, candidates []string) string {
	if near := runbooks.Closest(s, candidates); near != "" {
		return fmt.Sprintf(" (did you mean %q?)", near)
	}
	return ""
}

// closest returns the candidate nearest to s by edit distance, if near
// enough to be a plausible typo (the same rule as runbooks' suggestions).
