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
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/salve-sre/salve/internal/app"
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
func NewRoot(stdout, stderr io.Writer) *cobra.Command {
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
	root.AddCommand(newDev(stdout, stderr), newVersion(stdout), newAudit(stdout, stderr), newIncident(stdout), newRunbook(stdout, stderr),
		newLaunch(stdout), newRuns(stdout, stderr), newApprovals(stdout), newApprove(stdout), newReject(stdout), newToken(stdout))
	return root
}

// Execute runs the CLI and returns the process exit code.
func Execute(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := NewRoot(stdout, stderr)
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		if errors.Is(err, errBrokenChain) || errors.Is(err, errInvalidRunbooks) {
			return 1 // the command printed what is broken
		}
		fmt.Fprintf(stderr, "salve: %v\n", err)
		if strings.Contains(err.Error(), "unknown command") || strings.Contains(err.Error(), "flag") {
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
	cfg := app.DevConfig{}
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
			return app.RunDev(cmd.Context(), cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.DataDir, "data-dir", ".salve", "directory for NATS and Temporal data and the webhook token")
	f.StringVar(&cfg.Listen, "listen", "127.0.0.1:8080", "HTTP address for the API and the Alertmanager webhook")
	f.StringVar(&cfg.WebhookToken, "webhook-token", "", "bearer token Alertmanager must send (default: generated once and kept in the data dir)")
	f.StringVar(&cfg.RunbooksDir, "runbooks", "runbooks", "directory of runbook YAML files")
	f.DurationVar(&cfg.RunbookReload, "runbook-reload", 2*time.Second, "how often to check the runbook directory for changes (invalid changes are rejected; 0 = never)")
	f.StringVar(&cfg.PrometheusURL, "prometheus-url", "", "Prometheus that prometheus.query and prometheus.assert steps use, e.g. http://prometheus:9090")
	f.StringVar(&cfg.Kubeconfig, "kubeconfig", "", "kubeconfig that kubernetes.* steps act with (development only: a standing credential, not per-step Vault ones)")
	f.StringVar(&cfg.Vault.Addr, "vault-addr", "", "Vault that issues per-step credentials, e.g. https://vault.internal:8200")
	f.StringVar(&cfg.Vault.Token, "vault-token", "", "Vault token for Salve (development; prefer SALVE_VAULT_TOKEN over the flag, or AppRole)")
	f.StringVar(&cfg.Vault.RoleID, "vault-role-id", "", "AppRole role ID Salve logs in with")
	f.StringVar(&cfg.Vault.SecretIDFile, "vault-secret-id-file", "", "file holding the AppRole secret ID")
	f.StringVar(&cfg.Vault.KubernetesRole, "vault-kubernetes-auth-role", "", "log in with Vault's Kubernetes auth method as this role (Salve running in a cluster)")
	f.StringVar(&cfg.Vault.CACertFile, "vault-cacert", "", "CA certificate that signs Vault's TLS certificate")
	f.StringVar(&cfg.VaultKubernetesMount, "vault-kubernetes-mount", "kubernetes", "mount of Vault's Kubernetes secrets engine")
	f.StringVar(&cfg.VaultKubernetesRole, "vault-kubernetes-role", "", "Vault role for kubernetes.* steps when a runbook names none (spec.credentials.kubernetes.vaultRole)")
	f.BoolVar(&cfg.WithKube, "with-kube", false, "start a local Kubernetes control plane with fake nodes (kwok) for kubernetes.* steps; needs scripts/kube-tools.sh once")
	f.StringVar(&cfg.AuditDB, "audit-db", "", "audit store: a SQLite file or a postgres:// URL (default: audit.db in the data dir)")
	f.StringVar(&cfg.ConfigFile, "config", "", "YAML file with API tokens (auth.tokens) and notification targets and hooks (notifications); without tokens, dev makes an admin token in the data dir")
	f.StringVar(&cfg.TLSCertFile, "tls-cert", "", "serve the API over HTTPS with this certificate (PEM), with --tls-key")
	f.StringVar(&cfg.TLSKeyFile, "tls-key", "", "private key (PEM) for --tls-cert")
	f.StringVar(&cfg.PublicURL, "public-url", "", "base URL people reach Salve at, for links in notifications (default: the listen address)")
	f.IntVar(&cfg.TemporalPort, "temporal-port", 7233, "embedded Temporal frontend port on 127.0.0.1 (-1 = any free port)")
	f.IntVar(&cfg.NATSPort, "nats-port", 4222, "embedded NATS port on 127.0.0.1 (-1 = any free port)")
	f.IntVar(&cfg.UIPort, "ui-port", 8233, "Temporal Web UI port on 127.0.0.1, no auth (-1 = any free port)")
	f.BoolVar(&ui, "ui", true, "serve the Temporal Web UI (--ui=false to turn it off)")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&logFormat, "log-format", "text", "text or json")
	cmd.PreRunE = func(*cobra.Command, []string) error { return envOverrides(f) }
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
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}
