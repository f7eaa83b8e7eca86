package devstack

// Embedded Temporal Web UI, served next to the embedded server the way
// `temporal server start-dev` does: github.com/temporalio/ui-server ships the
// built UI in its module (ui/assets, go:embed), so nothing is downloaded.
//
// DEV ONLY: the UI has no authentication and its API proxy can do anything
// the Temporal frontend allows (terminate, signal, reset workflows...). It
// binds to loopback unless told otherwise; never expose it.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	uiserver "github.com/temporalio/ui-server/v2/server"
	uiconfig "github.com/temporalio/ui-server/v2/server/config"
	uioptions "github.com/temporalio/ui-server/v2/server/server_options"
)

// UIOptions configures StartUI.
type UIOptions struct {
	IP           string       // bind address; default "127.0.0.1" (keep it on loopback: no auth)
	Port         int          // HTTP port; 0 = pick a free port
	TemporalAddr string       // Temporal frontend gRPC host:port (required)
	Namespace    string       // namespace the UI opens on; default "default"
	Logger       *slog.Logger // nil = discard
}

// UI is a running Temporal Web UI server.
type UI struct {
	srv  *uiserver.Server
	url  string
	done chan struct{} // closed when the server's Start returns

	stopOnce sync.Once
}

// StartUI starts the UI server and returns once it answers HTTP, or fails
// when ctx (or, if ctx has no deadline, one minute) runs out.
//
// The UI reaches Temporal lazily (a gRPC client that connects on first use),
// so it starts even if Temporal is not up yet; its API calls fail until it is.
func StartUI(ctx context.Context, o UIOptions) (*UI, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("temporal ui: not started: %w", err)
	}
	if o.TemporalAddr == "" {
		return nil, errors.New("temporal ui: no Temporal frontend address")
	}
	if o.IP == "" {
		o.IP = "127.0.0.1"
	}
	if o.Namespace == "" {
		o.Namespace = "default"
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}

	// The ui-server binds its own port inside Start, and when that bind
	// fails it calls echo's Logger.Fatal, which is os.Exit(1): the whole
	// process would die. So bind the port here first: a clash (e.g. a
	// `temporal server start-dev` already on 8233) becomes an ordinary error,
	// and Port 0 becomes a concrete free port. The listener is closed just
	// before Start; only a bind by someone else in that instant can still
	// take the process down.
	ln, err := net.Listen("tcp", net.JoinHostPort(o.IP, strconv.Itoa(o.Port)))
	if err != nil {
		return nil, fmt.Errorf("temporal ui: listen: %w", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port

	// A wildcard bind address is not something to browse to; loopback is.
	urlIP := o.IP
	if ip := net.ParseIP(urlIP); ip != nil && ip.IsUnspecified() {
		urlIP = "127.0.0.1"
	}
	u := &UI{
		url:  "http://" + net.JoinHostPort(urlIP, strconv.Itoa(port)),
		done: make(chan struct{}),
	}

	// NewServer panics on an invalid config (ours is fixed and valid) and
	// reads the embedded assets; it does not listen yet.
	u.srv = uiserver.NewServer(uioptions.WithConfigProvider(&uiconfig.Config{
		Host:                o.IP,
		Port:                port,
		TemporalGRPCAddress: o.TemporalAddr,
		EnableUI:            true, // assets from the module's go:embed
		DefaultNamespace:    o.Namespace,
		// Plain HTTP: without this the browser drops the CSRF cookie and
		// every write action (signal, terminate...) fails. Same as the CLI.
		CORS:     uiconfig.CORS{CookieInsecure: true},
		HideLogs: true, // no banner, no access log on stdout
		// Auth stays disabled; NotifyOnNewVersion stays false, so the server
		// never calls out to GitHub.
	}))

	_ = ln.Close()
	go func() {
		defer close(u.done)
		// Returns nil once Stop closes the server; on any other error it has
		// already exited the process (see above).
		_ = u.srv.Start()
	}()

	start := time.Now()
	if err := u.waitReady(ctx); err != nil {
		_ = u.Stop()
		return nil, err
	}
	logger.Debug("temporal ui ready", "url", u.url, "temporal", o.TemporalAddr, "took", time.Since(start))
	return u, nil
}

// URL is the UI's base URL, e.g. http://127.0.0.1:8233.
func (u *UI) URL() string { return u.url }

// Stop closes the HTTP server (open connections included). Safe to call
// more than once.
//
// The ui-server offers no way to close the gRPC client it keeps to Temporal:
// it stays idle until the process exits (harmless for `salve dev`, which
// stops the UI only on the way out).
func (u *UI) Stop() error {
	var err error
	u.stopOnce.Do(func() {
		u.srv.Stop()
		select {
		case <-u.done:
		case <-time.After(5 * time.Second):
			err = errors.New("temporal ui: server did not stop within 5s")
		}
	})
	return err
}

// waitReady polls /healthz, which the ui-server answers without calling
// Temporal.
func (u *UI) waitReady(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultReadyTimeout)
		defer cancel()
	}
	hc := &http.Client{Timeout: 2 * time.Second}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		err := u.probe(ctx, hc)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("temporal ui: %s not ready: %w (last error: %v)", u.url, ctx.Err(), err)
		case <-u.done:
			return fmt.Errorf("temporal ui: server on %s stopped during start (last error: %v)", u.url, err)
		case <-tick.C:
		}
	}
}

func (u *UI) probe(ctx context.Context, hc *http.Client) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.url+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /healthz: %s", resp.Status)
	}
	return nil
}
