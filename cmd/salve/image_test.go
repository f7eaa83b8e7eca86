package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// ociDescriptor, ociIndex, ociManifest and ociConfig are the parts of the
// OCI image spec the test reads (written out here so the check does not
// trust the library that built the image).
type ociDescriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations"`
	Platform    *struct {
		OS           string `json:"os"`
		Architecture string `json:"architecture"`
	} `json:"platform"`
}

type ociIndex struct {
	MediaType string          `json:"mediaType"`
	Manifests []ociDescriptor `json:"manifests"`
}

type ociManifest struct {
	MediaType string          `json:"mediaType"`
	Config    ociDescriptor   `json:"config"`
	Layers    []ociDescriptor `json:"layers"`
}

type ociConfig struct {
	OS           string `json:"os"`
	Architecture string `json:"architecture"`
	Config       struct {
		User       string            `json:"User"`
		Entrypoint []string          `json:"Entrypoint"`
		Env        []string          `json:"Env"`
		WorkingDir string            `json:"WorkingDir"`
		Labels     map[string]string `json:"Labels"`
	} `json:"config"`
}

// buildImage runs the build `task image` runs, for the given platforms.
func buildImage(t *testing.T, out string, platforms ...string) string {
	t.Helper()
	start := time.Now()
	cmd := exec.Command("bash", "../../scripts/image.sh", "--platforms", strings.Join(platforms, ","), "--out", out)
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, "scripts/image.sh: %s", b)
	t.Logf("image built for %v in %s", platforms, time.Since(start).Round(time.Second))
	return out
}

// readArchive returns every file of a tar.
func readArchive(t *testing.T, r io.Reader) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		require.NoError(t, err)
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			require.NoError(t, err)
			files[h.Name] = b
		}
	}
}

// layerFiles lists a gzipped layer's entries with their headers.
func layerFiles(t *testing.T, blob []byte) map[string]*tar.Header {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(blob))
	require.NoError(t, err)
	out := map[string]*tar.Header{}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		require.NoError(t, err)
		out[strings.TrimSuffix(h.Name, "/")] = h
	}
}

func layerFile(t *testing.T, blob []byte, name string) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(blob))
	require.NoError(t, err)
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		require.NoError(t, err, "%s not in the layer", name)
		if h.Name == name {
			b, err := io.ReadAll(tr)
			require.NoError(t, err)
			return b
		}
	}
}

func chartAppVersion(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../deploy/helm/salve/Chart.yaml")
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^appVersion: *"?([^"\n]+)"?$`).FindSubmatch(b)
	require.NotNil(t, m, "appVersion in Chart.yaml")
	return string(m[1])
}

// The container image as `task image` builds it, with no container engine
// and no base image: an OCI archive whose index names the chart's default
// image, one manifest per platform, each running the static salve binary
// as the non-root user 65532 with CA certificates and time zones beside
// it, reproducible byte for byte. The binary inside runs. Then the image
// runs as a container under Debian's podman (crun), as `salve dev`, and an
// alert sent to it becomes a run that succeeds.
//
// The test command builds linux/amd64 only (an arm64 build of Salve is
// another cold compile of everything, ~10 minutes on 2 cores); set
// SALVE_IMAGE_PLATFORMS=linux/amd64,linux/arm64 to check both, as
// `task image` builds them.
func TestContainerImage(t *testing.T) {
	platforms := []string{"linux/" + runtime.GOARCH}
	if p := os.Getenv("SALVE_IMAGE_PLATFORMS"); p != "" {
		platforms = strings.Split(p, ",")
	}
	sort.Strings(platforms)
	dir := t.TempDir()
	archive := buildImage(t, filepath.Join(dir, "salve.tar"), platforms...)
	f, err := os.Open(archive)
	require.NoError(t, err)
	files := readArchive(t, f)
	f.Close()

	// Every blob is what its name says.
	for name, b := range files {
		if strings.HasPrefix(name, "blobs/sha256/") {
			sum := sha256.Sum256(b)
			require.Equal(t, strings.TrimPrefix(name, "blobs/sha256/"), hex.EncodeToString(sum[:]), "blob %s is corrupt", name)
		}
	}
	blob := func(d ociDescriptor) []byte {
		b, ok := files["blobs/sha256/"+strings.TrimPrefix(d.Digest, "sha256:")]
		require.True(t, ok, "blob %s is missing", d.Digest)
		require.Equal(t, d.Size, int64(len(b)), "blob %s size", d.Digest)
		return b
	}
	require.JSONEq(t, `{"imageLayoutVersion":"1.0.0"}`, string(files["oci-layout"]))
	var top ociIndex
	require.NoError(t, json.Unmarshal(files["index.json"], &top))
	require.Len(t, top.Manifests, 1)
	version := chartAppVersion(t)
	ref := "ghcr.io/salve-sre/salve:" + version
	require.Equal(t, ref, top.Manifests[0].Annotations["org.opencontainers.image.ref.name"], "the chart's default image")

	var idx ociIndex
	require.NoError(t, json.Unmarshal(blob(top.Manifests[0]), &idx))
	require.Equal(t, "application/vnd.oci.image.index.v1+json", idx.MediaType)
	var got []string
	var total int64
	hostBinary := filepath.Join(dir, "salve-from-image")
	for _, d := range idx.Manifests {
		require.NotNil(t, d.Platform)
		platform := d.Platform.OS + "/" + d.Platform.Architecture
		got = append(got, platform)
		var m ociManifest
		require.NoError(t, json.Unmarshal(blob(d), &m))
		require.Equal(t, "application/vnd.oci.image.manifest.v1+json", m.MediaType)
		var cfg ociConfig
		require.NoError(t, json.Unmarshal(blob(m.Config), &cfg))
		require.Equal(t, d.Platform.OS, cfg.OS)
		require.Equal(t, d.Platform.Architecture, cfg.Architecture)
		require.Equal(t, "65532:65532", cfg.Config.User, "runs as non-root")
		require.Equal(t, []string{"/usr/local/bin/salve"}, cfg.Config.Entrypoint)
		require.Equal(t, "/home/nonroot", cfg.Config.WorkingDir)
		labels := cfg.Config.Labels
		require.Equal(t, version, labels["org.opencontainers.image.version"])
		require.Equal(t, "salve", labels["org.opencontainers.image.title"])
		require.Equal(t, "https://github.com/salve-sre/salve", labels["org.opencontainers.image.source"])
		require.NotEmpty(t, labels["org.opencontainers.image.created"])
		require.NotEmpty(t, labels["org.opencontainers.image.description"])
		require.Len(t, m.Layers, 2, "a shared base layer and the binary")
		for _, l := range m.Layers {
			require.Equal(t, "application/vnd.oci.image.layer.v1.tar+gzip", l.MediaType)
			total += l.Size
		}
		base := layerFiles(t, blob(m.Layers[0]))
		for _, want := range []string{"etc/passwd", "etc/group", "etc/ssl/certs/ca-certificates.crt", "usr/share/zoneinfo/Europe/Berlin", "usr/share/zoneinfo/UTC", "tmp", "home/nonroot"} {
			require.Contains(t, base, want)
		}
		require.Equal(t, 65532, base["home/nonroot"].Uid, "the home directory belongs to the user")
		require.Equal(t, int64(0o1777), base["tmp"].Mode&0o7777)
		require.Contains(t, string(layerFile(t, blob(m.Layers[0]), "etc/passwd")), "nonroot:x:65532:65532:")
		bin := layerFiles(t, blob(m.Layers[1]))
		require.Len(t, bin, 1)
		require.Equal(t, int64(0o755), bin["usr/local/bin/salve"].Mode&0o777)
		require.Equal(t, 0, bin["usr/local/bin/salve"].Uid, "the binary is root's: the user cannot change it")
		if d.Platform.Architecture == runtime.GOARCH {
			require.NoError(t, os.WriteFile(hostBinary, layerFile(t, blob(m.Layers[1]), "usr/local/bin/salve"), 0o755))
		}
	}
	require.Equal(t, platforms, got)
	require.FileExists(t, hostBinary, "the image has no linux/%s binary to run here", runtime.GOARCH)
	t.Logf("image %s: %v, layers %.1f MiB compressed in total, archive %.1f MiB", ref, got, float64(total)/(1<<20), float64(fileSize(t, archive))/(1<<20))
	// 60 MiB compressed today (the binary embeds the Temporal server):
	// a jump means something big came in.
	require.Less(t, total/int64(len(got)), int64(90<<20), "compressed size per platform")

	// The binary inside runs (it is static: nothing else in the image
	// could load a dynamic one) and says the version.
	out, err := exec.Command(hostBinary, "--version").CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Equal(t, "salve "+version, strings.Fields(string(out))[0]+" "+strings.Fields(string(out))[1])
	out, err = exec.Command("file", hostBinary).CombinedOutput()
	if err == nil { // file(1) is a nicety; the run above is the proof
		require.Contains(t, string(out), "statically linked")
	}

	// Reproducible: the same commit builds the same image, digest for digest.
	again := buildImage(t, filepath.Join(dir, "again.tar"), platforms...)
	b1, err := os.ReadFile(archive)
	require.NoError(t, err)
	b2, err := os.ReadFile(again)
	require.NoError(t, err)
	require.True(t, bytes.Equal(b1, b2), "two builds of one commit differ")

	t.Run("runs under podman as salve dev", func(t *testing.T) {
		runImageWithPodman(t, archive, ref)
	})
}

func fileSize(t *testing.T, path string) int64 {
	st, err := os.Stat(path)
	require.NoError(t, err)
	return st.Size()
}

// runImageWithPodman loads the archive into Debian's podman and runs the
// image as `salve dev` on the host's network; an alert becomes a run that
// succeeds, acting on a target on the host.
//
// This machine's quirks, handled so the run is real rather than skipped
// (scripts/test.sh prepares the first one): crun refuses a hybrid cgroup
// layout whose cgroup v2 side holds a controller (hugetlb here), so
// test.sh mounts hugetlb as a v1 hierarchy; the runtime may not raise
// resource limits, so the container gets explicit ones below the
// sandbox's; cgroups are off (--cgroups disabled) as the sandbox gives
// none to delegate.
func runImageWithPodman(t *testing.T, archive, ref string) {
	if _, err := exec.LookPath("podman"); err != nil {
		t.Fatalf("podman is not installed; the README's test command installs it (apt-get install -y podman crun uidmap)")
	}
	podman := func(args ...string) (string, error) {
		out, err := exec.Command("podman", args...).CombinedOutput()
		return string(out), err
	}
	out, err := podman("load", "-i", archive)
	require.NoError(t, err, "podman load: %s", out)
	t.Cleanup(func() { _, _ = podman("rmi", "-f", ref) })
	require.Contains(t, out, "Loaded image: "+ref)
	base := []string{"run", "--rm", "--network", "host", "--cgroups", "disabled",
		"--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"}
	out, err = podman(append(base, ref, "--version")...)
	require.NoError(t, err, "podman run %s --version: %s", ref, out)
	require.Contains(t, out, "salve "+chartAppVersion(t))

	target, count := hitCounter(t)

	// The container's user (65532) reads what is mounted into it.
	rbDir := t.TempDir()
	require.NoError(t, os.Chmod(rbDir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(rbDir, "image.yaml"), []byte(`apiVersion: salve/v1
kind: Runbook
metadata: {name: image}
spec:
  trigger:
    matchers: ['alertname="FromContainer"']
    incidentKey: '{{ .Labels.instance }}'
  params:
    url: {fromAnnotation: target, required: true, pattern: 'http://127\.0\.0\.1:[0-9]+'}
  steps:
    - {name: act, action: http.request, with: {url: '{{ .Params.url }}/act', method: POST}}
    - {name: verify, action: http.request, with: {url: '{{ .Params.url }}/verify'}}
`), 0o644))
	cfgDir := t.TempDir()
	require.NoError(t, os.Chmod(cfgDir, 0o755))
	adminConfig(t, cfgDir, 0o644)

	name := fmt.Sprintf("salve-image-test-%d", time.Now().UnixNano())
	httpPort, natsPort, temporalPort := freePort(t), freePort(t), freePort(t)
	const webhookToken = "test-token-6f1c0d9e7a3b42c8a6e1f0d4b7c9e2a1"
	args := append(append([]string{}, base...), "-d", "--name", name,
		"-v", rbDir+":/runbooks:ro", "-v", cfgDir+":/etc/salve:ro",
		ref, "dev", "--listen", fmt.Sprintf("127.0.0.1:%d", httpPort), "--runbooks", "/runbooks",
		"--config", "/etc/salve/salve.yaml", "--webhook-token", webhookToken,
		"--nats-port", fmt.Sprint(natsPort), "--temporal-port", fmt.Sprint(temporalPort), "--ui=false")
	out, err = podman(args...)
	require.NoError(t, err, "podman run: %s", out)
	t.Cleanup(func() {
		if t.Failed() {
			logs, _ := podman("logs", name)
			t.Logf("container logs:\n%s", tail(logs, 6000))
		}
		_, _ = podman("rm", "-f", "-t", "5", name)
	})
	base2 := fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	waitReady(t, base2)

	// The process in the container runs as 65532, not root.
	pidOut, err := podman("inspect", "--format", "{{.State.Pid}}", name)
	require.NoError(t, err, pidOut)
	status, err := os.ReadFile("/proc/" + strings.TrimSpace(pidOut) + "/status")
	require.NoError(t, err)
	require.Regexp(t, `(?m)^Uid:\s+65532\s+65532\s+65532\s+65532$`, string(status))

	body := fmt.Sprintf(`{"version":"4","status":"firing","receiver":"salve","alerts":[{"status":"firing",
"labels":{"alertname":"FromContainer","instance":"web-1"},"annotations":{"target":%q},
"startsAt":"2026-12-07T08:00:00Z","fingerprint":"00000000000c0de1"}]}`, target.URL)
	req, _ := http.NewRequest(http.MethodPost, base2+"/v1/alertmanager", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+webhookToken)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Eventually(t, func() bool {
		v, ok := readRun(base2, "salve/image/web-1")
		return ok && v.Status == "succeeded"
	}, 2*time.Minute, 200*time.Millisecond, "the alert never became a succeeded run in the container")
	require.Equal(t, 1, count("/act"))
	require.Equal(t, 1, count("/verify"))
}
