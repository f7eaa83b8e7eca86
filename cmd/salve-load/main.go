// Command salve-load generates Alertmanager webhook load against Salve's
// ingest path and prints throughput, latency and memory; see
// `salve-load --help`. The logic is in internal/loadgen.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/salve-sre/salve/internal/loadgen"
	"github.com/salve-sre/salve/internal/storm"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	var code int
	if len(os.Args) > 1 && os.Args[1] == "storm" {
		code = stormMain(ctx, os.Args[2:])
	} else {
		code = loadgen.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	}
	stop()
	os.Exit(code)
}

// stormMain runs `salve-load storm`: the whole pipeline under an alert storm.
func stormMain(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("salve-load storm", flag.ContinueOnError)
	c := storm.Config{}
	fs.IntVar(&c.Alerts, "alerts", 10000, "alert notifications to send")
	fs.IntVar(&c.Incidents, "incidents", 100, "distinct incidents they belong to")
	fs.IntVar(&c.Batch, "batch", 10, "alerts per webhook")
	fs.IntVar(&c.Senders, "senders", 8, "concurrent webhook senders")
	fs.DurationVar(&c.Timeout, "timeout", 10*time.Minute, "give up after this long")
	floorConc := fs.Int("floor-concurrency", 16, "concurrent starters for the raw Temporal floor (0 = skip the floor)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the storm (salve dev and the senders, not the floor) to this file")
	memProfile := fs.String("memprofile", "", "write an allocation profile taken after the storm to this file")
	fs.Usage = func() {
		fmt.Fprint(os.Stderr, `Usage: salve-load storm [flags]

Runs a whole salve dev (embedded NATS and Temporal) in this process, sends an
alert storm (duplicates, flaps, resolutions) through the real webhook, waits
for every run to finish, and prints accepted alerts/s, runs started, alert to
first step p50/p99, drain time, peak RSS, and any mutating call repeated.
Then, in the same run, it measures the raw floor: one-step workflows started
and completed per second on a fresh embedded Temporal alone (same SQLite
settings, --incidents workflows), and prints Salve's runs/s as a ratio of it.
Exit code 1 if a run repeated, an incident ran twice, or the storm did not drain.

`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	stopProfile, err := startCPUProfile(*cpuProfile)
	if err != nil {
		fmt.Fprintf(os.Stderr, "salve-load storm: %v\n", err)
		return 2
	}
	rep, err := storm.Run(ctx, c)
	stopProfile()
	if perr := writeHeapProfile(*memProfile); perr != nil {
		fmt.Fprintf(os.Stderr, "salve-load storm: %v\n", perr)
	}
	if rep != nil {
		rep.Print(os.Stdout)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "salve-load storm: %v\n", err)
		return 1
	}
	if *floorConc > 0 {
		fl, err := storm.MeasureFloor(ctx, rep.Incidents, *floorConc)
		if err != nil {
			fmt.Fprintf(os.Stderr, "salve-load storm: raw Temporal floor: %v\n", err)
			return 1
		}
		fmt.Printf("  raw floor       embedded Temporal alone: %d one-step workflows (%d starters) in %s: %.1f workflows/s (starts %.1f/s)\n",
			fl.Workflows, fl.Concurrency, fl.Took.Round(time.Millisecond), fl.PerSec, fl.StartsPerS)
		fmt.Printf("  ratio           Salve %.1f runs/s = %.2f x the raw floor\n", rep.RunsPerSec, rep.RunsPerSec/fl.PerSec)
	}
	if rep.DuplicateActions > 0 || rep.RunsStarted != rep.Incidents {
		fmt.Fprintf(os.Stderr, "salve-load storm: want exactly one run per incident (%d) and no repeated action; got %d runs, %d repeated\n", rep.Incidents, rep.RunsStarted, rep.DuplicateActions)
		return 1
	}
	return 0
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
