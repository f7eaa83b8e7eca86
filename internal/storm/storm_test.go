package storm_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/internal/storm"
)

// A small storm in the test command: duplicates, flaps and resolutions of
// 10 incidents make exactly 10 runs, and no mutating call is repeated.
// (`salve-load storm` runs the full 10,000-alert version and prints figures.)
func TestStormMakesOneRunPerIncident(t *testing.T) {
	rep, err := storm.Run(context.Background(), storm.Config{Alerts: 400, Incidents: 10, Timeout: 4 * time.Minute})
	require.NoError(t, err)
	require.Equal(t, 400, rep.Accepted)
	require.Equal(t, 10, rep.RunsStarted)
	require.Equal(t, 10, rep.RunsFinished)
	require.Zero(t, rep.DuplicateActions)
	require.Positive(t, rep.Joined+rep.Suppressed, "flaps joined a running run or were suppressed by the cooldown")
}
