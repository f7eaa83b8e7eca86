// Package cli is Salve's command line: one cobra command tree, built by
// NewRoot so tests can run commands in-process.
package cli

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

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/salve-sre/salve/internal/app"
	"github.com/salve-sre/salve/internal/tracing"
)

// Version is set at build time with -ldflags "-X github.com/salve-sre/salve/internal/cli.Version=v0.1.0".
var Version = "dev"

func version() string {
	v := Version
	if bi, ok := debug.ReadBuildInfo(); ok && v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = bi.Main.Version
	}
	return v
}

// NewRoot builds the command tree.
//
// Everything it prints goes through safeWriter, but audit export, whose
// CSV and JSON lines are data to be kept byte for byte.
func NewRoot(stdout, stderr io.Writer) *cobra.Command {
	raw := stdout
	stdout, stderr = safeWriter{stdout}, safeWriter{stderr}
	root := &cobra.Command{
		Use:   "salve",
		Short: "Salve turns alerts into safe, audited, automatic fixes",
		Long: `Salve receives Prometheus Alertmanager webhooks, stores every alert in NATS
JetStream, matches alerts to runbooks and runs each incident's runbook as one
durable Temporal workflow, with every action audited.

Start everything on this machine with:  salve dev`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version(),
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetVersionTemplate("salve {{.Version}} (" + runtime.Version() + ")\n")
	root.AddCommand(newDev(stdout, stderr), newServer(stdout, stderr), newWorker(stdout, stderr), newVersion(stdout), newAudit(stdout, stderr, raw), newIncident(stdout), newRunbook(stdout, stderr), newSLO(stdout, stderr),
		newLaunch(stdout), newRuns(stdout, stderr), newApprovals(stdout), newAlerts(stdout), newApprove(stdout), newReject(stdout), newToken(stdout))
	root.AddCommand(newBacktest(stdout, stderr))
	return root
}

// Execute runs the CLI and returns the process exit code.
func Execute(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := NewRoot(stdout, stderr)
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		if errors.Is(err, errBrokenChain) || errors.Is(err, errInvalidRunbooks) || errors.Is(err, errInvalidSLOs) {
			return 1 // the command printed what is broken
		}
		fmt.Fprintf(stderr, "salve: %v\n", err)
		var usage usageError
		if errors.As(err, &usage) || strings.Contains(err.Error(), "unknown command") || strings.Contains(err.Error(), "flag") {
			fmt.Fprintln(stderr, "Run 'salve --help' for usage.")
			return 2
		}
		return 1
	}
	return 0
}

func newVersion(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(stdout, "salve %s (%s %s/%s)\n", version(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
		},
	}
}

func newDev(stdout, stderr io.Writer) *cobra.Command {
	cfg := app.Config{}
	var logLevel, logFormat string
	ui := true
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run everything in one process: embedded NATS JetStream and Temporal, ingest, trigger, worker, API",
		Long: `Run Salve on this machine with no external services: an embedded NATS
JetStream server and an embedded Temporal server (SQLite) store their data under
--data-dir, next to Salve's ingest, trigger, worker and API roles. Runbooks are
loaded from --runbooks. Runs in flight resume after a restart.

Every flag can also be set with an environment variable: --data-dir is
SALVE_DATA_DIR, --webhook-token is SALVE_WEBHOOK_TOKEN, and so on.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(stderr, logLevel, logFormat)
			if err != nil {
				return err
			}
			cfg.Log = log
			cfg.Out = stdout
			cfg.Version = version()
			cfg.DisableUI = !ui
			if cfg.RunbookReload == 0 {
				cfg.RunbookReload = -1 // the flag's 0 means never
			}
			return app.Run(cmd.Context(), cfg)
		},
	}
	f := cmd.Flags()
	var secrets secretFiles
	commonFlags(f, &cfg, &secrets, &logLevel, &logFormat)
	f.IntVar(&cfg.TemporalPort, "temporal-port", 7233, "embedded Temporal frontend port on 127.0.0.1 (-1 = any free port)")
	f.IntVar(&cfg.NATSPort, "nats-port", 4222, "embedded NATS port on 127.0.0.1 (-1 = any free port)")
	f.IntVar(&cfg.UIPort, "ui-port", 8233, "Temporal Web UI port on 127.0.0.1, no auth (-1 = any free port)")
	f.BoolVar(&ui, "ui", true, "serve the Temporal Web UI (--ui=false to turn it off)")
	f.BoolVar(&cfg.WithKube, "with-kube", false, "start a local Kubernetes control plane with fake nodes (kwok) for kubernetes.* steps; needs scripts/kube-tools.sh once")
	f.BoolVar(&cfg.InfraOnly, "infra-only", false, "run only the embedded NATS JetStream and Temporal servers, for running 'salve server' and 'salve worker' as separate processes against them")
	cmd.PreRunE = func(*cobra.Command, []string) error { return flagsFromEnvAndFiles(f, secrets) }
	return cmd
}

// envOverrides applies SALVE_<FLAG> variables to flags not set on the
// command line: the command line wins, then the environment, then defaults.
func envOverrides(fs *pflag.FlagSet) error {
	var err error
	fs.VisitAll(func(fl *pflag.Flag) {
		if fl.Changed || err != nil {
			return
		}
		name := "SALVE_" + strings.ToUpper(strings.ReplaceAll(fl.Name, "-", "_"))
		if v, ok := os.LookupEnv(name); ok {
			if serr := fl.Value.Set(v); serr != nil {
				err = fmt.Errorf("%s=%q: %v", name, v, serr)
			}
		}
	})
	return err
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(tracing.LogHandler(slog.NewTextHandler(w, opts))), nil
	case "json":
		return slog.New(tracing.LogHandler(slog.NewJSONHandler(w, opts))), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}
