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
	fs.Usage = func() {
		fmt.Fprint(os.Stderr, `Usage: salve-load storm [flags]

Runs a whole salve dev (embedded NATS and Temporal) in this process, sends an
alert storm (duplicates, flaps, resolutions) through the real webhook, waits
for every run to finish, and prints accepted alerts/s, runs started, alert to
first step p50/p99, drain time, peak RSS, and any mutating call repeated.
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
	rep, err := storm.Run(ctx, c)
	if rep != nil {
		rep.Print(os.Stdout)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "salve-load storm: %v\n", err)
		return 1
	}
	if rep.DuplicateActions > 0 || rep.RunsStarted != rep.Incidents {
		fmt.Fprintf(os.Stderr, "salve-load storm: want exactly one run per incident (%d) and no repeated action; got %d runs, %d repeated\n", rep.Incidents, rep.RunsStarted, rep.DuplicateActions)
		return 1
	}
	return 0
}
