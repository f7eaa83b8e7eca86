package egress_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/activities/egress"
)

func TestCheck(t *testing.T) {
	for _, bad := range []string{"169.254.169.254:80", "169.254.1.1:443", "[fe80::1]:80", "[fd00:ec2::254]:80", "100.100.100.200:80", "[::ffff:169.254.169.254]:80"} {
		require.ErrorIs(t, egress.Check(bad), egress.ErrRefused, bad)
	}
	for _, ok := range []string{"127.0.0.1:8080", "10.0.0.1:80", "[::1]:80", "93.184.216.34:443"} {
		require.NoError(t, egress.Check(ok), ok)
	}
}

// A redirect to the metadata address is refused at the dial, after the
// first hop was allowed.
func TestRedirectToMetadataIsRefused(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/", http.StatusFound)
	}))
	defer srv.Close()
	c := &http.Client{Transport: egress.Transport(), Timeout: 5 * time.Second}
	_, err := c.Get(srv.URL)
	require.Error(t, err)
	require.True(t, errors.Is(err, egress.ErrRefused), "%v", err)

	// The check runs in the dialer's Control hook, which net.Dialer calls
	// with each resolved address: a name is checked by what it resolves to.
	_, err = egress.Dialer().DialContext(context.Background(), "tcp", "169.254.169.254:80")
	require.ErrorIs(t, err, egress.ErrRefused)
}

func TestPolicy(t *testing.T) {
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok")) }))
	defer ok.Close()
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(ok.URL, "http://"))

	get := func(p *egress.Policy, url string) error {
		resp, err := p.Client().Get(url)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	// No policy: anything but link-local and metadata.
	require.NoError(t, get(nil, ok.URL))

	// Allowed by CIDR, refused outside it, allowed by name.
	p, err := egress.NewPolicy([]string{"127.0.0.0/8"})
	require.NoError(t, err)
	require.NoError(t, get(p, ok.URL))
	p, err = egress.NewPolicy([]string{"10.0.0.0/8"})
	require.NoError(t, err)
	require.ErrorIs(t, get(p, ok.URL), egress.ErrRefused)
	p, err = egress.NewPolicy([]string{"localhost"})
	require.NoError(t, err)
	require.NoError(t, get(p, "http://localhost:"+port+"/"))
	require.ErrorIs(t, get(p, ok.URL), egress.ErrRefused, "127.0.0.1 is not allowed by the name localhost")
	p, err = egress.NewPolicy([]string{"*.localhost", "10.1.2.3"})
	require.NoError(t, err)
	require.ErrorIs(t, get(p, "http://localhost:"+port+"/"), egress.ErrRefused)

	// A redirect from an allowed host to one not allowed is refused.
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, ok.URL, http.StatusFound) // to 127.0.0.1
	}))
	defer redirect.Close()
	_, rport, _ := net.SplitHostPort(strings.TrimPrefix(redirect.URL, "http://"))
	p, err = egress.NewPolicy([]string{"localhost"})
	require.NoError(t, err)
	require.ErrorIs(t, get(p, "http://localhost:"+rport+"/"), egress.ErrRefused)

	// Metadata stays refused even when allowed.
	p, err = egress.NewPolicy([]string{"169.254.0.0/16"})
	require.NoError(t, err)
	require.ErrorIs(t, get(p, "http://169.254.169.254/"), egress.ErrRefused)

	for _, bad := range []string{"", "http://x", "a/b", "*x"} {
		_, err := egress.NewPolicy([]string{bad})
		require.Error(t, err, bad)
	}
}
