package loadgen

import (
	"fmt"
	"math"
	"os"
	"slices"
	"time"

	"github.com/prometheus/procfs"
)

// Percentile returns the p-th percentile (0 < p <= 100) of sorted by the
// nearest-rank method; 0 for an empty slice.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = max(1, min(rank, len(sorted)))
	return sorted[rank-1]
}

// Latency summarises request latencies.
type Latency struct {
	N                  int
	P50, P90, P99, Max time.Duration
}

func summarize(lat []time.Duration) Latency {
	slices.Sort(lat)
	l := Latency{N: len(lat), P50: Percentile(lat, 50), P90: Percentile(lat, 90), P99: Percentile(lat, 99)}
	if len(lat) > 0 {
		l.Max = lat[len(lat)-1]
	}
	return l
}

func (l Latency) String() string {
	return fmt.Sprintf("p50 %s  p90 %s  p99 %s  max %s  (n=%d)", ms(l.P50), ms(l.P90), ms(l.P99), ms(l.Max), l.N)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond)) }

// ProcMem is a process's memory from /proc/PID/status.
type ProcMem struct {
	PID         int
	VmHWM       int64 // peak resident set, bytes
	VmRSS       int64 // current resident set, bytes
	Description string
}

// ReadProcMem reads VmHWM and VmRSS of pid (0 = this process) with
// prometheus/procfs.
func ReadProcMem(pid int) (ProcMem, error) {
	if pid < 0 {
		return ProcMem{}, fmt.Errorf("read memory of pid %d: not a process ID", pid)
	}
	if pid == 0 {
		pid = os.Getpid()
	}
	proc, err := procfs.NewProc(pid)
	if err != nil {
		return ProcMem{}, fmt.Errorf("read memory of pid %d: %w", pid, err)
	}
	st, err := proc.NewStatus()
	if err != nil {
		return ProcMem{}, fmt.Errorf("read memory of pid %d: %w", pid, err)
	}
	if st.VmRSS == 0 {
		return ProcMem{}, fmt.Errorf("read memory of pid %d: no VmRSS (a kernel thread?)", pid)
	}
	return ProcMem{PID: pid, VmHWM: int64(st.VmHWM), VmRSS: int64(st.VmRSS)}, nil
}
