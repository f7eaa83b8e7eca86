package loadgen

import (
	"fmt"
	"io"
	"time"

	"github.com/salve-sre/salve/internal/tracing"
)

// TracingModes reads a --tracing flag (off, on or both) into the runs to
// make, tracing off before on. On needs the OTEL_* variables to name an
// exporter: the overhead of tracing is only real with spans going out.
func TracingModes(flag string) ([]bool, error) {
	var modes []bool
	switch flag {
	case "off":
		return []bool{false}, nil
	case "on":
		modes = []bool{true}
	case "both":
		modes = []bool{false, true}
	default:
		return nil, fmt.Errorf("--tracing %q: want off, on or both", flag)
	}
	s, err := tracing.FromEnv(nil)
	if err != nil {
		return nil, err
	}
	if !s.Enabled {
		return nil, fmt.Errorf("--tracing %s: tracing needs somewhere to send spans: set OTEL_EXPORTER_OTLP_ENDPOINT (e.g. http://127.0.0.1:4318 for a local Jaeger) (%s)", flag, s.Why)
	}
	return modes, nil
}

// TracingGetenv is the environment a run with tracing on or off reads.
func TracingGetenv(on bool) func(string) string {
	if on {
		return nil // the process's: the OTEL_* variables TracingModes checked
	}
	return tracing.Off
}

// PrintOverhead compares a figure with tracing off and on: "x on / off".
func PrintOverhead(w io.Writer, what string, off, on float64, unit string) {
	ratio := 0.0
	if off > 0 {
		ratio = on / off
	}
	fmt.Fprintf(w, "  %-15s off %.1f %s, on %.1f %s: on = %.2f x off\n", what, off, unit, on, unit, ratio)
}

// Millis is d in milliseconds, for PrintOverhead.
func Millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
