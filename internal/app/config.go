package app

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/salve-sre/salve/activities/notify"
	"github.com/salve-sre/salve/internal/auth"
	"github.com/salve-sre/salve/internal/safety"
	"github.com/salve-sre/salve/internal/tracing"
	"github.com/salve-sre/salve/internal/trust"
)

// FileConfig is the part of Salve's configuration that does not fit on a
// command line: API tokens and notification targets. It is read from the
// --config YAML file; flags and SALVE_* variables cover the rest.
type FileConfig struct {
	Auth struct {
		// Tokens are the API tokens, stored as hashes.
		Tokens []auth.TokenConfig `yaml:"tokens"`
	} `yaml:"auth"`
	Notifications notify.Config `yaml:"notifications"`
	// PublicURL is the base URL people reach Salve at, for links in
	// notifications and API answers.
	PublicURL string `yaml:"publicURL"`
	TLS       struct {
		CertFile string `yaml:"certFile"`
		KeyFile  string `yaml:"keyFile"`
	} `yaml:"tls"`
	// Safety is the global part of the safety envelope: a limit on
	// concurrent runs across runbooks, defaults for runbooks, maintenance
	// windows and Alertmanager silences.
	Safety safety.Config `yaml:"safety"`
	// Trust is how much evidence promoting a runbook up the trust ladder
	// (shadow → approve → enforce) needs.
	Trust trust.Policy `yaml:"trust"`
	// Egress limits the hosts http.request and prometheus.* steps may
	// call (activities/egress): CIDRs, IPs, host names, *.domain.
	Egress struct {
		Allow []string `yaml:"allow"`
	} `yaml:"egress"`
	// TrustedProxies are the proxies (CIDRs or IPs) whose
	// X-Forwarded-Proto: https Salve believes, to mark the dashboard's
	// session cookie Secure behind a TLS-terminating ingress.
	TrustedProxies []string `yaml:"trustedProxies"`
	// Tracing: where people see a run's trace. Whether and where spans
	// are exported is set by the standard OTEL_* variables.
	Tracing struct {
		// TraceURL is the template of a link to a trace, with {traceId}:
		// Jaeger's http://jaeger:16686/trace/{traceId}, or Grafana's
		// Explore URL for Tempo.
		TraceURL string `yaml:"traceURL"`
		// Incoming is what a request's traceparent does: "continue"
		// (the default) puts Salve's spans in the caller's trace;
		// "link" starts a new trace linked to it, so that a caller
		// (whoever holds the webhook token) chooses neither the trace
		// ID nor the sampling.
		Incoming string `yaml:"incoming"`
	} `yaml:"tracing"`
}

// trustedProxies parses TrustedProxies.
func (c FileConfig) trustedProxies() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for i, s := range c.TrustedProxies {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, fmt.Errorf("trustedProxies[%d]: %q is neither a CIDR (10.0.0.0/8) nor an IP", i, s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// LoadFileConfig reads a config file strictly: an unknown key is an
// error, so a misspelt setting never silently does nothing.
func LoadFileConfig(path string) (FileConfig, error) {
	var c FileConfig
	if path == "" {
		return c, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return c, fmt.Errorf("config %s: %s", path, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	// Files named in the config are relative to it, not to where Salve
	// happens to start.
	for name, t := range c.Notifications.Targets {
		if t.URLFile != "" && !filepath.IsAbs(t.URLFile) {
			t.URLFile = filepath.Join(filepath.Dir(path), t.URLFile)
			c.Notifications.Targets[name] = t
		}
	}
	if err := c.Safety.Validate(); err != nil {
		return c, fmt.Errorf("config %s:\n%w", path, err)
	}
	if err := c.Trust.Validate(); err != nil {
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	if _, err := c.trustedProxies(); err != nil {
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	if err := tracing.CheckLinkTemplate(c.Tracing.TraceURL); err != nil {
		return c, fmt.Errorf("config %s: tracing.traceURL: %w", path, err)
	}
	switch c.Tracing.Incoming {
	case "", "continue", "link":
	default:
		return c, fmt.Errorf("config %s: tracing.incoming: %q: want continue (join the caller's trace) or link (a new trace, linked to the caller's)", path, c.Tracing.Incoming)
	}
	for _, f := range []*string{&c.TLS.CertFile, &c.TLS.KeyFile, &c.Safety.Alertmanager.BearerTokenFile} {
		if *f != "" && !filepath.IsAbs(*f) {
			*f = filepath.Join(filepath.Dir(path), *f)
		}
	}
	return c, nil
}

// devAdminToken returns the admin token of `salve dev` when the config
// names no tokens: generated once into DataDir/admin-token (mode 0600),
// where the CLI finds it, so a fresh `salve dev` is usable at once and
// still never open to anyone without the file.
func devAdminToken(dataDir string) (token string, cfg auth.TokenConfig, err error) {
	path := filepath.Join(dataDir, "admin-token")
	if b, err := os.ReadFile(path); err == nil && strings.HasPrefix(strings.TrimSpace(string(b)), auth.TokenPrefix) {
		token = strings.TrimSpace(string(b))
		// An admin token readable by others is no secret: keep it 0600.
		if err := os.Chmod(path, 0o600); err != nil {
			return "", cfg, fmt.Errorf("restrict %s to its owner: %w", path, err)
		}
	} else {
		if token, _, err = auth.NewToken(); err != nil {
			return "", cfg, err
		}
		if err := os.WriteFile(path, []byte(token+"\n"), 0o600); err != nil {
			return "", cfg, fmt.Errorf("save the dev admin token: %w", err)
		}
	}
	return token, auth.TokenConfig{Subject: "dev-admin", Role: "admin", SHA256: auth.HashToken(token)}, nil
}
