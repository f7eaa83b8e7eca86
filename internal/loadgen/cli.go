package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/salve-sre/salve/triggers"
	"github.com/spf13/cobra"
)

const long = `salve-load generates Alertmanager webhook load against Salve's ingest path
and prints the figures DESIGN §6 measures Salve by. It only loads loopback
targets and always stops by itself (--alerts and --duration bound a run).`

const examples = `  salve-load ingest --url http://127.0.0.1:8080 --token-file .salve/webhook-token --pid $(pgrep -n salve)
  salve-load ingest --embedded --senders 8 --alerts 20000
  salve-load ingest --url http://127.0.0.1:8080 --token T --alerts 10000 --dup-ratio 0.2 --incidents 100
  salve-load storm --alerts 10000 --incidents 100
  salve-load storm --alerts 2000 --incidents 2000`

const ingestLong = `Posts Alertmanager v4 webhooks to POST /v1/alertmanager from --senders
concurrent senders until --alerts alerts are sent or --duration passes,
prints a progress line every second on stderr and a report on stdout.
Exit status 1 if any webhook failed (non-2xx or no answer).

With --embedded it starts its own NATS JetStream (temporary file store) and
the real ingest handler in this process, runs the same load, checks that
the ALERTS stream holds every distinct alert state once, then
measures raw JetStream publish/s on the same server with the same
concurrency and prints the ratio ingest/raw.`

// ExitStatus is an error that ends salve-load with this status, after the
// command printed what it had to say.
type ExitStatus int

func (e ExitStatus) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// UsageError is a mistake in how salve-load was called: exit status 2.
type UsageError struct{ Err error }

func (e UsageError) Error() string { return e.Err.Error() }
func (e UsageError) Unwrap() error { return e.Err }

// NewRoot builds salve-load's command tree (the same CLI library as
// salve's): ingest and version, and the commands given (cmd/salve-load
// adds storm, which links the embedded Temporal server).
func NewRoot(stdout, stderr io.Writer, more ...*cobra.Command) *cobra.Command {
	root := &cobra.Command{
		Use:           "salve-load",
		Short:         "Load Salve's alert path and print what it measures, next to the raw floor",
		Long:          long,
		Example:       examples,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version(),
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetVersionTemplate("salve-load {{.Version}} (" + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + ")\n")
	root.AddCommand(newIngest(stdout, stderr), &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run:   func(*cobra.Command, []string) { printVersion(stdout) },
	})
	root.AddCommand(more...)
	return root
}

// Execute runs root with args and returns the exit status: 0 success, 1
// a failed run (failed webhooks, an error), 2 a usage mistake.
func Execute(ctx context.Context, root *cobra.Command, args []string, stderr io.Writer) int {
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	var status ExitStatus
	var usage UsageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &status):
		return int(status)
	case errors.As(err, &usage), strings.Contains(err.Error(), "unknown command"), strings.Contains(err.Error(), "flag"):
		fmt.Fprintf(stderr, "salve-load: %v\nRun 'salve-load --help' for usage.\n", err)
		return 2
	}
	fmt.Fprintf(stderr, "salve-load: %v\n", err)
	return 1
}

// Main runs salve-load's ingest and version commands with args (without
// the program name) and returns the exit status.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return Execute(ctx, NewRoot(stdout, stderr), args, stderr)
}

func version() string {
	v := Version
	if bi, ok := debug.ReadBuildInfo(); ok && v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = bi.Main.Version
	}
	return v
}

func printVersion(w io.Writer) {
	fmt.Fprintf(w, "salve-load %s (%s %s/%s)\n", version(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

func newIngest(stdout, stderr io.Writer) *cobra.Command {
	var c Config
	var tokenFile string
	var embedded, quiet bool
	var tracingFlag string
	cmd := &cobra.Command{
		Use:   "ingest",
		Short: "Post webhooks and report throughput and latency",
		Long:  ingestLong,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := c.validateLoad(); err != nil {
				return UsageError{err}
			}
			if !quiet {
				c.Progress = stderr
			}
			var rep *Report
			var err error
			if tracingFlag != "off" && !embedded {
				return UsageError{errors.New("--tracing applies to --embedded only (a running Salve traces as its own OTEL_* variables say)")}
			}
			if embedded {
				if c.PID != 0 {
					return UsageError{errors.New("--pid does not apply to --embedded (this process's memory is reported)")}
				}
				modes, merr := TracingModes(tracingFlag)
				if merr != nil {
					return UsageError{merr}
				}
				var reps []*Report
				for _, on := range modes {
					c.Tracing = on
					rep, err = RunEmbedded(cmd.Context(), c, slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
					if err != nil {
						return fmt.Errorf("ingest: %w", err)
					}
					if len(modes) > 1 {
						fmt.Fprintf(stdout, "tracing %s\n", map[bool]string{false: "off", true: "on (spans exported over OTLP)"}[on])
						rep.Print(stdout)
						if rep.Failed() || rep.Lost() || (rep.Raw != nil && rep.Raw.Failed > 0) {
							return ExitStatus(1)
						}
					}
					reps = append(reps, rep)
				}
				if len(reps) == 2 {
					off, on := reps[0], reps[1]
					fmt.Fprintln(stdout, "tracing overhead (same run, same machine)")
					PrintOverhead(stdout, "ingest", off.AlertsPerSec(), on.AlertsPerSec(), "alerts/s")
					PrintOverhead(stdout, "webhook p50", Millis(off.Latency.P50), Millis(on.Latency.P50), "ms")
					PrintOverhead(stdout, "webhook p99", Millis(off.Latency.P99), Millis(on.Latency.P99), "ms")
					if off.Raw != nil && on.Raw != nil {
						fmt.Fprintf(stdout, "  %-15s off %.2f x raw publish, on %.2f x raw publish\n", "ratio to floor", off.AlertsPerSec()/off.Raw.MsgsPerSec(), on.AlertsPerSec()/on.Raw.MsgsPerSec())
					}
					return nil
				}
			} else {
				if c.Token == "" && tokenFile != "" {
					b, rerr := os.ReadFile(tokenFile)
					if rerr != nil {
						return UsageError{rerr}
					}
					c.Token = strings.TrimSpace(string(b))
				}
				if c.Token == "" {
					c.Token = os.Getenv("SALVE_WEBHOOK_TOKEN")
				}
				rep, err = Run(cmd.Context(), c)
			}
			if err != nil {
				return fmt.Errorf("ingest: %w", err)
			}
			rep.Print(stdout)
			if rep.Failed() || rep.Lost() || (rep.Raw != nil && rep.Raw.Failed > 0) {
				return ExitStatus(1)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&c.URL, "url", "http://127.0.0.1:8080", "Salve base URL or full webhook URL (loopback only)")
	f.StringVar(&c.Token, "token", "", "webhook bearer token (default $SALVE_WEBHOOK_TOKEN)")
	f.StringVar(&tokenFile, "token-file", "", "read the webhook token from this file (salve dev keeps it in .salve/webhook-token)")
	f.IntVar(&c.Senders, "senders", 8, fmt.Sprintf("concurrent senders (1..%d)", MaxSenders))
	f.IntVar(&c.Alerts, "alerts", 20000, fmt.Sprintf("alerts to send in total, duplicates included (1..%d)", MaxAlerts))
	f.IntVar(&c.PerWebhook, "per-webhook", 1, fmt.Sprintf("alerts per webhook (1..%d)", triggers.MaxAlertsPerWebhook))
	f.DurationVar(&c.Duration, "duration", DefaultDuration, fmt.Sprintf("stop sending after this long even if not every alert was sent (at most %s)", MaxDuration))
	f.Float64Var(&c.DupRatio, "dup-ratio", 0, "share of alerts that repeat an already generated alert state (Alertmanager retries, HA pairs), in [0, 1)")
	f.IntVar(&c.Incidents, "incidents", 0, "draw every alert from this many fingerprints, each flapping firing/resolved (the storm scenario); 0 = every alert is new")
	f.StringVar(&c.Alertname, "alertname", "SalveLoad", "alertname label of the generated alerts (match it in a runbook to load the trigger path too)")
	f.IntVar(&c.PID, "pid", 0, "report VmHWM and VmRSS of this process (the Salve under test)")
	f.Uint64Var(&c.Seed, "seed", 0, "random seed of the duplicate choice (0 = random); fingerprints always differ per run")
	f.DurationVar(&c.RequestTimeout, "timeout", 30*time.Second, "timeout of one webhook request")
	f.BoolVar(&embedded, "embedded", false, "start an embedded NATS JetStream and ingest handler, and also measure the raw JetStream publish floor")
	f.BoolVar(&quiet, "quiet", false, "no progress lines on stderr")
	f.StringVar(&tracingFlag, "tracing", "off", "with --embedded: off, on, or both (off, then on, in this run, with the overhead); on exports spans to the OTLP endpoint the OTEL_* variables name")
	return cmd
}
