package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"go.temporal.io/sdk/client"

	"github.com/salve-sre/salve/internal/devnats"
	"github.com/salve-sre/salve/internal/devstack"
	"github.com/salve-sre/salve/internal/httpjson"
	"github.com/salve-sre/salve/triggers"
)

// Roles are the parts of Salve one process runs. `salve dev` runs them
// all; in production `salve server --roles ingest,trigger,api` and
// `salve worker` run them apart, each scaled on its own.
type Roles struct {
	Ingest  bool // the Alertmanager webhook: stores alerts in JetStream
	Trigger bool // matches stored alerts to runbooks, starts or joins runs
	API     bool // the API, dashboard and audit recorder
	Worker  bool // runs the workflows and their steps
}

// AllRoles is everything in one process.
var AllRoles = Roles{Ingest: true, Trigger: true, API: true, Worker: true}

// RoleNames lists the role names `--roles` takes.
var RoleNames = []string{"ingest", "trigger", "api", "worker"}

// ParseRoles reads a comma-separated role list.
func ParseRoles(s string) (Roles, error) {
	var r Roles
	for _, name := range strings.Split(s, ",") {
		switch strings.TrimSpace(name) {
		case "ingest":
			r.Ingest = true
		case "trigger":
			r.Trigger = true
		case "api":
			r.API = true
		case "worker":
			r.Worker = true
		case "":
		default:
			return r, fmt.Errorf("unknown role %q: want a comma-separated list of %s", name, strings.Join(RoleNames, ", "))
		}
	}
	if r.none() {
		return r, fmt.Errorf("no role given: want a comma-separated list of %s", strings.Join(RoleNames, ", "))
	}
	return r, nil
}

func (r Roles) none() bool { return r == Roles{} }

// HTTP reports whether the roles serve HTTP.
func (r Roles) HTTP() bool { return r.Ingest || r.API }

func (r Roles) String() string {
	var names []string
	for i, on := range []bool{r.Ingest, r.Trigger, r.API, r.Worker} {
		if on {
			names = append(names, RoleNames[i])
		}
	}
	return strings.Join(names, "+")
}

// NATSClientConfig is how Salve authenticates to an external NATS.
type NATSClientConfig struct {
	CredsFile string // a NATS .creds file (JWT + NKey)
	CAFile    string // CA certificate of NATS's TLS certificate
	// CertFile and KeyFile are Salve's client certificate for NATS mTLS.
	CertFile, KeyFile string
}

// Check says what is wrong with c, or nil.
func (c NATSClientConfig) Check() error {
	if (c.CertFile == "") != (c.KeyFile == "") {
		return errors.New("--nats-tls-cert and --nats-tls-key go together: give both for NATS mTLS, or neither")
	}
	return nil
}

// Options are the nats.Connect options of c.
func (c NATSClientConfig) Options() []nats.Option {
	var o []nats.Option
	if c.CredsFile != "" {
		o = append(o, nats.UserCredentials(c.CredsFile))
	}
	if c.CAFile != "" {
		o = append(o, nats.RootCAs(c.CAFile))
	}
	if c.CertFile != "" || c.KeyFile != "" {
		o = append(o, nats.ClientCert(c.CertFile, c.KeyFile))
	}
	return o
}

// TemporalTLSConfig is how Salve reaches an external Temporal over TLS.
type TemporalTLSConfig struct {
	CAFile     string // CA of the frontend's certificate (enables TLS)
	CertFile   string // client certificate for mTLS
	KeyFile    string
	ServerName string // overrides the name checked in the certificate
}

func (c TemporalTLSConfig) apply(o *client.Options) error {
	if c.CAFile == "" && c.CertFile == "" {
		return nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return fmt.Errorf("temporal CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("temporal CA %s: no PEM certificate in it", c.CAFile)
		}
		tc.RootCAs = pool
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return errors.New("temporal mTLS needs both a client certificate and its key")
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return fmt.Errorf("temporal client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	o.ConnectionOptions.TLS = tc
	return nil
}

// startServers starts embedded NATS and Temporal for whatever the config
// does not name an external server for.
func (d *Process) startServers(ctx context.Context, cfg Config) (natsURL, temporalAddr, namespace string, err error) {
	log := d.log
	natsURL, temporalAddr, namespace = cfg.NATSURL, cfg.TemporalAddr, cfg.TemporalNamespace
	if namespace == "" {
		namespace = "default"
	}
	if natsURL == "" {
		ns, err := devnats.Start(devnats.Options{StoreDir: filepath.Join(cfg.DataDir, "nats"), Port: freeOr(cfg.NATSPort)})
		if err != nil {
			return "", "", "", fmt.Errorf("start embedded NATS (use --nats-port to pick another port): %w", err)
		}
		d.closers = append(d.closers, ns.Stop)
		natsURL = ns.URL()
		log.Info("NATS JetStream ready", "url", natsURL)
	}
	d.NATSURL = natsURL
	if temporalAddr == "" {
		tstart := time.Now()
		ts, err := devstack.StartTemporal(ctx, devstack.TemporalOptions{
			DBPath: filepath.Join(cfg.DataDir, "temporal.db"),
			Port:   freeOr(cfg.TemporalPort),
			Logger: log.With("component", "temporal-server"),
		})
		if err != nil {
			return "", "", "", fmt.Errorf("start embedded Temporal (use --temporal-port to pick another port): %w", err)
		}
		d.closers = append(d.closers, func() { _ = ts.Stop() })
		temporalAddr, namespace = ts.HostPort(), ts.Namespace()
		log.Info("Temporal ready", "address", temporalAddr, "took", time.Since(tstart).Round(time.Millisecond))
		if !cfg.DisableUI {
			// Loopback only and no auth: a dev tool, like `temporal server start-dev`.
			ui, err := devstack.StartUI(ctx, devstack.UIOptions{
				Port:         freeOr(cfg.UIPort),
				TemporalAddr: temporalAddr,
				Namespace:    namespace,
				Logger:       log.With("component", "temporal-ui"),
			})
			if err != nil {
				return "", "", "", fmt.Errorf("start Temporal Web UI (use --ui-port to pick another port, --ui=false to disable): %w", err)
			}
			d.closers = append(d.closers, func() { _ = ui.Stop() })
			d.TemporalUI = ui.URL()
			log.Info("Temporal Web UI ready", "url", ui.URL())
		}
	}
	d.TemporalAddr = temporalAddr
	return natsURL, temporalAddr, namespace, nil
}

// startInfraOnly runs just the embedded NATS and Temporal servers, for
// running the roles as separate processes against them on one machine.
func (d *Process) startInfraOnly(ctx context.Context, cfg Config) error {
	if cfg.NATSURL != "" || cfg.TemporalAddr != "" {
		return errors.New("--infra-only starts the embedded servers: do not also name external ones")
	}
	natsURL, temporalAddr, namespace, err := d.startServers(ctx, cfg)
	if err != nil {
		return err
	}
	ui := d.TemporalUI
	if ui == "" {
		ui = "(disabled)"
	}
	fmt.Fprintf(cfg.Out, `
Salve infrastructure is running (embedded NATS JetStream and Temporal, data in %s)

  NATS          %s
  Temporal      %s (namespace %s)
  Temporal UI   %s

Run the roles against it, e.g.:
  salve server --roles ingest,trigger,api --nats-url %s --temporal-address %s
  salve worker --nats-url %s --temporal-address %s

`, cfg.DataDir, natsURL, temporalAddr, namespace, ui, natsURL, temporalAddr, natsURL, temporalAddr)
	return nil
}

// probesOnly is the HTTP surface of a process without the API role: the
// webhook when it has the ingest role, and for every role health,
// readiness (its own connections to NATS and Temporal) and metrics.
func probesOnly(roles Roles, ingest *triggers.Ingest, metrics http.Handler, version string, ready func(context.Context) error) http.Handler {
	mux := http.NewServeMux()
	if ingest != nil {
		mux.Handle("POST /v1/alertmanager", ingest)
	}
	mux.Handle("GET /metrics", metrics)
	answer := func(w http.ResponseWriter, code int, status, problem string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		b, _ := json.Marshal(map[string]string{"status": status, "version": version, "roles": roles.String(), "error": problem})
		_, _ = w.Write(append(b, '\n'))
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { answer(w, http.StatusOK, "ok", "") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		if err := ready(ctx); err != nil {
			answer(w, http.StatusServiceUnavailable, "unavailable", err.Error())
			return
		}
		answer(w, http.StatusOK, "ok", "")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		httpjson.WriteError(w, http.StatusNotFound, "this process runs the "+roles.String()+" role(s): "+r.Method+" "+r.URL.Path+" is served by the api role", nil)
	})
	return mux
}

func printRoles(w io.Writer, d *Process, roles Roles, natsURL, temporalAddr string) {
	url := d.URL
	if url == "" {
		url = "(no HTTP: no ingest or api role)"
	}
	var on []string
	for i, r := range []bool{roles.Ingest, roles.Trigger, roles.API, roles.Worker} {
		if r {
			on = append(on, RoleNames[i])
		}
	}
	slices.Sort(on)
	fmt.Fprintf(w, "\nSalve is running roles %s\n\n  HTTP          %s\n  NATS          %s\n  Temporal      %s\n\n", strings.Join(on, ", "), url, natsURL, temporalAddr)
}
