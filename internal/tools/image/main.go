// Command image assembles Salve's container image without a container
// engine or a base image: static salve binaries (one per platform) plus
// the few files a static Go program needs — CA certificates, a passwd and
// group entry for the non-root user 65532, time zone data — written as a
// multi-platform OCI image into an OCI archive (a tar of an OCI image
// layout) that `podman load`, `docker load` (Docker 25 or later) and
// `skopeo copy oci-archive:...` accept.
//
// The output is reproducible: every file in a layer has the same owner and
// the time given by --created (the commit's time), entries are sorted, and
// nothing depends on the build machine but the input files. Run through
// scripts/image.sh (task image), which builds the binaries first.
package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The user the image runs as: the same uid/gid as distroless' "nonroot",
// so pod security contexts written for those images fit this one.
const (
	uid     = 65532
	binPath = "usr/local/bin/salve"
)

type binaries map[string]string // "linux/amd64" -> path of the static binary

func (b binaries) String() string { return fmt.Sprint(map[string]string(b)) }

func (b binaries) Set(v string) error {
	platform, file, ok := strings.Cut(v, "=")
	if !ok || !strings.HasPrefix(platform, "linux/") || file == "" {
		return fmt.Errorf("want linux/ARCH=PATH, got %q", v)
	}
	b[platform] = file
	return nil
}

func main() {
	bins := binaries{}
	var (
		out      = flag.String("out", "", "OCI archive to write (required)")
		ref      = flag.String("ref", "", "image reference recorded in the archive, e.g. ghcr.io/salve-sre/salve:0.1.0 (required)")
		version  = flag.String("version", "", "Salve's version, for the image labels (required)")
		revision = flag.String("revision", "", "source revision (git commit), for the image labels")
		created  = flag.String("created", "", "image and file time, RFC 3339 (default: 1970-01-01T00:00:00Z, for reproducibility)")
		source   = flag.String("source", "https://github.com/salve-sre/salve", "source repository URL, for the image labels")
		caFile   = flag.String("ca-certificates", "/etc/ssl/certs/ca-certificates.crt", "CA bundle to ship (Debian's ca-certificates)")
		zoneinfo = flag.String("zoneinfo", "/usr/share/zoneinfo", "time zone database to ship (Debian's tzdata); \"\" ships none")
	)
	flag.Var(bins, "binary", "linux/ARCH=PATH of a static salve binary; repeat for each platform (required)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: image --out FILE --ref REF --version V --binary linux/amd64=PATH [--binary linux/arm64=PATH]\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *out == "" || *ref == "" || *version == "" || len(bins) == 0 || flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	at := time.Unix(0, 0).UTC()
	if *created != "" {
		t, err := time.Parse(time.RFC3339, *created)
		if err != nil {
			fail(fmt.Errorf("--created: %w", err))
		}
		at = t.UTC()
	}
	labels := map[string]string{
		"org.opencontainers.image.title":       "salve",
		"org.opencontainers.image.description": "Salve: event-driven auto-remediation (Alertmanager webhooks in, durable Temporal runbook runs out)",
		"org.opencontainers.image.source":      *source,
		"org.opencontainers.image.url":         *source,
		"org.opencontainers.image.version":     *version,
		"org.opencontainers.image.revision":    *revision,
		"org.opencontainers.image.created":     at.Format(time.RFC3339),
	}
	if *revision == "" {
		delete(labels, "org.opencontainers.image.revision")
	}
	if err := build(*out, *ref, bins, labels, at, *caFile, *zoneinfo); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "image:", err)
	os.Exit(1)
}

func build(out, ref string, bins binaries, labels map[string]string, at time.Time, caFile, zoneinfo string) error {
	baseTar, err := baseFiles(at, caFile, zoneinfo)
	if err != nil {
		return err
	}
	base, err := layer(baseTar)
	if err != nil {
		return err
	}
	platforms := make([]string, 0, len(bins))
	for p := range bins {
		platforms = append(platforms, p)
	}
	sort.Strings(platforms)

	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range platforms {
		arch := strings.TrimPrefix(p, "linux/")
		binTar, err := binaryLayer(bins[p], at)
		if err != nil {
			return err
		}
		bin, err := layer(binTar)
		if err != nil {
			return err
		}
		img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
		img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
		img, err = mutate.Append(img,
			mutate.Addendum{Layer: base, MediaType: types.OCILayer, History: v1.History{Created: v1.Time{Time: at}, CreatedBy: "salve image: CA certificates, passwd/group (nonroot 65532), zoneinfo", Comment: "base"}},
			mutate.Addendum{Layer: bin, MediaType: types.OCILayer, History: v1.History{Created: v1.Time{Time: at}, CreatedBy: "salve image: /" + binPath, Comment: "salve " + labels["org.opencontainers.image.version"]}},
		)
		if err != nil {
			return err
		}
		cf, err := img.ConfigFile()
		if err != nil {
			return err
		}
		cf = cf.DeepCopy()
		cf.OS, cf.Architecture, cf.Created = "linux", arch, v1.Time{Time: at}
		cf.Config = v1.Config{
			User:       fmt.Sprintf("%d:%d", uid, uid),
			Entrypoint: []string{"/" + binPath},
			Env: []string{
				"PATH=/usr/local/bin:/usr/bin:/bin",
				"HOME=/home/nonroot",
				"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
			},
			WorkingDir:   "/home/nonroot",
			ExposedPorts: map[string]struct{}{"8080/tcp": {}},
			Labels:       labels,
		}
		if img, err = mutate.ConfigFile(img, cf); err != nil {
			return err
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}},
		})
	}
	return writeArchive(out, ref, idx)
}

// layer is an OCI layer from an uncompressed tar (gzip, compressed the same
// way on every run).
func layer(b []byte) (v1.Layer, error) {
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	}, tarball.WithMediaType(types.OCILayer))
}

// tarWriter writes a layer's entries, all owned by root unless said
// otherwise, all with the same time.
type tarWriter struct {
	buf bytes.Buffer
	tw  *tar.Writer
	at  time.Time
}

func newTar(at time.Time) *tarWriter {
	w := &tarWriter{at: at}
	w.tw = tar.NewWriter(&w.buf)
	return w
}

func (w *tarWriter) dir(name string, mode int64, owner int) error {
	return w.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, Uid: owner, Gid: owner, ModTime: w.at, Format: tar.FormatPAX})
}

func (w *tarWriter) file(name string, mode int64, data []byte) error {
	if err := w.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: w.at, Format: tar.FormatPAX}); err != nil {
		return err
	}
	_, err := w.tw.Write(data)
	return err
}

func (w *tarWriter) symlink(name, target string) error {
	return w.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777, ModTime: w.at, Format: tar.FormatPAX})
}

func (w *tarWriter) bytes() ([]byte, error) {
	if err := w.tw.Close(); err != nil {
		return nil, err
	}
	return w.buf.Bytes(), nil
}

// baseFiles is the layer every platform shares: what a static Go program
// expects to find around it.
func baseFiles(at time.Time, caFile, zoneinfo string) ([]byte, error) {
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("CA certificates (install Debian's ca-certificates): %w", err)
	}
	w := newTar(at)
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", uid, uid)
	group := fmt.Sprintf("root:x:0:\nnobody:x:65534:\nnonroot:x:%d:\n", uid)
	steps := []func() error{
		func() error { return w.dir("etc", 0o755, 0) },
		func() error { return w.file("etc/group", 0o644, []byte(group)) },
		func() error { return w.file("etc/nsswitch.conf", 0o644, []byte("hosts: files dns\n")) },
		func() error { return w.file("etc/passwd", 0o644, []byte(passwd)) },
		func() error { return w.dir("etc/ssl", 0o755, 0) },
		func() error { return w.dir("etc/ssl/certs", 0o755, 0) },
		func() error { return w.file("etc/ssl/certs/ca-certificates.crt", 0o644, ca) },
		func() error { return w.dir("home", 0o755, 0) },
		func() error { return w.dir("home/nonroot", 0o700, uid) },
		// Salve's default data directory lives under the working
		// directory; /tmp for anything that wants a scratch file.
		func() error { return w.dir("tmp", 0o1777, 0) },
		func() error { return w.dir("usr", 0o755, 0) },
		func() error { return w.dir("usr/local", 0o755, 0) },
		func() error { return w.dir("usr/local/bin", 0o755, 0) },
		func() error { return w.dir("usr/share", 0o755, 0) },
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return nil, err
		}
	}
	if zoneinfo != "" {
		if err := addTree(w, zoneinfo, "usr/share/zoneinfo"); err != nil {
			return nil, fmt.Errorf("zoneinfo (install Debian's tzdata): %w", err)
		}
	}
	return w.bytes()
}

// addTree copies a directory tree in sorted order, regular files, dirs and
// symlinks only. zoneinfo's posix/ and right/ copies are left out: the
// plain names are what TZ and time.LoadLocation use.
func addTree(w *tarWriter, src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		name := path.Join(dst, filepath.ToSlash(rel))
		if rel == "." {
			name = dst
		}
		if d.IsDir() && (rel == "posix" || rel == "right") {
			return filepath.SkipDir
		}
		switch {
		case d.IsDir():
			return w.dir(name, 0o755, 0)
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return w.symlink(name, target)
		case d.Type().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return w.file(name, 0o644, data)
		}
		return nil
	})
}

func binaryLayer(file string, at time.Time) ([]byte, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	// A static binary starts with ELF and has no interpreter; a dynamic one
	// would fail at start in an image without libc.
	if !bytes.HasPrefix(data, []byte("\x7fELF")) {
		return nil, fmt.Errorf("%s is not an ELF binary", file)
	}
	if bytes.Contains(data[:min(len(data), 4096)], []byte("/lib64/ld-linux")) || bytes.Contains(data[:min(len(data), 4096)], []byte("/lib/ld-linux")) {
		return nil, fmt.Errorf("%s is dynamically linked: build it with CGO_ENABLED=0", file)
	}
	w := newTar(at)
	if err := w.file(binPath, 0o755, data); err != nil {
		return nil, err
	}
	return w.bytes()
}

// writeArchive writes an OCI image layout as a tar: oci-layout, index.json
// (naming the image) and every blob, in a fixed order.
func writeArchive(out, ref string, idx v1.ImageIndex) error {
	blobs := map[string][]byte{}
	add := func(digest v1.Hash, data []byte) {
		blobs["blobs/"+digest.Algorithm+"/"+digest.Hex] = data
	}
	rawIdx, err := idx.RawManifest()
	if err != nil {
		return err
	}
	idxDigest, err := idx.Digest()
	if err != nil {
		return err
	}
	add(idxDigest, rawIdx)
	im, err := idx.IndexManifest()
	if err != nil {
		return err
	}
	for _, desc := range im.Manifests {
		img, err := idx.Image(desc.Digest)
		if err != nil {
			return err
		}
		raw, err := img.RawManifest()
		if err != nil {
			return err
		}
		add(desc.Digest, raw)
		cfgName, err := img.ConfigName()
		if err != nil {
			return err
		}
		rawCfg, err := img.RawConfigFile()
		if err != nil {
			return err
		}
		add(cfgName, rawCfg)
		layers, err := img.Layers()
		if err != nil {
			return err
		}
		for _, l := range layers {
			d, err := l.Digest()
			if err != nil {
				return err
			}
			rc, err := l.Compressed()
			if err != nil {
				return err
			}
			data, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				return err
			}
			add(d, data)
		}
	}
	size := int64(len(rawIdx))
	top := v1.IndexManifest{
		SchemaVersion: 2,
		MediaType:     types.OCIImageIndex,
		Manifests: []v1.Descriptor{{
			MediaType: types.OCIImageIndex,
			Size:      size,
			Digest:    idxDigest,
			Annotations: map[string]string{
				// The name podman and skopeo give the loaded image, and
				// the one Docker reads.
				"org.opencontainers.image.ref.name": ref,
				"io.containerd.image.name":          ref,
			},
		}},
	}
	rawTop, err := json.Marshal(top)
	if err != nil {
		return err
	}

	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	tmp := out + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	w := newTar(time.Unix(0, 0).UTC())
	w.tw = tar.NewWriter(f)
	names := make([]string, 0, len(blobs))
	for n := range blobs {
		names = append(names, n)
	}
	sort.Strings(names)
	err = errors.Join(
		w.file("oci-layout", 0o644, []byte(`{"imageLayoutVersion":"1.0.0"}`)),
		w.file("index.json", 0o644, rawTop),
		w.dir("blobs", 0o755, 0),
		w.dir("blobs/sha256", 0o755, 0),
	)
	for _, n := range names {
		if err != nil {
			break
		}
		err = w.file(n, 0o644, blobs[n])
	}
	if err == nil {
		err = w.tw.Close()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, out); err != nil {
		return err
	}
	fmt.Printf("image: %s (%s) written to %s: %s\n", ref, strings.Join(platformsOf(im), ", "), out, idxDigest)
	return nil
}

func platformsOf(im *v1.IndexManifest) []string {
	var ps []string
	for _, d := range im.Manifests {
		if d.Platform != nil {
			ps = append(ps, d.Platform.OS+"/"+d.Platform.Architecture)
		}
	}
	return ps
}
