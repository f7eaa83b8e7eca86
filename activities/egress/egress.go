// Package egress guards the connections Salve makes on a runbook's behalf.
//
// Link-local addresses (169.254.0.0/16, fe80::/10) — where cloud metadata
// services hand out the machine's credentials — and the other well-known
// metadata addresses are refused, whatever name led there: the check runs
// on the address actually dialled, after DNS resolution, for every
// connection (so also after a redirect). A runbook that really must call
// such an address cannot: no remediation needs the instance's own
// credentials, and an attacker who steers a URL wants nothing more.
package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"time"

	"github.com/salve-sre/salve/internal/tracing"
)

// ErrRefused is returned for a connection to a refused address.
var ErrRefused = errors.New("egress refused")

// refused are never dialled for a runbook.
var refused = []netip.Prefix{
	netip.MustParsePrefix("169.254.0.0/16"),     // IPv4 link-local, AWS/GCP/Azure metadata
	netip.MustParsePrefix("fe80::/10"),          // IPv6 link-local
	netip.MustParsePrefix("fd00:ec2::254/128"),  // AWS metadata over IPv6
	netip.MustParsePrefix("100.100.100.200/32"), // Alibaba Cloud metadata
}

// Check reports whether address (host:port, an IP) may be dialled.
func Check(address string) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrRefused, err)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("%w: %q is not an IP address", ErrRefused, host)
	}
	ip = ip.Unmap()
	for _, p := range refused {
		if p.Contains(ip) {
			return fmt.Errorf("%w: %s is a link-local or cloud metadata address, which runbooks may not call", ErrRefused, ip)
		}
	}
	return nil
}

// Dialer returns a dialer that refuses what Check refuses.
func Dialer() *net.Dialer {
	return &net.Dialer{
		Timeout:   30 * time.Second,
		KeepAlive: 30 * time.Second,
		Control: func(_, address string, _ syscall.RawConn) error {
			return Check(address)
		},
	}
}

// Transport is http.DefaultTransport's settings with the guarded dialer.
func Transport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	d := Dialer()
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		return d.DialContext(ctx, network, addr)
	}
	return t
}

// Policy limits the hosts runbook steps may call, beyond the addresses
// Check always refuses. The zero Policy allows every other address.
type Policy struct {
	hosts    map[string]bool // exact host names
	suffixes []string        // "*.svc.cluster.local" as ".svc.cluster.local"
	cidrs    []netip.Prefix
}

// NewPolicy parses allow entries: a CIDR ("10.0.0.0/8"), an IP, a host
// name ("flags.internal") or a wildcard ("*.svc.cluster.local"). No
// entries: nil, which allows every address Check allows.
func NewPolicy(allow []string) (*Policy, error) {
	if len(allow) == 0 {
		return nil, nil
	}
	p := &Policy{hosts: map[string]bool{}}
	for _, a := range allow {
		switch {
		case a == "":
			return nil, errors.New("egress.allow: empty entry")
		case strings.HasPrefix(a, "*."):
			p.suffixes = append(p.suffixes, strings.ToLower(a[1:]))
		default:
			if pfx, err := netip.ParsePrefix(a); err == nil {
				p.cidrs = append(p.cidrs, pfx.Masked())
			} else if ip, err := netip.ParseAddr(a); err == nil {
				p.cidrs = append(p.cidrs, netip.PrefixFrom(ip, ip.BitLen()))
			} else if strings.ContainsAny(a, "/:*") {
				return nil, fmt.Errorf("egress.allow: %q is neither a CIDR, an IP, a host name nor *.domain", a)
			} else {
				p.hosts[strings.ToLower(a)] = true
			}
		}
	}
	return p, nil
}

// byName reports whether host is allowed by name.
func (p *Policy) byName(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if p.hosts[host] {
		return true
	}
	for _, s := range p.suffixes {
		if strings.HasSuffix(host, s) {
			return true
		}
	}
	return false
}

// byAddr reports whether an IP is in an allowed CIDR.
func (p *Policy) byAddr(ip netip.Addr) bool {
	for _, c := range p.cidrs {
		if c.Contains(ip.Unmap()) {
			return true
		}
	}
	return false
}

type allowedByName struct{}

// Client is an HTTP client for runbook steps under p: every request (and
// every redirect) goes to a host allowed by name, or to an address in an
// allowed CIDR — checked on the address dialled, after DNS resolution.
// Link-local and metadata addresses are refused whatever p says.
func (p *Policy) Client() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	d.ControlContext = func(ctx context.Context, _, address string, _ syscall.RawConn) error {
		if err := Check(address); err != nil {
			return err
		}
		if p == nil || ctx.Value(allowedByName{}) != nil {
			return nil
		}
		host, _, _ := net.SplitHostPort(address)
		if ip, err := netip.ParseAddr(host); err == nil && p.byAddr(ip) {
			return nil
		}
		return fmt.Errorf("%w: %s is not in egress.allow of Salve's config", ErrRefused, host)
	}
	t.DialContext = d.DialContext
	// Connections are not shared between requests to different hosts, so
	// a name-allowed connection never serves another host.
	return &http.Client{Transport: roundTripper{p: p, next: tracing.Transport(t)}}
}

type roundTripper struct {
	p    *Policy
	next http.RoundTripper
}

func (r roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	if r.p != nil && r.p.byName(req.URL.Hostname()) {
		req = req.WithContext(context.WithValue(req.Context(), allowedByName{}, true))
	}
	return r.next.RoundTrip(req)
}
