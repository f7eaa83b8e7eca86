// Package vault is Salve's Vault client: it logs Salve in (AppRole,
// Kubernetes auth or a token), keeps its own token alive across renewals
// and Vault restarts, and issues per-step credentials that are revoked when
// the step attempt ends. Secrets exist only in the memory of the activity
// that uses them: never in errors, logs, audit events or workflow history.
package vault

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	vaultapi "github.com/hashicorp/vault/api"
	"github.com/salve-sre/salve/internal/tracing"
)

// Config says where Vault is and how Salve logs in. Exactly one login
// method is used: AppRole if RoleID is set, else Kubernetes auth if
// KubernetesRole is set, else Token (development).
type Config struct {
	Addr string // e.g. https://vault.internal:8200; VAULT_ADDR when empty
	// Token logs in with a token (development; e.g. a dev server's root).
	Token string
	// AppRole login (production).
	RoleID       string
	SecretIDFile string
	AppRoleMount string // default "approle"
	// Kubernetes auth login (Salve running in a cluster).
	KubernetesRole      string
	KubernetesJWTPath   string // default the pod's service account token
	KubernetesAuthMount string // default "kubernetes"
	// CACertFile verifies Vault's TLS certificate; empty = system roots.
	CACertFile string
}

// Method names the login method the config selects.
func (c Config) Method() string {
	switch {
	case c.RoleID != "":
		return "approle"
	case c.KubernetesRole != "":
		return "kubernetes"
	case c.Token != "":
		return "token"
	}
	return ""
}

// Client is a logged-in Vault client.
type Client struct {
	cfg Config
	log *slog.Logger

	mu  sync.Mutex
	api *vaultapi.Client

	loginMu sync.Mutex // one re-login at a time
	// relogged carries the login a step's re-login made (relogin), so
	// keepAlive watches the new token instead of the refused one.
	relogged chan *vaultapi.Secret

	stop chan struct{}
	done chan struct{}
}

// ErrNotConfigured says no login method was given.
var ErrNotConfigured = errors.New("vault: no login method configured (give --vault-token for development, or --vault-role-id with --vault-secret-id-file, or --vault-kubernetes-auth-role)")

// New logs in and starts keeping the token alive. It fails fast when Vault
// cannot be reached or refuses the login, so a misconfiguration shows at
// startup rather than at the first incident.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Client, error) {
	if cfg.Method() == "" {
		return nil, ErrNotConfigured
	}
	vc := vaultapi.DefaultConfig()
	if vc.Error != nil {
		return nil, fmt.Errorf("vault config: %w", vc.Error)
	}
	if cfg.Addr != "" {
		vc.Address = cfg.Addr
	}
	// Temporal retries steps with backoff; the client's own retries would
	// only hide an outage for longer.
	vc.MaxRetries = 1
	vc.Timeout = 30 * time.Second
	if cfg.CACertFile != "" {
		if err := vc.ConfigureTLS(&vaultapi.TLSConfig{CACert: cfg.CACertFile}); err != nil {
			return nil, fmt.Errorf("vault TLS: %w", err)
		}
	}
	api, err := vaultapi.NewClient(vc)
	if err != nil {
		return nil, fmt.Errorf("vault client: %w", err)
	}
	// Wrapped after NewClient, which configures the *http.Transport.
	vc.HttpClient.Transport = tracing.Transport(vc.HttpClient.Transport)
	api.ClearToken()
	c := &Client{cfg: cfg, log: log, api: api, relogged: make(chan *vaultapi.Secret, 1),
		stop: make(chan struct{}), done: make(chan struct{})}
	sec, err := c.login(ctx)
	if err != nil {
		return nil, err
	}
	go c.keepAlive(sec)
	return c, nil
}

// Close stops token renewal.
func (c *Client) Close() {
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
	<-c.done
}

// API returns the underlying client, logged in.
func (c *Client) API() *vaultapi.Client {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.api
}

// Health checks that Vault answers and is unsealed.
func (c *Client) Health(ctx context.Context) error {
	h, err := c.API().Sys().HealthWithContext(ctx)
	if err != nil {
		return fmt.Errorf("vault unreachable: %w", err)
	}
	if h.Sealed {
		return errors.New("vault is sealed")
	}
	return nil
}

// login obtains a token by the configured method and returns Vault's
// answer: the login (AppRole, Kubernetes), or the token's own lookup.
func (c *Client) login(ctx context.Context) (*vaultapi.Secret, error) {
	api := c.API()
	var sec *vaultapi.Secret
	var err error
	switch c.cfg.Method() {
	case "token":
		api.SetToken(c.cfg.Token)
		sec, err = api.Auth().Token().LookupSelfWithContext(ctx)
		if err != nil {
			return nil, fmt.Errorf("vault token login: %w", cleanErr(err))
		}
		return sec, nil
	case "approle":
		secretID, rerr := os.ReadFile(c.cfg.SecretIDFile)
		if rerr != nil {
			return nil, fmt.Errorf("vault approle login: read secret ID file: %w", rerr)
		}
		mount := orDefault(c.cfg.AppRoleMount, "approle")
		sec, err = api.Logical().WriteWithContext(ctx, "auth/"+mount+"/login", map[string]any{
			"role_id": c.cfg.RoleID, "secret_id": strings.TrimSpace(string(secretID)),
		})
	case "kubernetes":
		jwt, rerr := os.ReadFile(orDefault(c.cfg.KubernetesJWTPath, "/var/run/secrets/kubernetes.io/serviceaccount/token"))
		if rerr != nil {
			return nil, fmt.Errorf("vault kubernetes login: read service account token: %w", rerr)
		}
		mount := orDefault(c.cfg.KubernetesAuthMount, "kubernetes")
		sec, err = api.Logical().WriteWithContext(ctx, "auth/"+mount+"/login", map[string]any{
			"role": c.cfg.KubernetesRole, "jwt": strings.TrimSpace(string(jwt)),
		})
	}
	if err != nil {
		return nil, fmt.Errorf("vault %s login: %w", c.cfg.Method(), cleanErr(err))
	}
	if sec == nil || sec.Auth == nil || sec.Auth.ClientToken == "" {
		return nil, fmt.Errorf("vault %s login: no token in the answer", c.cfg.Method())
	}
	api.SetToken(sec.Auth.ClientToken)
	return sec, nil
}

// keepAlive keeps Salve logged in. A login's token is renewed by vault/api's
// LifetimeWatcher for as long as Vault allows; when it can no longer be
// renewed (its max TTL, Vault restarted and lost it, it was revoked),
// Salve logs in again, retrying with backoff. A token given directly
// (development) is not Salve's to renew: it is looked up again now and
// then, so a restarted dev Vault is noticed.
func (c *Client) keepAlive(sec *vaultapi.Secret) {
	defer close(c.done)
	retry := backoff.NewExponentialBackOff()
	retry.InitialInterval, retry.MaxInterval = time.Second, time.Minute
	for {
		ended, stopWatching := c.watch(sec)
		select {
		case <-c.stop:
			stopWatching()
			return
		case next := <-c.relogged:
			stopWatching()
			sec = c.current(sec, next)
			continue
		case err := <-ended:
			stopWatching()
			if err != nil {
				c.log.Warn("vault token renewal ended; logging in again", "method", c.cfg.Method(), "error", cleanErr(err))
			}
		}
		retry.Reset()
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			c.loginMu.Lock()
			next, err := c.login(ctx)
			if err == nil {
				// A step's re-login handed over before this one is stale.
				select {
				case <-c.relogged:
				default:
				}
			}
			c.loginMu.Unlock()
			cancel()
			if err == nil {
				sec = next
				c.log.Debug("vault login renewed", "method", c.cfg.Method())
				break
			}
			wait := retry.NextBackOff()
			c.log.Error("vault login failed; retrying", "method", c.cfg.Method(), "error", err, "retry_in", wait.Round(time.Millisecond))
			select {
			case <-c.stop:
				return
			case next := <-c.relogged:
				sec = c.current(sec, next)
			case <-time.After(wait):
				continue
			}
			break
		}
	}
}

// current is next if its token is the one the client uses now, else old:
// a re-login handed over may already have been replaced by another.
func (c *Client) current(old, next *vaultapi.Secret) *vaultapi.Secret {
	c.loginMu.Lock()
	defer c.loginMu.Unlock()
	if next.Auth != nil && next.Auth.ClientToken == c.API().Token() {
		return next
	}
	if c.cfg.Method() == "token" {
		return next // a looked-up development token: nothing to renew
	}
	return old
}

// watch returns a channel that is sent on when sec's token needs a new
// login, and a function that stops watching.
func (c *Client) watch(sec *vaultapi.Secret) (<-chan error, func()) {
	if c.cfg.Method() == "token" || sec.Auth == nil || sec.Auth.LeaseDuration <= 0 || !sec.Auth.Renewable {
		// Not renewable by Salve: look it up (log in) again at two
		// thirds of its TTL, or every 5 minutes if it has none.
		ttl, _ := sec.TokenTTL()
		next := 5 * time.Minute
		if ttl > 0 {
			next = max(ttl*2/3, time.Second)
		}
		ended, quit := make(chan error, 1), make(chan struct{})
		go func() {
			t := time.NewTimer(next)
			defer t.Stop()
			select {
			case <-t.C:
				ended <- nil
			case <-quit:
			}
		}()
		return ended, sync.OnceFunc(func() { close(quit) })
	}
	w, err := c.API().NewLifetimeWatcher(&vaultapi.LifetimeWatcherInput{
		Secret: sec,
		// Exit at the first failed renewal and log in again, rather than
		// retry renewing a token Vault may have lost.
		RenewBehavior: vaultapi.RenewBehaviorErrorOnErrors,
	})
	if err != nil {
		ended := make(chan error, 1)
		ended <- err
		return ended, func() {}
	}
	go w.Start()
	return w.DoneCh(), w.Stop
}

// relogin logs in again after Vault refused the token `refused` (e.g.
// Vault was restarted without persistent storage, or the token was
// revoked). Concurrent steps refused with the same token share one login:
// whoever comes second finds the token already replaced.
func (c *Client) relogin(ctx context.Context, refused string) error {
	c.loginMu.Lock()
	defer c.loginMu.Unlock()
	if c.API().Token() != refused {
		return nil
	}
	sec, err := c.login(ctx)
	if err != nil {
		return err
	}
	// Hand the new login to keepAlive, replacing one it has not taken.
	select {
	case <-c.relogged:
	default:
	}
	c.relogged <- sec
	return nil
}

// isPermissionDenied reports a 403 from Vault.
func isPermissionDenied(err error) bool {
	var re *vaultapi.ResponseError
	return errors.As(err, &re) && re.StatusCode == 403
}

// isClientError reports a 4xx other than 403/429: the request itself is
// wrong (e.g. an unknown role), so a retry cannot help.
func isClientError(err error) bool {
	var re *vaultapi.ResponseError
	return errors.As(err, &re) && re.StatusCode >= 400 && re.StatusCode < 500 && re.StatusCode != 403 && re.StatusCode != 429
}

// cleanErr keeps Vault's error messages but drops the request URL and
// headers the api package includes.
func cleanErr(err error) error {
	var re *vaultapi.ResponseError
	if errors.As(err, &re) {
		msg := strings.Join(re.Errors, "; ")
		if msg == "" {
			msg = fmt.Sprintf("HTTP %d", re.StatusCode)
		}
		return fmt.Errorf("vault answered %d: %s", re.StatusCode, msg)
	}
	return err
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
