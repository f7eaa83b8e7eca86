package app

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A rotation that leaves a pair that does not load (half written, key and
// certificate not matching) keeps serving the previous certificate.
func TestCertReloaderKeepsTheLastGoodPair(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	_, err := newCertReloader(certFile, keyFile, slog.New(slog.DiscardHandler))
	require.ErrorContains(t, err, "TLS: ", "missing files fail at start")

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "t"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	kb, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600))
	r, err := newCertReloader(certFile, keyFile, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	first, err := r.GetCertificate(&tls.ClientHelloInfo{})
	require.NoError(t, err)

	require.NoError(t, os.WriteFile(certFile, []byte("-----BEGIN CERTIFICATE-----\nhalf"), 0o600))
	r.checked = time.Time{} // look now
	got, err := r.GetCertificate(&tls.ClientHelloInfo{})
	require.NoError(t, err)
	require.Same(t, first, got, "the previous pair is still served")
}
