// Command salve-load generates Alertmanager webhook load against Salve's
// ingest path and prints throughput, latency and memory; see
// `salve-load --help`. The logic is in internal/loadgen.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/salve-sre/salve/internal/loadgen"
	"github.com/salve-sre/salve/internal/storm"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	root := loadgen.NewRoot(os.Stdout, os.Stderr, newStorm())
	code := loadgen.Execute(ctx, root, os.Args[1:], os.Stderr)
	stop()
	os.Exit(code)
}

// newStorm is `salve-load storm`: the whole pipeline under an alert storm.
func newStorm() *cobra.Command {
	c := storm.Config{}
	var floorConc int
	var cpuProfile, memProfile, tracingFlag string
	cmd := &cobra.Command{
		Use:   "storm",
		Short: "Run the whole pipeline under an alert storm, with the raw Temporal floor",
		Long: `Runs a whole salve dev (embedded NATS and Temporal) in this process, sends an
alert storm (duplicates, flaps, resolutions) through the real webhook, waits
for every run to finish, and prints accepted alerts/s, runs started, alert to
first step p50/p99, drain time, peak RSS, and any mutating call repeated.
Then, in the same run, it measures the raw floor: one-step workflows started
and completed per second on a fresh embedded Temporal alone (same SQLite
settings, --incidents workflows), and prints Salve's runs/s as a ratio of it.
Exit status 1 if a run repeated, an incident ran twice, or the storm did not drain.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			modes, err := loadgen.TracingModes(tracingFlag)
			if err != nil {
				return loadgen.UsageError{Err: err}
			}
			stopProfile, err := startCPUProfile(cpuProfile)
			if err != nil {
				return loadgen.UsageError{Err: err}
			}
			var reps []*storm.Report
			var rep *storm.Report
			for _, on := range modes {
				c.Getenv = loadgen.TracingGetenv(on)
				rep, err = storm.Run(cmd.Context(), c)
				if len(modes) > 1 {
					fmt.Fprintf(out, "tracing %s\n", map[bool]string{false: "off", true: "on (spans exported over OTLP)"}[on])
				}
				if rep != nil {
					rep.Print(out)
				}
				if err != nil {
					break
				}
				reps = append(reps, rep)
			}
			stopProfile()
			if perr := writeHeapProfile(memProfile); perr != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "salve-load storm: %v\n", perr)
			}
			if err != nil {
				return fmt.Errorf("storm: %w", err)
			}
			if len(reps) == 2 {
				off, on := reps[0], reps[1]
				fmt.Fprintln(out, "tracing overhead (same run, same machine)")
				loadgen.PrintOverhead(out, "ingest", off.AcceptedPerSec, on.AcceptedPerSec, "alerts/s")
				loadgen.PrintOverhead(out, "runs", off.RunsPerSec, on.RunsPerSec, "runs/s")
				loadgen.PrintOverhead(out, "alert->step p50", loadgen.Millis(off.FirstStepP50), loadgen.Millis(on.FirstStepP50), "ms")
				loadgen.PrintOverhead(out, "alert->step p99", loadgen.Millis(off.FirstStepP99), loadgen.Millis(on.FirstStepP99), "ms")
				loadgen.PrintOverhead(out, "drain", loadgen.Millis(off.Drain), loadgen.Millis(on.Drain), "ms")
				loadgen.PrintOverhead(out, "peak RSS", off.PeakRSSMiB, on.PeakRSSMiB, "MiB")
			}
			if floorConc > 0 {
				fl, err := storm.MeasureFloor(cmd.Context(), rep.Incidents, floorConc)
				if err != nil {
					return fmt.Errorf("storm: raw Temporal floor: %w", err)
				}
				fmt.Fprintf(out, "  raw floor       embedded Temporal alone: %d one-step workflows (%d starters) in %s: %.1f workflows/s (starts %.1f/s)\n",
					fl.Workflows, fl.Concurrency, fl.Took.Round(time.Millisecond), fl.PerSec, fl.StartsPerS)
				for i, r := range reps {
					label := ""
					if len(reps) > 1 {
						label = map[bool]string{false: " (tracing off)", true: " (tracing on)"}[modes[i]]
					}
					fmt.Fprintf(out, "  ratio           Salve%s %.1f runs/s = %.2f x the raw floor\n", label, r.RunsPerSec, r.RunsPerSec/fl.PerSec)
				}
			}
			for _, r := range reps {
				if r.DuplicateActions > 0 || r.RunsStarted != r.Incidents {
					return fmt.Errorf("storm: want exactly one run per incident (%d) and no repeated action; got %d runs, %d repeated", r.Incidents, r.RunsStarted, r.DuplicateActions)
				}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&c.Alerts, "alerts", 10000, "alert notifications to send")
	f.IntVar(&c.Incidents, "incidents", 100, "distinct incidents they belong to")
	f.IntVar(&c.Batch, "batch", 10, "alerts per webhook")
	f.IntVar(&c.Senders, "senders", 8, "concurrent webhook senders")
	f.DurationVar(&c.Timeout, "timeout", 10*time.Minute, "give up after this long")
	f.IntVar(&floorConc, "floor-concurrency", 16, "concurrent starters for the raw Temporal floor (0 = skip the floor)")
	f.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the storm (salve dev and the senders, not the floor) to this file")
	f.StringVar(&memProfile, "memprofile", "", "write an allocation profile taken after the storm to this file")
	f.StringVar(&tracingFlag, "tracing", "off", "off, on, or both (off, then on, in this run, with the overhead); on exports spans to the OTLP endpoint the OTEL_* variables name")
	return cmd
}

// startCPUProfile starts a CPU profile into path ("" = none) and returns
// the function that stops it.
func startCPUProfile(path string) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// writeHeapProfile writes the allocation profile ("allocs": every
// allocation since start, and what is still live) to path ("" = none).
func writeHeapProfile(path string) error {
	if path == "" {
		return nil
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("memory profile: %w", err)
	}
	defer f.Close()
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		return fmt.Errorf("memory profile: %w", err)
	}
	return nil
}
