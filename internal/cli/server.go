package cli

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/salve-sre/salve/internal/app"
	"github.com/salve-sre/salve/internal/bus"
)

// commonFlags are the flags of every command that runs Salve's roles.
func commonFlags(f *pflag.FlagSet, cfg *app.Config, secrets *secretFiles, logLevel, logFormat *string) {
	f.StringVar(&cfg.DataDir, "data-dir", ".salve", "directory for NATS and Temporal data and the webhook token")
	f.StringVar(&cfg.Listen, "listen", "127.0.0.1:8080", "HTTP address for the API and the Alertmanager webhook")
	secrets.add(f, &cfg.WebhookToken, "webhook-token", "bearer token Alertmanager must send (default: generated once and kept in the data dir)")
	secrets.add(f, &cfg.RunbookKey, "runbook-key", "key (at least 32 bytes) that signs the runbook snapshot of every run; workers refuse unsigned ones (default: generated once and kept in NATS, bucket SALVE_KEYS)")
	f.StringVar(&cfg.RunbooksDir, "runbooks", "runbooks", "directory of runbook YAML files")
	f.DurationVar(&cfg.RunbookReload, "runbook-reload", 2*time.Second, "how often to check the runbook directory for changes (invalid changes are rejected; 0 = never)")
	f.StringVar(&cfg.PrometheusURL, "prometheus-url", "", "Prometheus that prometheus.query and prometheus.assert steps use and SLO burn rates (runbooks' spec.slo) are read from, e.g. http://prometheus:9090")
	f.StringVar(&cfg.Kubeconfig, "kubeconfig", "", "kubeconfig that kubernetes.* steps act with (development only: a standing credential, not per-step Vault ones)")
	f.StringVar(&cfg.Vault.Addr, "vault-addr", "", "Vault that issues per-step credentials, e.g. https://vault.internal:8200")
	secrets.add(f, &cfg.Vault.Token, "vault-token", "Vault token for Salve (development; prefer --vault-token-file or AppRole)")
	f.StringVar(&cfg.Vault.RoleID, "vault-role-id", "", "AppRole role ID Salve logs in with")
	f.StringVar(&cfg.Vault.SecretIDFile, "vault-secret-id-file", "", "file holding the AppRole secret ID")
	f.StringVar(&cfg.Vault.KubernetesRole, "vault-kubernetes-auth-role", "", "log in with Vault's Kubernetes auth method as this role (Salve running in a cluster)")
	f.StringVar(&cfg.Vault.CACertFile, "vault-cacert", "", "CA certificate that signs Vault's TLS certificate")
	f.StringVar(&cfg.VaultKubernetesMount, "vault-kubernetes-mount", "kubernetes", "mount of Vault's Kubernetes secrets engine")
	f.StringVar(&cfg.VaultKubernetesRole, "vault-kubernetes-role", "", "Vault role for kubernetes.* steps when a runbook names none (spec.credentials.kubernetes.vaultRole)")
	secrets.add(f, &cfg.AuditDB, "audit-db", "audit store: a SQLite file or a postgres:// URL (default: audit.db in the data dir); a URL with a password belongs in --audit-db-file")
	f.StringVar(&cfg.ConfigFile, "config", "", "YAML file with API tokens (auth.tokens) and notification targets and hooks (notifications); without tokens, dev makes an admin token in the data dir")
	f.StringVar(&cfg.TLSCertFile, "tls-cert", "", "serve the API over HTTPS with this certificate (PEM), with --tls-key")
	f.StringVar(&cfg.TLSKeyFile, "tls-key", "", "private key (PEM) for --tls-cert")
	f.StringVar(&cfg.PublicURL, "public-url", "", "base URL people reach Salve at, for links in notifications (default: the listen address)")
	f.StringVar(&cfg.TraceURL, "trace-url", "", "link template for a run's trace, with {traceId}, e.g. http://localhost:16686/trace/{traceId} (Jaeger); tracing itself is turned on by the OTEL_* variables")
	f.Int64Var(&cfg.AlertsMaxBytes, "alerts-max-bytes", bus.DefaultMaxBytes, "size limit of the ALERTS stream in bytes; when full the webhook answers 503 until old alerts age out")
	f.Int64Var(&cfg.AuditMaxBytes, "audit-max-bytes", bus.DefaultMaxBytes, "size limit of the AUDIT stream in bytes; when full the webhook answers 503 until the recorder catches up")
	f.DurationVar(&cfg.AuditKeepRecorded, "audit-keep-recorded", 24*time.Hour, "how long recorded events stay in the AUDIT stream after the audit store has them (0 = for ever)")
	f.StringVar(logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(logFormat, "log-format", "text", "text or json")

}

// externalFlags name the external NATS and Temporal a production role
// connects to.
func externalFlags(f *pflag.FlagSet, cfg *app.Config) {
	f.StringVar(&cfg.NATSURL, "nats-url", "", "NATS server(s) with JetStream, e.g. nats://nats-0:4222,nats://nats-1:4222 (required)")
	f.StringVar(&cfg.NATS.CredsFile, "nats-creds", "", "NATS credentials file (JWT and NKey) Salve connects with")
	f.StringVar(&cfg.NATS.CAFile, "nats-ca", "", "CA certificate of the NATS servers' TLS certificates")
	f.StringVar(&cfg.NATS.CertFile, "nats-tls-cert", "", "client certificate for NATS mTLS, with --nats-tls-key")
	f.StringVar(&cfg.NATS.KeyFile, "nats-tls-key", "", "client key for NATS mTLS")
	f.StringVar(&cfg.TemporalAddr, "temporal-address", "", "Temporal frontend host:port (required)")
	f.StringVar(&cfg.TemporalNamespace, "temporal-namespace", "default", "Temporal namespace of Salve's runs")
	f.StringVar(&cfg.Temporal.CAFile, "temporal-ca", "", "CA certificate of the Temporal frontend's TLS certificate (turns TLS on)")
	f.StringVar(&cfg.Temporal.CertFile, "temporal-tls-cert", "", "client certificate for Temporal mTLS")
	f.StringVar(&cfg.Temporal.KeyFile, "temporal-tls-key", "", "client key for Temporal mTLS")
	f.StringVar(&cfg.Temporal.ServerName, "temporal-server-name", "", "name to check in the Temporal frontend's certificate (default: the host of --temporal-address)")
	f.IntVar(&cfg.StreamReplicas, "stream-replicas", 1, "replicas of Salve's JetStream streams and buckets, created or updated at start (3 on a 3-node NATS cluster)")
	f.DurationVar(&cfg.AlertsMaxAge, "alerts-max-age", 7*24*time.Hour, "how long the ALERTS stream keeps accepted alerts")
}

// flagsFromEnvAndFiles applies SALVE_* variables, then reads the secret
// files given.
func flagsFromEnvAndFiles(f *pflag.FlagSet, secrets secretFiles) error {
	if err := envOverrides(f); err != nil {
		return err
	}
	return secrets.resolve()
}

func runRoles(cmd *cobra.Command, cfg app.Config, stdout, stderr io.Writer, logLevel, logFormat string) error {
	if cfg.NATSURL == "" || cfg.TemporalAddr == "" {
		return fmt.Errorf("--nats-url and --temporal-address are required (flags or SALVE_NATS_URL and SALVE_TEMPORAL_ADDRESS); for a local try, start them with: salve dev --infra-only")
	}
	if err := cfg.NATS.Check(); err != nil {
		return usageError{err}
	}
	log, err := newLogger(stderr, logLevel, logFormat)
	if err != nil {
		return err
	}
	cfg.Log, cfg.Out, cfg.Version, cfg.Production = log, stdout, version(), true
	if cfg.RunbookReload == 0 {
		cfg.RunbookReload = -1
	}
	return app.Run(cmd.Context(), cfg)
}

func newServer(stdout, stderr io.Writer) *cobra.Command {
	cfg := app.Config{}
	var logLevel, logFormat, roles string
	cmd := &cobra.Command{
		Use:   "server --roles ingest,trigger,api",
		Short: "Run Salve's ingest, trigger and API roles against external NATS and Temporal",
		Long: `Run some of Salve's roles in production, against an external NATS JetStream
cluster and Temporal cluster:

  ingest   the Alertmanager webhook: stores each alert in JetStream, then answers
  trigger  matches stored alerts to runbooks and starts or joins each incident's run
  api      the API, the web dashboard and the audit recorder

Run several replicas of each: ingest and api are stateless behind a load
balancer, triggers share one durable JetStream consumer, and the safety state
(cooldowns, limits, breakers) is in a JetStream key-value bucket. With more than
one api replica, the audit store must be PostgreSQL (--audit-db postgres://...).
Runs execute in 'salve worker' processes.

Every flag can also be set with an environment variable: --nats-url is
SALVE_NATS_URL, --roles is SALVE_ROLES, and so on.`,
		Example: `  salve server --roles ingest,trigger,api --nats-url nats://nats:4222 \
      --temporal-address temporal-frontend:7233 --config /etc/salve/salve.yaml \
      --audit-db postgres://salve@postgres/salve --runbooks /etc/salve/runbooks`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := app.ParseRoles(roles)
			if err != nil {
				return fmt.Errorf("--roles: %w", err)
			}
			if r.Worker {
				return fmt.Errorf("--roles: run the worker role with 'salve worker'")
			}
			cfg.Roles = r
			return runRoles(cmd, cfg, stdout, stderr, logLevel, logFormat)
		},
	}
	f := cmd.Flags()
	f.StringVar(&roles, "roles", "ingest,trigger,api", "roles to run: a comma-separated list of ingest, trigger, api")
	var secrets secretFiles
	commonFlags(f, &cfg, &secrets, &logLevel, &logFormat)
	externalFlags(f, &cfg)
	cmd.PreRunE = func(*cobra.Command, []string) error { return flagsFromEnvAndFiles(f, secrets) }
	return cmd
}

func newWorker(stdout, stderr io.Writer) *cobra.Command {
	cfg := app.Config{Roles: app.Roles{Worker: true}}
	var logLevel, logFormat string
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Run Salve's worker: the runbook workflows and their steps, against external Temporal",
		Long: `Run the worker role: it polls Temporal for runbook runs and executes their
steps, with per-step credentials from Vault. Run several for capacity and
availability; a run whose worker dies resumes on another at the step it was in.

Every flag can also be set with an environment variable (SALVE_TEMPORAL_ADDRESS,
SALVE_VAULT_ADDR, ...).`,
		Example: `  salve worker --nats-url nats://nats:4222 --temporal-address temporal-frontend:7233 \
      --vault-addr https://vault:8200 --vault-kubernetes-auth-role salve-worker`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runRoles(cmd, cfg, stdout, stderr, logLevel, logFormat)
		},
	}
	f := cmd.Flags()
	var secrets secretFiles
	commonFlags(f, &cfg, &secrets, &logLevel, &logFormat)
	externalFlags(f, &cfg)
	cmd.PreRunE = func(*cobra.Command, []string) error { return flagsFromEnvAndFiles(f, secrets) }
	return cmd
}
