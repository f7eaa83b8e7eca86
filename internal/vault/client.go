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

	vaultapi "github.com/hashicorp/vault/api"
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
	api.ClearToken()
	c := &Client{cfg: cfg, log: log, api: api, stop: make(chan struct{}), done: make(chan struct{})}
	ttl, err := c.login(ctx)
	if err != nil {
		return nil, err
	}
	go c.keepAlive(ttl)
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

// login obtains a token by the configured method and returns its TTL
// (0 = does not expire).
func (c *Client) login(ctx context.Context) (time.Duration, error) {
	api := c.API()
	var sec *vaultapi.Secret
	var err error
	switch c.cfg.Method() {
	case "token":
		api.SetToken(c.cfg.Token)
		sec, err = api.Auth().Token().LookupSelfWithContext(ctx)
		if err != nil {
			return 0, fmt.Errorf("vault token login: %w", cleanErr(err))
		}
		ttl, _ := sec.TokenTTL()
		return ttl, nil
	case "approle":
		secretID, rerr := os.ReadFile(c.cfg.SecretIDFile)
		if rerr != nil {
			return 0, fmt.Errorf("vault approle login: read secret ID file: %w", rerr)
		}
		mount := orDefault(c.cfg.AppRoleMount, "approle")
		sec, err = api.Logical().WriteWithContext(ctx, "auth/"+mount+"/login", map[string]any{
			"role_id": c.cfg.RoleID, "secret_id": strings.TrimSpace(string(secretID)),
		})
	case "kubernetes":
		jwt, rerr := os.ReadFile(orDefault(c.cfg.KubernetesJWTPath, "/var/run/secrets/kubernetes.io/serviceaccount/token"))
		if rerr != nil {
			return 0, fmt.Errorf("vault kubernetes login: read service account token: %w", rerr)
		}
		mount := orDefault(c.cfg.KubernetesAuthMount, "kubernetes")
		sec, err = api.Logical().WriteWithContext(ctx, "auth/"+mount+"/login", map[string]any{
			"role": c.cfg.KubernetesRole, "jwt": strings.TrimSpace(string(jwt)),
		})
	}
	if err != nil {
		return 0, fmt.Errorf("vault %s login: %w", c.cfg.Method(), cleanErr(err))
	}
	if sec == nil || sec.Auth == nil || sec.Auth.ClientToken == "" {
		return 0, fmt.Errorf("vault %s login: no token in the answer", c.cfg.Method())
	}
	api.SetToken(sec.Auth.ClientToken)
	return time.Duration(sec.Auth.LeaseDuration) * time.Second, nil
}

// keepAlive renews the token at two thirds of its TTL and logs in again
// when renewal fails (token expired, Vault restarted and lost it, max TTL
// reached). A token without a TTL is only checked now and then.
func (c *Client) keepAlive(ttl time.Duration) {
	defer close(c.done)
	backoff := time.Second
	next := nextCheck(ttl)
	for {
		select {
		case <-c.stop:
			return
		case <-time.After(next):
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if ttl > 0 && c.cfg.Method() != "token" {
			sec, err := c.API().Auth().Token().RenewSelfWithContext(ctx, int(ttl.Seconds()))
			if err == nil && sec != nil && sec.Auth != nil && time.Duration(sec.Auth.LeaseDuration)*time.Second >= ttl/2 {
				cancel()
				ttl, backoff = time.Duration(sec.Auth.LeaseDuration)*time.Second, time.Second
				next = nextCheck(ttl)
				continue
			}
		}
		// Renewal failed, the token is near its max TTL, or it has no TTL
		// and Vault may have forgotten it: log in again.
		newTTL, err := c.login(ctx)
		cancel()
		if err != nil {
			c.log.Error("vault login failed; retrying", "method", c.cfg.Method(), "error", err, "retry_in", backoff)
			next, backoff = backoff, min(backoff*2, time.Minute)
			continue
		}
		ttl, backoff = newTTL, time.Second
		next = nextCheck(ttl)
		c.log.Debug("vault login renewed", "method", c.cfg.Method(), "ttl", ttl)
	}
}

func nextCheck(ttl time.Duration) time.Duration {
	if ttl <= 0 {
		return 5 * time.Minute
	}
	return max(ttl*2/3, time.Second)
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
	_, err := c.login(ctx)
	return err
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
