package devstack

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestUIServesAppAndProxiesTemporal(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv := startTestTemporal(t, ctx, TemporalOptions{Logger: testLogger()})

	began := time.Now()
	ui, err := StartUI(ctx, UIOptions{TemporalAddr: srv.HostPort(), Namespace: srv.Namespace(), Logger: testLogger()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = ui.Stop() })
	t.Logf("ui started on %s in %s", ui.URL(), time.Since(began).Round(time.Millisecond))
	require.True(t, strings.HasPrefix(ui.URL(), "http://127.0.0.1:"), "loopback by default, got %s", ui.URL())

	hc := &http.Client{Timeout: 10 * time.Second}

	// The single-page app: index.html from the module's embedded assets.
	status, ctype, body := get(t, ctx, hc, ui.URL()+"/")
	require.Equal(t, http.StatusOK, status, "GET /: %.300s", body)
	assert.Contains(t, ctype, "text/html")
	assert.Contains(t, strings.ToLower(body), "<html")
	assert.Contains(t, body, "/_app/", "index.html should reference the app bundle")

	// One of the bundle's files referenced by index.html is served too.
	asset := firstAppAsset(body)
	require.NotEmpty(t, asset, "no /_app/ asset in index.html")
	status, _, _ = get(t, ctx, hc, ui.URL()+asset)
	assert.Equal(t, http.StatusOK, status, "GET %s", asset)

	// The UI's API proxy (grpc-gateway onto the frontend): ListNamespaces.
	// The UI's gRPC client connects lazily, so poll until a deadline.
	var list struct {
		Namespaces []struct {
			NamespaceInfo struct {
				Name  string `json:"name"`
				State string `json:"state"`
			} `json:"namespaceInfo"`
		} `json:"namespaces"`
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		status, ctype, body = get(t, ctx, hc, ui.URL()+"/api/v1/namespaces")
		if status == http.StatusOK {
			break
		}
		require.True(t, time.Now().Before(deadline), "GET /api/v1/namespaces still %d: %.300s", status, body)
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	assert.Contains(t, ctype, "application/json")
	require.NoError(t, json.Unmarshal([]byte(body), &list), "body: %.300s", body)
	var names []string
	for _, ns := range list.Namespaces {
		names = append(names, ns.NamespaceInfo.Name)
	}
	assert.Contains(t, names, "default", "namespaces: %s", body)

	// Settings tell the app which namespace to open.
	status, _, body = get(t, ctx, hc, ui.URL()+"/api/v1/settings")
	require.Equal(t, http.StatusOK, status)
	var settings struct{ DefaultNamespace string }
	require.NoError(t, json.Unmarshal([]byte(body), &settings))
	assert.Equal(t, "default", settings.DefaultNamespace)

	// Stop frees the port and is safe twice.
	require.NoError(t, ui.Stop())
	require.NoError(t, ui.Stop())
	host := strings.TrimPrefix(ui.URL(), "http://")
	ln, err := net.Listen("tcp", host)
	require.NoError(t, err, "port still taken after Stop")
	_ = ln.Close()
}

// A taken port is an error from StartUI, not a process exit inside the
// ui-server.
func TestUIPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = StartUI(ctx, UIOptions{Port: ln.Addr().(*net.TCPAddr).Port, TemporalAddr: "127.0.0.1:1"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "address already in use")
}

func get(t *testing.T, ctx context.Context, hc *http.Client, url string) (status int, contentType, body string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	require.NoError(t, err)
	resp, err := hc.Do(req)
	require.NoError(t, err, "GET %s", url)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
}

// firstAppAsset returns the first "/_app/..." path quoted in index.html.
func firstAppAsset(html string) string {
	i := strings.Index(html, "/_app/")
	if i < 0 {
		return ""
	}
	end := strings.IndexAny(html[i:], "\"' )")
	if end < 0 {
		return ""
	}
	return html[i : i+end]
}
