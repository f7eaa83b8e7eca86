package safety

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// stamps encode exactly as []time.Time does, so documents written before
// and after read the same.
func TestStampsEncodeAsTimes(t *testing.T) {
	loc := time.FixedZone("X", 3600)
	for _, ts := range [][]time.Time{
		nil, {},
		{time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC), time.Date(2026, 12, 7, 9, 0, 0, 123456789, time.UTC), time.Date(1999, 1, 2, 3, 4, 5, 6000, loc)},
	} {
		want, err := json.Marshal(ts)
		require.NoError(t, err)
		got, err := json.Marshal(stamps(ts))
		require.NoError(t, err)
		require.Equal(t, string(want), string(got))
		var back stamps
		require.NoError(t, json.Unmarshal(got, &back))
		require.Len(t, back, len(ts))
	}
	_, err := json.Marshal(stamps{time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)})
	require.Error(t, err)
}
