package domain_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/internal/domain"
)

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"90m":                  now.Add(-90 * time.Minute),
		"2h":                   now.Add(-2 * time.Hour),
		" 7d ":                 now.Add(-7 * 24 * time.Hour),
		"2026-11-24T09:00:00Z": time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC),
	} {
		got, err := domain.ParseSince(in, now)
		require.NoError(t, err, in)
		require.True(t, want.Equal(got), "%s: %s", in, got)
	}
	for _, bad := range []string{"", "0d", "-1h", "3651d", "yesterday", "7days"} {
		_, err := domain.ParseSince(bad, now)
		require.ErrorContains(t, err, "want a duration such as 2h or 7d", bad)
	}
}
