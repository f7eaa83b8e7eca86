package tracing

import (
	"fmt"
	"net/url"
	"strings"
)

// TraceIDPlaceholder is what a trace link template replaces with a
// trace's ID.
const TraceIDPlaceholder = "{traceId}"

// CheckLinkTemplate reports what is wrong with a trace link template:
// an http(s) URL holding {traceId}, e.g. Jaeger's
// http://jaeger:16686/trace/{traceId}.
func CheckLinkTemplate(t string) error {
	if t == "" {
		return nil
	}
	if !strings.Contains(t, TraceIDPlaceholder) {
		return fmt.Errorf("trace link template %q has no %s to put the trace ID in, e.g. http://jaeger:16686/trace/%s", t, TraceIDPlaceholder, TraceIDPlaceholder)
	}
	u, err := url.Parse(strings.ReplaceAll(t, TraceIDPlaceholder, "0"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("trace link template %q is not an http:// or https:// URL", t)
	}
	return nil
}

// Link is the template's URL for a trace; "" without a template or an ID.
// A trace ID is 32 hex digits (a run's memo is the only source), so it
// needs no escaping; anything else gives no link.
func Link(template, traceID string) string {
	if template == "" || !isTraceID(traceID) {
		return ""
	}
	return strings.ReplaceAll(template, TraceIDPlaceholder, traceID)
}

func isTraceID(s string) bool {
	if len(s) != 32 {
		return false
	}
	for i := range len(s) {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return s != strings.Repeat("0", 32)
}
