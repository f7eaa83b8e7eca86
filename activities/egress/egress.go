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
	"syscall"
	"time"
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
