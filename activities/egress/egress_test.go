package egress_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
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
