package loadgen

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/salve-sre/salve/triggers"
)

const usage = `salve-load generates Alertmanager webhook load against Salve's ingest path
and prints the figures DESIGN §6 measures Salve by. It only loads loopback
targets and always stops by itself (--alerts and --duration bound a run).

Usage:
  salve-load ingest [flags]     post webhooks and report throughput and latency
  salve-load storm [flags]      run the whole pipeline under an alert storm, with the raw Temporal floor
  salve-load version            print the version

Examples:
  salve-load ingest --url http://127.0.0.1:8080 --token-file .salve/webhook-token --pid $(pgrep -n salve)
  salve-load ingest --embedded --senders 8 --alerts 20000
  salve-load ingest --url http://127.0.0.1:8080 --token T --alerts 10000 --dup-ratio 0.2 --incidents 100
  salve-load storm --alerts 10000 --incidents 100
  salve-load storm --alerts 2000 --incidents 2000

Run 'salve-load ingest --help' for the flags.
`

const ingestUsage = `Usage: salve-load ingest [flags]

Posts Alertmanager v4 webhooks to POST /v1/alertmanager from --senders
concurrent senders until --alerts alerts are sent or --duration passes,
prints a progress line every second on stderr and a report on stdout.
Exit status 1 if any webhook failed (non-2xx or no answer).

With --embedded it starts its own NATS JetStream (temporary file store) and
the real ingest handler in this process, runs the same load, checks that
the ALERTS stream holds every distinct alert state once, then
measures raw JetStream publish/s on the same server with the same
concurrency and prints the ratio ingest/raw.

Flags:
`

// Main runs salve-load with args (without the program name) and returns
// the exit status: 0 success, 1 failed webhooks or run error, 2 usage.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	top := flag.NewFlagSet("salve-load", flag.ContinueOnError)
	top.SetOutput(stderr)
	showVersion := top.Bool("version", false, "print the version and exit")
	top.Usage = func() { fmt.Fprint(stderr, usage) }
	if err := top.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *showVersion {
		printVersion(stdout)
		return 0
	}
	rest := top.Args()
	if len(rest) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch rest[0] {
	case "ingest":
		return ingestMain(ctx, rest[1:], stdout, stderr)
	case "version":
		printVersion(stdout)
		return 0
	case "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "salve-load: unknown command %q\nRun 'salve-load --help' for usage.\n", rest[0])
		return 2
	}
}

func printVersion(w io.Writer) {
	v := Version
	if bi, ok := debug.ReadBuildInfo(); ok && v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = bi.Main.Version
	}
	fmt.Fprintf(w, "salve-load %s (%s %s/%s)\n", v, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

func ingestMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("salve-load ingest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, ingestUsage)
		fs.PrintDefaults()
	}
	var c Config
	var tokenFile string
	var embedded, quiet bool
	fs.StringVar(&c.URL, "url", "http://127.0.0.1:8080", "Salve base URL or full webhook URL (loopback only)")
	fs.StringVar(&c.Token, "token", "", "webhook bearer token (default $SALVE_WEBHOOK_TOKEN)")
	fs.StringVar(&tokenFile, "token-file", "", "read the webhook token from this file (salve dev keeps it in .salve/webhook-token)")
	fs.IntVar(&c.Senders, "senders", 8, fmt.Sprintf("concurrent senders (1..%d)", MaxSenders))
	fs.IntVar(&c.Alerts, "alerts", 20000, fmt.Sprintf("alerts to send in total, duplicates included (1..%d)", MaxAlerts))
	fs.IntVar(&c.PerWebhook, "per-webhook", 1, fmt.Sprintf("alerts per webhook (1..%d)", triggers.MaxAlertsPerWebhook))
	fs.DurationVar(&c.Duration, "duration", DefaultDuration, fmt.Sprintf("stop sending after this long even if not every alert was sent (at most %s)", MaxDuration))
	fs.Float64Var(&c.DupRatio, "dup-ratio", 0, "share of alerts that repeat an already generated alert state (Alertmanager retries, HA pairs), in [0, 1)")
	fs.IntVar(&c.Incidents, "incidents", 0, "draw every alert from this many fingerprints, each flapping firing/resolved (the storm scenario); 0 = every alert is new")
	fs.StringVar(&c.Alertname, "alertname", "SalveLoad", "alertname label of the generated alerts (match it in a runbook to load the trigger path too)")
	fs.IntVar(&c.PID, "pid", 0, "report VmHWM and VmRSS of this process (the Salve under test) from /proc/PID/status")
	fs.Uint64Var(&c.Seed, "seed", 0, "random seed of the duplicate choice (0 = random); fingerprints always differ per run")
	fs.DurationVar(&c.RequestTimeout, "timeout", 30*time.Second, "timeout of one webhook request")
	fs.BoolVar(&embedded, "embedded", false, "start an embedded NATS JetStream and ingest handler, and also measure the raw JetStream publish floor")
	fs.BoolVar(&quiet, "quiet", false, "no progress lines on stderr")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "salve-load ingest: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if err := c.validateLoad(); err != nil {
		fmt.Fprintf(stderr, "salve-load ingest: %v\n", err)
		return 2
	}
	if !quiet {
		c.Progress = stderr
	}
	var rep *Report
	var err error
	if embedded {
		if c.PID != 0 {
			fmt.Fprintln(stderr, "salve-load ingest: --pid does not apply to --embedded (this process's memory is reported)")
			return 2
		}
		rep, err = RunEmbedded(ctx, c, slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	} else {
		if c.Token == "" && tokenFile != "" {
			b, rerr := os.ReadFile(tokenFile)
			if rerr != nil {
				fmt.Fprintf(stderr, "salve-load ingest: %v\n", rerr)
				return 2
			}
			c.Token = strings.TrimSpace(string(b))
		}
		if c.Token == "" {
			c.Token = os.Getenv("SALVE_WEBHOOK_TOKEN")
		}
		rep, err = Run(ctx, c)
	}
	if err != nil {
		fmt.Fprintf(stderr, "salve-load ingest: %v\n", err)
		return 1
	}
	rep.Print(stdout)
	if rep.Failed() || rep.Lost() || (rep.Raw != nil && rep.Raw.Failed > 0) {
		return 1
	}
	return 0
}
