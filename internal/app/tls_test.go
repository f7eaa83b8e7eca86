package app_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/internal/app"
)

// writeSelfSigned writes a certificate for 127.0.0.1 and its key.
func writeSelfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "salve-test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	kb, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600))
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// With a certificate and key, the API and the webhook are served over
// HTTPS only.
func TestDevServesTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := writeSelfSigned(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, err := app.Start(ctx, app.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", TLSCertFile: certFile,
		TemporalPort: -1, NATSPort: -1, DisableUI: true, Log: slog.New(slog.DiscardHandler)})
	require.ErrorContains(t, err, "TLS needs both a certificate and a key")

	d, err := app.Start(ctx, app.Config{
		DataDir: t.TempDir(), Listen: "127.0.0.1:0", WebhookToken: "test-token-6f1c0d9e7a3b42c8a6e1f0d4b7c9e2a1", RunbooksDir: t.TempDir(),
		TLSCertFile: certFile, TLSKeyFile: keyFile,
		TemporalPort: -1, NATSPort: -1, DisableUI: true, Version: "test",
		Log: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	require.NoError(t, err)
	t.Cleanup(d.Close)
	require.True(t, strings.HasPrefix(d.URL, "https://"), d.URL)

	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	req, _ := http.NewRequest("GET", d.URL+"/v1/whoami", nil)
	req.Header.Set("Authorization", "Bearer "+d.AdminToken)
	resp, err := c.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	// A rotated certificate is served to new connections without a
	// restart: the old one is no longer trusted by a client that only
	// trusts the new one, and vice versa.
	time.Sleep(10 * time.Millisecond) // a new modification time
	_, _, newPool := writeSelfSigned(t, dir)
	trusting := func(p *x509.CertPool) error {
		c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, TLSClientConfig: &tls.Config{RootCAs: p, MinVersion: tls.VersionTLS12}}}
		resp, err := c.Get(d.URL + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	require.Eventually(t, func() bool { return trusting(newPool) == nil }, 20*time.Second, 200*time.Millisecond, "the rotated certificate is served")
	require.Error(t, trusting(pool), "the old certificate is no longer served")

	// Plain HTTP on the same port gets no API.
	resp, err = http.Get(strings.Replace(d.URL, "https://", "http://", 1) + "/healthz")
	if err == nil {
		resp.Body.Close()
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, "Go's TLS server answers plain HTTP with 400")
	}
}
