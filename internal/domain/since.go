package domain

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParseSince reads the start of a time window as people write it in the
// API, the CLI and the dashboard — one grammar for all three: a duration
// back from now (90m, 2h), a number of days (7d, at most 3650), or an RFC
// 3339 time.
func ParseSince(v string, now time.Time) (time.Time, error) {
	v = strings.TrimSpace(v)
	if n, ok := strings.CutSuffix(v, "d"); ok {
		if days, err := strconv.Atoi(n); err == nil && days > 0 && days <= 3650 {
			return now.Add(-time.Duration(days) * 24 * time.Hour), nil
		}
	}
	if dur, err := time.ParseDuration(v); err == nil && dur > 0 {
		return now.Add(-dur), nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("since %q: want a duration such as 2h or 7d, or an RFC 3339 time such as 2026-11-24T09:00:00Z", v)
}
