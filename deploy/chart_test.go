package deploy_test

// The Helm chart in helm/salve: it lints, it refuses unsafe settings, what
// it renders matches Salve's real command line and config file (drift), and
// every object it renders is accepted by a real Kubernetes 1.34 API server
// (server-side dry-run, with Pod Security "restricted" enforced), where the
// default release actually rolls out onto kwok's fake nodes.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"

	"github.com/salve-sre/salve/internal/app"
	"github.com/salve-sre/salve/internal/cli"
	"github.com/salve-sre/salve/internal/devkube"
	"github.com/salve-sre/salve/internal/testenv"
	"github.com/salve-sre/salve/internal/vault"
)

const (
	chartDir       = "helm/salve"
	prodValues     = "helm/salve/ci/production-values.yaml"
	altValues      = "helm/salve/ci/alternatives-values.yaml"
	chartReadme    = "helm/salve/README.md"
	chartValues    = "helm/salve/values.yaml"
	helmVersion    = "v3.22.0" // scripts/helm-tools.sh builds this one
	release        = "salve"
	fieldManager   = "salve-chart-test"
	kubeRootCAPath = "/etc/salve/kube-root-ca/ca.crt"
)

// helmBinary finds the helm scripts/helm-tools.sh builds: $SALVE_HELM_BIN,
// else ${SALVE_CACHE:-~/.cache/salve}/bin/helm-<version>. A missing helm
// fails the test: it never skips.
func helmBinary(t testing.TB) string {
	t.Helper()
	p := os.Getenv("SALVE_HELM_BIN")
	if p == "" {
		cache := os.Getenv("SALVE_CACHE")
		if cache == "" {
			home, err := os.UserHomeDir()
			require.NoError(t, err, "find helm: set SALVE_HELM_BIN")
			cache = filepath.Join(home, ".cache", "salve")
		}
		p = filepath.Join(cache, "bin", "helm-"+helmVersion)
	}
	info, err := os.Stat(p)
	if err != nil || info.IsDir() || info.Mode()&0o111 == 0 {
		t.Fatalf("helm %s is missing or not executable (%s): run scripts/helm-tools.sh, which builds it (or set SALVE_HELM_BIN)", helmVersion, p)
	}
	return p
}

// runHelm runs helm with its own cache and config directories, so the
// test never reads or writes the user's repositories and plugins.
func runHelm(t testing.TB, args ...string) (string, error) {
	t.Helper()
	bin := helmBinary(t)
	home := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"),
		"KUBECONFIG="+filepath.Join(home, "no-kubeconfig"),
	)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		return out.String(), fmt.Errorf("helm %s: timed out after 2m", strings.Join(args, " "))
	}
	return out.String(), err
}

// renderArgs are `helm template` arguments for the release in namespace.
func renderArgs(namespace string, valueFiles []string, set ...string) []string {
	args := []string{"template", release, chartDir, "--namespace", namespace, "--kube-version", devkube.KubeVersion}
	for _, f := range valueFiles {
		args = append(args, "-f", f)
	}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	return args
}

// render runs helm template and decodes every object it prints.
func render(t testing.TB, namespace string, valueFiles []string, set ...string) []*unstructured.Unstructured {
	t.Helper()
	out, err := runHelm(t, renderArgs(namespace, valueFiles, set...)...)
	require.NoError(t, err, "helm template %v --set %v:\n%s", valueFiles, set, out)
	return decodeObjects(t, out)
}

func decodeObjects(t testing.TB, manifest string) []*unstructured.Unstructured {
	t.Helper()
	dec := k8syaml.NewYAMLOrJSONDecoder(strings.NewReader(manifest), 4096)
	var objs []*unstructured.Unstructured
	for {
		var m map[string]any
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err, "decode helm's output:\n%s", manifest)
		if len(m) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		require.NotEmpty(t, u.GetKind(), "an object without kind: %v", m)
		require.NotEmpty(t, u.GetName(), "a %s without name", u.GetKind())
		objs = append(objs, u)
	}
	require.NotEmpty(t, objs, "helm rendered nothing")
	return objs
}

func find(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	return nil
}

func kinds(objs []*unstructured.Unstructured) map[string]int {
	n := map[string]int{}
	for _, o := range objs {
		n[o.GetAPIVersion()+" "+o.GetKind()]++
	}
	return n
}

func deployments(t testing.TB, objs []*unstructured.Unstructured) map[string]*appsv1.Deployment {
	t.Helper()
	out := map[string]*appsv1.Deployment{}
	for _, o := range objs {
		if o.GetKind() != "Deployment" {
			continue
		}
		var d appsv1.Deployment
		require.NoError(t, runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &d), "Deployment %s", o.GetName())
		out[d.Labels["app.kubernetes.io/component"]] = &d
	}
	require.Contains(t, out, "server", "no server Deployment")
	require.Contains(t, out, "worker", "no worker Deployment")
	return out
}

func container(t testing.TB, d *appsv1.Deployment, name string) corev1.Container {
	t.Helper()
	for _, c := range d.Spec.Template.Spec.Containers {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("Deployment %s has no container %q", d.Name, name)
	return corev1.Container{}
}

// valueSets are the values the tests render: the chart's defaults, the
// production-like file, and the other branches (Vault Agent files, AppRole,
// external clusters, no api role, HTTPS); ns is where the Kubernetes test
// dry-runs each.
var valueSets = []struct {
	name  string
	files []string
	ns    string
}{
	{"default values", nil, "salve"},
	{"production values", []string{prodValues}, "salve-prod"},
	{"alternative values", []string{altValues}, "salve-alt"},
}

// agentDir is where Vault Agent renders files; the chart does not mount it.
const agentDir = "/vault/secrets/"

func TestChartLint(t *testing.T) {
	for _, vs := range valueSets {
		t.Run(vs.name, func(t *testing.T) {
			args := []string{"lint", chartDir, "--strict", "--kube-version", devkube.KubeVersion}
			for _, f := range vs.files {
				args = append(args, "-f", f)
			}
			out, err := runHelm(t, args...)
			require.NoError(t, err, "helm %s:\n%s", strings.Join(args, " "), out)
			require.Contains(t, out, "0 chart(s) failed", out)
			for _, line := range strings.Split(out, "\n") {
				require.False(t, strings.Contains(line, "[WARNING]") || strings.Contains(line, "[ERROR]"), "helm lint: %s", line)
			}
		})
	}
}

// The chart refuses settings that would lose or fork the audit chain, and
// names what to change.
func TestChartRefusesUnsafeSettings(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  []string
		want string // "" = renders
	}{
		{"3 api replicas on SQLite", []string{"server.replicas=3"}, "more than one api replica needs PostgreSQL"},
		{"HPA with the api role on SQLite", []string{"server.autoscaling.enabled=true"}, "server.autoscaling.enabled with the api role needs a PostgreSQL audit store"},
		{"SQLite path as auditDB.url", []string{"auditDB.url=/data/audit.db"}, "want a postgres:// or postgresql:// URL"},
		{"3 api replicas on PostgreSQL", []string{"server.replicas=3", "auditDB.url=postgres://salve@db/salve"}, ""},
		{"HPA with a PostgreSQL Secret", []string{"server.autoscaling.enabled=true", "auditDB.existingSecret=salve-audit-db"}, ""},
		{"3 replicas without the api role", []string{"server.replicas=3", "server.roles=ingest\\,trigger"}, ""},
		{"worker role on the server", []string{"server.roles=ingest\\,worker"}, `unknown role "worker"`},
		{"no role", []string{"server.roles=\\,"}, "no role given"},
		{"approle without a secret ID", []string{"vault.enabled=true", "vault.auth.method=approle", "vault.auth.approle.roleID=r"}, "set vault.auth.approle.roleID and the secret ID"},
		{"gitSync without a repo", []string{"runbooks.source=gitSync"}, "set runbooks.gitSync.repo"},
		{"Temporal TLS without a CA", []string{"temporal.tls.enabled=true"}, "give the frontend's CA"},
		{"tracing over an unknown protocol", []string{"tracing.otlpEndpoint=http://c:4318", "tracing.protocol=http/json"}, `tracing.protocol "http/json": want http/protobuf or grpc`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := runHelm(t, renderArgs("salve", nil, tc.set...)...)
			if tc.want == "" {
				require.NoError(t, err, out)
				return
			}
			require.Error(t, err, "helm template --set %v rendered, want a refusal containing %q", tc.set, tc.want)
			require.Contains(t, out, tc.want)
		})
	}

	// Tracing: the standard variables on every pod that runs a role, and
	// none while no endpoint is set.
	for _, d := range deployments(t, render(t, "salve", []string{prodValues})) {
		env := map[string]string{}
		for _, e := range container(t, d, "salve").Env {
			env[e.Name] = e.Value
		}
		require.Equal(t, "http://otel-collector.observability.svc:4317", env["OTEL_EXPORTER_OTLP_ENDPOINT"], d.Name)
		require.Equal(t, "grpc", env["OTEL_EXPORTER_OTLP_PROTOCOL"], d.Name)
		require.Equal(t, "parentbased_traceidratio", env["OTEL_TRACES_SAMPLER"], d.Name)
		require.Equal(t, "0.25", env["OTEL_TRACES_SAMPLER_ARG"], d.Name)
		require.Equal(t, "https://jaeger.example.com/trace/{traceId}", env["SALVE_TRACE_URL"], d.Name)
	}
	for _, d := range deployments(t, render(t, "salve", nil)) {
		for _, e := range container(t, d, "salve").Env {
			require.NotContains(t, e.Name, "OTEL_", "%s: tracing is off by default", d.Name)
		}
	}
	// A ratio of 0 (sample nothing) is a value, not an absent one.
	arg := "absent"
	for _, e := range container(t, deployments(t, render(t, "salve", nil, "tracing.otlpEndpoint=http://c:4318", "tracing.sampler=traceidratio", "tracing.samplerArg=0"))["worker"], "salve").Env {
		if e.Name == "OTEL_TRACES_SAMPLER_ARG" {
			arg = e.Value
		}
	}
	require.Equal(t, "0", arg)

	// Without the api role there is no audit store to configure.
	objs := render(t, "salve", nil, "server.replicas=3", "server.roles=ingest\\,trigger")
	server := container(t, deployments(t, objs)["server"], "salve")
	for _, e := range server.Env {
		require.NotContains(t, []string{"SALVE_AUDIT_DB", "SALVE_AUDIT_DB_FILE"}, e.Name, "the audit store is set without the api role")
	}
	require.Nil(t, find(objs, "PersistentVolumeClaim", release+"-audit"), "an audit volume without the api role")
}

// flagName maps SALVE_STREAM_REPLICAS to stream-replicas, as
// internal/cli's envOverrides does in reverse.
func flagName(env string) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(env, "SALVE_")), "_", "-")
}

// mountFor returns the volume mount that holds path, and the path inside
// the volume.
func mountFor(c corev1.Container, p string) (corev1.VolumeMount, string, bool) {
	var best corev1.VolumeMount
	found := false
	for _, m := range c.VolumeMounts {
		if (p == m.MountPath || strings.HasPrefix(p, strings.TrimSuffix(m.MountPath, "/")+"/")) && len(m.MountPath) > len(best.MountPath) {
			best, found = m, true
		}
	}
	return best, strings.TrimPrefix(strings.TrimPrefix(p, best.MountPath), "/"), found
}

// checkFileInPod fails unless path is inside one of c's volumes and, for
// a Secret or ConfigMap volume that lists its items, names one of them.
func checkFileInPod(t *testing.T, d *appsv1.Deployment, c corev1.Container, what, p string) {
	t.Helper()
	m, rel, ok := mountFor(c, p)
	if !ok {
		t.Errorf("%s/%s: %s %s is in no volume the container mounts", d.Name, c.Name, what, p)
		return
	}
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Name != m.Name {
			continue
		}
		var items []corev1.KeyToPath
		switch {
		case v.Secret != nil:
			items = v.Secret.Items
		case v.ConfigMap != nil:
			items = v.ConfigMap.Items
		}
		if len(items) == 0 || rel == "" {
			return
		}
		first := strings.SplitN(rel, "/", 2)[0]
		if !slices.ContainsFunc(items, func(k corev1.KeyToPath) bool { return k.Path == rel || k.Path == first }) {
			t.Errorf("%s/%s: %s %s: volume %s (mounted at %s) has no item %q", d.Name, c.Name, what, p, v.Name, m.MountPath, rel)
		}
		return
	}
	t.Errorf("%s/%s: mount %s names no volume of the pod", d.Name, c.Name, m.Name)
}

// kubeCredential matches the kubeconfig fields that carry a credential.
var kubeCredential = regexp.MustCompile(`(?m)^\s*(token|tokenFile|client-certificate|client-certificate-data|client-key|client-key-data|username|password|exec|auth-provider):`)

// What the chart renders matches what Salve reads: the config file parses
// strictly with app.LoadFileConfig, every SALVE_* variable and --flag is a
// real flag of `salve server` / `salve worker` with a value it accepts,
// the server's roles parse with app.ParseRoles, every file a setting names
// is mounted, and the worker's cluster list parses as Salve parses it.
func TestChartDrift(t *testing.T) {
	for _, vs := range valueSets {
		t.Run(vs.name, func(t *testing.T) {
			objs := render(t, "salve", vs.files)
			deps := deployments(t, objs)

			// (1) The config file.
			var data map[string]string
			if cfg := find(objs, "Secret", release+"-config"); cfg != nil {
				data, _, _ = unstructured.NestedStringMap(cfg.Object, "stringData")
				require.Len(t, data, 1, "the config Secret should hold one file")
			}
			cfgPath := agentDir + "salve.yaml" // alternative values: rendered by Vault Agent
			for key, body := range data {
				cfgPath = filepath.Join(t.TempDir(), key)
				require.NoError(t, os.WriteFile(cfgPath, []byte(body), 0o600))
				fc, err := app.LoadFileConfig(cfgPath)
				require.NoError(t, err, "the chart's config file %s does not parse as Salve parses it:\n%s", key, body)
				if vs.name == "production values" {
					require.NotEmpty(t, fc.Auth.Tokens, "production values: auth.tokens lost on the way")
					require.NotEmpty(t, fc.Notifications.Targets, "production values: notifications lost on the way")
				}
				cfgPath = "/etc/salve/config/" + key
			}

			for component, d := range deps {
				c := container(t, d, "salve")
				require.NotEmpty(t, c.Args, "%s: no subcommand", d.Name)
				sub := c.Args[0]
				require.Equal(t, component, sub, "%s runs `salve %s`", d.Name, sub)
				root := cli.NewRoot(io.Discard, io.Discard)
				cmd, _, err := root.Find([]string{sub})
				require.NoError(t, err)
				require.Equal(t, sub, cmd.Name(), "salve has no subcommand %q", sub)
				flags := cmd.Flags()

				// (2) Every variable and flag is one of the subcommand's.
				env := map[string]string{}
				for _, e := range c.Env {
					if !strings.HasPrefix(e.Name, "SALVE_") {
						continue
					}
					name := flagName(e.Name)
					fl := flags.Lookup(name)
					if fl == nil {
						t.Errorf("%s: env %s is no flag of `salve %s` (--%s does not exist): drift between the chart and internal/cli", d.Name, e.Name, sub, name)
						continue
					}
					if e.ValueFrom != nil {
						require.NotNil(t, e.ValueFrom.SecretKeyRef, "%s: env %s: only Secret references", d.Name, e.Name)
						continue
					}
					env[e.Name] = e.Value
					if err := fl.Value.Set(e.Value); err != nil {
						t.Errorf("%s: env %s=%q: `salve %s --%s` refuses it: %v", d.Name, e.Name, e.Value, sub, name, err)
					}
				}
				for _, a := range c.Args[1:] {
					if !strings.HasPrefix(a, "--") {
						t.Errorf("%s: argument %q is not a --flag", d.Name, a)
						continue
					}
					name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
					if flags.Lookup(name) == nil {
						t.Errorf("%s: argument %s is no flag of `salve %s`", d.Name, a, sub)
					}
				}

				// The pod serves on all interfaces, on the port the probes,
				// the Service and the ServiceMonitor use.
				require.Equal(t, "0.0.0.0:8080", env["SALVE_LISTEN"], "%s: --listen", d.Name)
				require.Len(t, c.Ports, 1)
				require.Equal(t, "http", c.Ports[0].Name)
				require.EqualValues(t, 8080, c.Ports[0].ContainerPort)
				require.Equal(t, "/healthz", c.LivenessProbe.HTTPGet.Path, "%s: liveness", d.Name)
				// The webhook's readiness needs only NATS; the worker's is its
				// NATS and Temporal connections.
				wantReady := "/readyz"
				if strings.HasSuffix(d.Name, "-server") {
					wantReady = "/readyz?check=nats"
				}
				require.Equal(t, wantReady, c.ReadinessProbe.HTTPGet.Path, "%s: readiness", d.Name)
				require.Equal(t, "/healthz", c.StartupProbe.HTTPGet.Path, "%s: startup", d.Name)
				for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
					require.Equal(t, "http", p.HTTPGet.Port.String(), "%s: probes use the named port", d.Name)
				}
				require.Equal(t, "json", env["SALVE_LOG_FORMAT"], "%s: production logs are JSON", d.Name)
				require.Equal(t, cfgPath, env["SALVE_CONFIG"], "%s: --config is not the chart's config file", d.Name)
				require.NotEmpty(t, env["SALVE_NATS_URL"], "%s: --nats-url", d.Name)
				require.NotEmpty(t, env["SALVE_TEMPORAL_ADDRESS"], "%s: --temporal-address", d.Name)
				require.NotEmpty(t, env["SALVE_DATA_DIR"], "%s: --data-dir", d.Name)

				// Every file a setting names is in a volume of the pod, or
				// rendered there by Vault Agent.
				agent := d.Spec.Template.Annotations["vault.hashicorp.com/agent-inject"] == "true"
				for name, v := range env {
					switch {
					case agent && strings.HasPrefix(v, agentDir):
					case strings.HasPrefix(v, "/"):
						checkFileInPod(t, d, c, name, v)
					}
				}
				// The data dir is an emptyDir (or a volume), never the
				// read-only root file system.
				dm, _, ok := mountFor(c, env["SALVE_DATA_DIR"])
				require.True(t, ok, "%s: --data-dir %s is not a volume", d.Name, env["SALVE_DATA_DIR"])
				require.False(t, dm.ReadOnly, "%s: --data-dir is read-only", d.Name)

				// (3) The server's roles.
				if component == "server" {
					roles, err := app.ParseRoles(env["SALVE_ROLES"])
					require.NoError(t, err, "%s: SALVE_ROLES=%q", d.Name, env["SALVE_ROLES"])
					require.False(t, roles.Worker, "%s: the worker role runs in the worker Deployment", d.Name)
					if vs.name != "alternative values" {
						require.True(t, roles.Ingest && roles.Trigger && roles.API, "%s: roles %q", d.Name, env["SALVE_ROLES"])
					}
					var hasToken, hasAudit bool
					for _, e := range c.Env {
						// Secrets come as files (checked above to be
						// mounted), never in the environment.
						require.NotEqual(t, "SALVE_WEBHOOK_TOKEN", e.Name, "%s: the webhook token is in the environment", d.Name)
						hasToken = hasToken || e.Name == "SALVE_WEBHOOK_TOKEN_FILE"
						hasAudit = hasAudit || e.Name == "SALVE_AUDIT_DB" || e.Name == "SALVE_AUDIT_DB_FILE"
					}
					require.Equal(t, roles.Ingest, hasToken, "%s: the ingest role (and only it) takes the webhook token, from a Secret mounted as a file", d.Name)
					require.Equal(t, roles.API, hasAudit, "%s: the api role (and only it) needs --audit-db", d.Name)
				}

				// Pod security: restricted, and the token only where Vault's
				// Kubernetes auth needs it.
				ps := d.Spec.Template.Spec
				require.NotNil(t, ps.SecurityContext.RunAsNonRoot)
				require.True(t, *ps.SecurityContext.RunAsNonRoot, "%s: runAsNonRoot", d.Name)
				require.Equal(t, corev1.SeccompProfileTypeRuntimeDefault, ps.SecurityContext.SeccompProfile.Type, "%s: seccomp", d.Name)
				for _, cc := range append(slices.Clone(ps.InitContainers), ps.Containers...) {
					sc := cc.SecurityContext
					require.NotNil(t, sc, "%s/%s: no securityContext", d.Name, cc.Name)
					require.True(t, *sc.ReadOnlyRootFilesystem, "%s/%s: readOnlyRootFilesystem", d.Name, cc.Name)
					require.False(t, *sc.AllowPrivilegeEscalation, "%s/%s: allowPrivilegeEscalation", d.Name, cc.Name)
					require.Equal(t, []corev1.Capability{"ALL"}, sc.Capabilities.Drop, "%s/%s: drop ALL", d.Name, cc.Name)
					require.NotNil(t, cc.Resources.Requests, "%s/%s: resources", d.Name, cc.Name)
				}
				wantToken := agent || (component == "worker" && env["SALVE_VAULT_KUBERNETES_AUTH_ROLE"] != "")
				require.NotNil(t, ps.AutomountServiceAccountToken)
				require.Equal(t, wantToken, *ps.AutomountServiceAccountToken, "%s: automountServiceAccountToken", d.Name)
				if data != nil {
					require.NotEmpty(t, d.Spec.Template.Annotations["checksum/config"], "%s: no checksum/config annotation: a config change would not roll the pods", d.Name)
				}

				// The worker's clusters: addresses and CAs only, read as
				// Salve reads them.
				if kc := env["SALVE_KUBECONFIG"]; kc != "" {
					require.Equal(t, "worker", component, "only the worker acts on clusters")
					cm := find(objs, "ConfigMap", release+"-clusters")
					require.NotNil(t, cm, "no ConfigMap %s-clusters", release)
					body, _, _ := unstructured.NestedString(cm.Object, "data", "kubeconfig")
					require.Empty(t, kubeCredential.FindAllString(body, -1), "the clusters kubeconfig must hold no credentials")
					if strings.Contains(body, kubeRootCAPath) {
						checkFileInPod(t, d, c, "the in-cluster CA", kubeRootCAPath)
						ca := filepath.Join(t.TempDir(), "ca.crt")
						require.NoError(t, os.WriteFile(ca, []byte("in-cluster CA"), 0o600))
						body = strings.ReplaceAll(body, kubeRootCAPath, ca)
					}
					kcPath := filepath.Join(t.TempDir(), "kubeconfig")
					require.NoError(t, os.WriteFile(kcPath, []byte(body), 0o600))
					def, others, err := vault.ClustersFromKubeconfig(kcPath)
					require.NoError(t, err, "the worker's clusters kubeconfig does not parse as Salve parses it:\n%s", body)
					require.NotEmpty(t, def.Host)
					require.NotEmpty(t, def.CAData, "the default cluster has no CA")
					switch vs.name {
					case "production values":
						require.Equal(t, "https://kubernetes.default.svc", def.Host)
						require.Contains(t, others, "prod-eu")
						require.NotEmpty(t, others["prod-eu"].CAData)
					case "alternative values":
						require.Equal(t, "https://shop.k8s.example.com:6443", def.Host)
						require.Contains(t, others, "payments")
					}
				}
			}

			// Least privilege: Salve needs no Role or ClusterRole of its own.
			for _, o := range objs {
				require.NotContains(t, []string{"Role", "ClusterRole", "RoleBinding"}, o.GetKind(), "%s %s: Salve needs no RBAC", o.GetKind(), o.GetName())
				if o.GetKind() == "ClusterRoleBinding" {
					ref, _, _ := unstructured.NestedString(o.Object, "roleRef", "name")
					require.Equal(t, "system:auth-delegator", ref, "the only binding is Vault's token reviewer")
				}
			}

			n := kinds(objs)
			if vs.name == "production values" {
				for _, k := range []string{"autoscaling/v2 HorizontalPodAutoscaler", "policy/v1 PodDisruptionBudget"} {
					require.Equal(t, 2, n[k], "%s: want one per Deployment (have %v)", k, n)
				}
				for _, k := range []string{"networking.k8s.io/v1 Ingress", "monitoring.coreos.com/v1 ServiceMonitor"} {
					require.Equal(t, 1, n[k], "%s (have %v)", k, n)
				}
				require.Nil(t, deps["server"].Spec.Replicas, "with an HPA the Deployment leaves replicas to it")
			}
		})
	}
}

// Every value in values.yaml has a row in the chart README's table, and
// every row names a value that exists.
func TestChartValuesDocumented(t *testing.T) {
	b, err := os.ReadFile(chartValues)
	require.NoError(t, err)
	var root yaml.Node
	require.NoError(t, yaml.Unmarshal(b, &root))
	// Maps documented as one value (Kubernetes objects passed through).
	opaque := map[string]bool{"resources": true, "livenessProbe": true, "readinessProbe": true, "startupProbe": true,
		"podSecurityContext": true, "securityContext": true, "strategy": true}
	values := map[string]bool{}
	var walk func(prefix string, n *yaml.Node)
	walk = func(prefix string, n *yaml.Node) {
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i].Value, n.Content[i+1]
			key := strings.TrimPrefix(prefix+"."+k, ".")
			if v.Kind == yaml.MappingNode && len(v.Content) > 0 && !opaque[k] {
				walk(key, v)
				continue
			}
			values[key] = true
		}
	}
	walk("", root.Content[0])

	readme, err := os.ReadFile(chartReadme)
	require.NoError(t, err)
	key := regexp.MustCompile("`([A-Za-z0-9.]+)`")
	documented := map[string]bool{}
	for _, line := range strings.Split(string(readme), "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		first := strings.Split(line, "|")[1]
		for _, m := range key.FindAllStringSubmatch(first, -1) {
			documented[m[1]] = true
		}
	}
	var missing, stale []string
	for v := range values {
		if !documented[v] {
			missing = append(missing, v)
		}
	}
	for d := range documented {
		if !values[d] {
			stale = append(stale, d)
		}
	}
	sort.Strings(missing)
	sort.Strings(stale)
	require.Empty(t, missing, "values without a row in %s", chartReadme)
	require.Empty(t, stale, "rows in %s for values that do not exist", chartReadme)
}

// The Alertmanager receiver example is valid to the real amtool, sends what
// Salve needs, and points at the Service the chart creates.
func TestChartAlertmanagerReceiver(t *testing.T) {
	const file = "alertmanager/alertmanager.yaml"
	amtool := testenv.Binary(t, "amtool", "apt-get install -y prometheus-alertmanager")
	out, err := exec.Command(amtool, "check-config", file).CombinedOutput()
	require.NoError(t, err, "amtool check-config %s:\n%s", file, out)

	b, err := os.ReadFile(file)
	require.NoError(t, err)
	var cfg struct {
		Route struct {
			Receiver       string `yaml:"receiver"`
			GroupWait      string `yaml:"group_wait"`
			GroupInterval  string `yaml:"group_interval"`
			RepeatInterval string `yaml:"repeat_interval"`
			Routes         []struct {
				Receiver string `yaml:"receiver"`
				Continue bool   `yaml:"continue"`
			} `yaml:"routes"`
		} `yaml:"route"`
		Receivers []struct {
			Name           string `yaml:"name"`
			WebhookConfigs []struct {
				URL          string `yaml:"url"`
				SendResolved *bool  `yaml:"send_resolved"`
				MaxAlerts    *int   `yaml:"max_alerts"`
				HTTPConfig   struct {
					Authorization struct {
						Type            string `yaml:"type"`
						CredentialsFile string `yaml:"credentials_file"`
					} `yaml:"authorization"`
				} `yaml:"http_config"`
			} `yaml:"webhook_configs"`
		} `yaml:"receivers"`
	}
	require.NoError(t, yaml.Unmarshal(b, &cfg))
	var salve int
	for _, r := range cfg.Receivers {
		for _, w := range r.WebhookConfigs {
			if !strings.HasSuffix(w.URL, "/v1/alertmanager") {
				continue
			}
			salve++
			require.NotNil(t, w.SendResolved, "receiver %s: send_resolved", r.Name)
			require.True(t, *w.SendResolved, "receiver %s: Salve needs resolved notifications", r.Name)
			require.NotNil(t, w.MaxAlerts, "receiver %s: max_alerts", r.Name)
			require.Zero(t, *w.MaxAlerts, "receiver %s: max_alerts must be 0: truncated alerts are never sent", r.Name)
			require.Equal(t, "Bearer", w.HTTPConfig.Authorization.Type, "receiver %s", r.Name)
			require.NotEmpty(t, w.HTTPConfig.Authorization.CredentialsFile, "receiver %s: the token from a file", r.Name)
		}
		var hasRoute bool
		for _, sub := range cfg.Route.Routes {
			hasRoute = hasRoute || sub.Receiver == r.Name
		}
		require.True(t, hasRoute || cfg.Route.Receiver == r.Name, "receiver %s has no route", r.Name)
	}
	require.Equal(t, 1, salve, "want one Salve receiver")

	// The URL is the chart's Service for release salve in namespace salve.
	svc := find(render(t, "salve", nil), "Service", release)
	require.NotNil(t, svc, "the chart renders no Service %s", release)
	ports, _, _ := unstructured.NestedSlice(svc.Object, "spec", "ports")
	require.Len(t, ports, 1)
	port := ports[0].(map[string]any)["port"]
	want := fmt.Sprintf("http://%s.salve.svc.cluster.local:%v/v1/alertmanager", release, port)
	var urls []string
	for _, r := range cfg.Receivers {
		for _, w := range r.WebhookConfigs {
			urls = append(urls, w.URL)
		}
	}
	require.Contains(t, urls, want, "the example's URL is not the chart's Service")
	for _, d := range []string{cfg.Route.GroupWait, cfg.Route.GroupInterval, cfg.Route.RepeatInterval} {
		require.NotEmpty(t, d, "set group_wait, group_interval and repeat_interval")
	}
}

// warnings collects the API server's warnings (Pod Security, unknown or
// deprecated fields): the test fails on any.
type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) HandleWarningHeader(_ int, _ string, msg string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, msg)
}

func (w *warnings) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := w.msgs
	w.msgs = nil
	return m
}

type kubeClient struct {
	dyn      dynamic.Interface
	mapper   *restmapper.DeferredDiscoveryRESTMapper
	warnings *warnings
}

func (k *kubeClient) resource(t testing.TB, o *unstructured.Unstructured, namespace string) dynamic.ResourceInterface {
	t.Helper()
	gvk := o.GroupVersionKind()
	m, err := k.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		k.mapper.Reset()
		m, err = k.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	}
	require.NoError(t, err, "the API server does not serve %s", gvk)
	if m.Scope.Name() == "namespace" {
		o.SetNamespace(namespace)
		return k.dyn.Resource(m.Resource).Namespace(namespace)
	}
	return k.dyn.Resource(m.Resource)
}

// apply server-side applies objs in Helm's install order, strictly (an
// unknown field is an error), as a dry run or for real. Any warning fails.
func (k *kubeClient) apply(t testing.TB, ctx context.Context, namespace string, objs []*unstructured.Unstructured, dryRun bool) {
	t.Helper()
	force := true
	opts := metav1.PatchOptions{FieldManager: fieldManager, Force: &force, FieldValidation: "Strict"}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	for _, o := range inInstallOrder(objs) {
		body, err := json.Marshal(o.Object)
		require.NoError(t, err)
		_, err = k.resource(t, o, namespace).Patch(ctx, o.GetName(), types.ApplyPatchType, body, opts)
		require.NoError(t, err, "apply %s %s (dry run %v): the API server refuses it", o.GetKind(), o.GetName(), dryRun)
		if w := k.warnings.take(); len(w) > 0 {
			t.Errorf("apply %s %s (dry run %v): the API server warns:\n  %s", o.GetKind(), o.GetName(), dryRun, strings.Join(w, "\n  "))
		}
	}
}

// inInstallOrder sorts objects as helm install does (releaseutil.InstallOrder).
func inInstallOrder(objs []*unstructured.Unstructured) []*unstructured.Unstructured {
	order := []string{"PriorityClass", "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange", "PodSecurityPolicy",
		"PodDisruptionBudget", "ServiceAccount", "Secret", "SecretList", "ConfigMap", "StorageClass", "PersistentVolume",
		"PersistentVolumeClaim", "CustomResourceDefinition", "ClusterRole", "ClusterRoleList", "ClusterRoleBinding",
		"ClusterRoleBindingList", "Role", "RoleList", "RoleBinding", "RoleBindingList", "Service", "DaemonSet", "Pod",
		"ReplicationController", "ReplicaSet", "Deployment", "HorizontalPodAutoscaler", "StatefulSet", "Job", "CronJob",
		"IngressClass", "Ingress", "APIService"}
	rank := func(kind string) int {
		if i := slices.Index(order, kind); i >= 0 {
			return i
		}
		return len(order)
	}
	out := slices.Clone(objs)
	slices.SortStableFunc(out, func(a, b *unstructured.Unstructured) int { return rank(a.GetKind()) - rank(b.GetKind()) })
	return out
}

// serviceMonitorCRD is a minimal CustomResourceDefinition for the
// Prometheus Operator's ServiceMonitor: the fields the chart sets are typed,
// the rest is preserved.
const serviceMonitorCRD = `
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: servicemonitors.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: {kind: ServiceMonitor, listKind: ServiceMonitorList, plural: servicemonitors, singular: servicemonitor}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              required: [endpoints, selector]
              x-kubernetes-preserve-unknown-fields: true
              properties:
                selector: {type: object, x-kubernetes-preserve-unknown-fields: true}
                namespaceSelector:
                  type: object
                  properties:
                    any: {type: boolean}
                    matchNames: {type: array, items: {type: string}}
                endpoints:
                  type: array
                  items:
                    type: object
                    x-kubernetes-preserve-unknown-fields: true
                    properties:
                      port: {type: string}
                      path: {type: string}
                      scheme: {type: string, enum: [http, https]}
                      interval: {type: string, pattern: '^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$'}
                      scrapeTimeout: {type: string}
`

func waitFor(ctx context.Context, what string, ok func(context.Context) (bool, string)) error {
	last := "not checked yet"
	for {
		done, state := ok(ctx)
		if done {
			return nil
		}
		last = state
		select {
		case <-ctx.Done():
			return fmt.Errorf("timed out waiting for %s; last seen: %s", what, last)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// Every object the chart renders, with the default and the production
// values, is valid for a real Kubernetes 1.34 API server (server-side
// dry-run, strict field validation, Pod Security "restricted" enforced on
// the namespace, no warnings); the default release, pointed at loopback
// NATS, Temporal and Vault, rolls out onto kwok's fake nodes; and a config
// change rolls the pods.
func TestChartKubernetes(t *testing.T) {
	begin := time.Now()
	helmBinary(t) // fail before the slow start
	kc := testenv.Kube(t)
	t.Logf("control plane up in %s", time.Since(begin).Round(100*time.Millisecond))

	w := &warnings{}
	cfg := &rest.Config{
		Host:            kc.Host,
		BearerToken:     kc.AdminToken,
		TLSClientConfig: rest.TLSClientConfig{CAData: kc.CACertPEM},
		WarningHandler:  w,
		QPS:             50,
		Burst:           100,
	}
	dyn, err := dynamic.NewForConfig(cfg)
	require.NoError(t, err)
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	require.NoError(t, err)
	k := &kubeClient{dyn: dyn, mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc)), warnings: w}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// The ServiceMonitor CRD (the Prometheus Operator is not installed).
	crd := decodeObjects(t, serviceMonitorCRD)
	k.apply(t, ctx, "", crd, false)
	crdRes := k.resource(t, crd[0], "")
	require.NoError(t, waitFor(ctx, "the ServiceMonitor CRD to be established", func(ctx context.Context) (bool, string) {
		got, err := crdRes.Get(ctx, crd[0].GetName(), metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		conds, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
		for _, c := range conds {
			m, _ := c.(map[string]any)
			if m["type"] == "Established" && m["status"] == "True" {
				return true, ""
			}
		}
		return false, fmt.Sprint(conds)
	}))
	k.mapper.Reset()

	// Namespaces that enforce the "restricted" Pod Security Standard.
	for _, vs := range valueSets {
		ns := vs.ns
		k.apply(t, ctx, "", []*unstructured.Unstructured{{Object: map[string]any{
			"apiVersion": "v1", "kind": "Namespace",
			"metadata": map[string]any{"name": ns, "labels": map[string]any{
				"pod-security.kubernetes.io/enforce": "restricted",
				"pod-security.kubernetes.io/warn":    "restricted",
			}},
		}}}, false)
	}

	// 1. Dry runs: every object of both renders is valid.
	for _, vs := range valueSets {
		objs := render(t, vs.ns, vs.files)
		k.apply(t, ctx, vs.ns, objs, true)
		t.Logf("%s: %d objects sent as a server-side dry run: %v", vs.name, len(objs), kinds(objs))
	}
	if t.Failed() {
		return
	}

	// 2. The default release, for real, against loopback addresses (kwok
	// fakes the pods: no container runs), with Vault on for the worker and
	// a runbook from the repository in the ConfigMap.
	set := []string{
		"nats.url=nats://127.0.0.1:4222",
		"nats.streamReplicas=1",
		"temporal.address=127.0.0.1:7233",
		"vault.enabled=true",
		"vault.addr=http://127.0.0.1:8200",
		"worker.replicas=2",
	}
	renderReal := func(extra ...string) []*unstructured.Unstructured {
		out, err := runHelm(t, append(renderArgs("salve", nil, append(set, extra...)...),
			"--set-file", `runbooks.files.restart-crashlooping\.yaml=../runbooks/restart-crashlooping.yaml`)...)
		require.NoError(t, err, out)
		return decodeObjects(t, out)
	}
	objs := renderReal()
	cm := find(objs, "ConfigMap", release+"-runbooks")
	require.NotNil(t, cm)
	rb, _, _ := unstructured.NestedString(cm.Object, "data", "restart-crashlooping.yaml")
	require.Contains(t, rb, "kind: Runbook", "the runbook file did not reach the ConfigMap")

	// What the release expects to exist: the webhook token, and a volume
	// for the SQLite audit PVC (no provisioner here).
	k.apply(t, ctx, "salve", []*unstructured.Unstructured{
		{Object: map[string]any{"apiVersion": "v1", "kind": "Secret",
			"metadata":   map[string]any{"name": release + "-webhook"},
			"stringData": map[string]any{"token": "test-webhook-token"}}},
		{Object: map[string]any{"apiVersion": "v1", "kind": "PersistentVolume",
			"metadata": map[string]any{"name": "salve-audit-test"},
			"spec": map[string]any{
				"capacity":                      map[string]any{"storage": "1Gi"},
				"accessModes":                   []any{"ReadWriteOnce"},
				"persistentVolumeReclaimPolicy": "Retain",
				"hostPath":                      map[string]any{"path": "/var/lib/salve-audit-test", "type": "DirectoryOrCreate"},
			}}},
	}, false)
	k.apply(t, ctx, "salve", objs, false)

	depRes := k.resource(t, find(objs, "Deployment", release+"-server"), "salve")
	podRes := k.dyn.Resource(corev1.SchemeGroupVersion.WithResource("pods")).Namespace("salve")
	rolledOut := func(ctx context.Context, name string, annotation string) error {
		return waitFor(ctx, "Deployment "+name+" to roll out", func(ctx context.Context) (bool, string) {
			u, err := depRes.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			var d appsv1.Deployment
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &d); err != nil {
				return false, err.Error()
			}
			s := d.Status
			want := *d.Spec.Replicas
			state := fmt.Sprintf("generation %d observed %d, replicas %d: updated %d ready %d available %d total %d; conditions %v",
				d.Generation, s.ObservedGeneration, want, s.UpdatedReplicas, s.ReadyReplicas, s.AvailableReplicas, s.Replicas, s.Conditions)
			done := s.ObservedGeneration >= d.Generation && s.UpdatedReplicas == want && s.AvailableReplicas == want &&
				s.ReadyReplicas == want && s.Replicas == want
			if done && annotation != "" && d.Spec.Template.Annotations["checksum/config"] != annotation {
				return false, "the template does not carry the new checksum"
			}
			return done, state
		})
	}
	podsReady := func(ctx context.Context, component, checksum string, want int) error {
		sel := "app.kubernetes.io/instance=" + release + ",app.kubernetes.io/component=" + component
		return waitFor(ctx, fmt.Sprintf("%d %s pod(s) Running and Ready on kwok nodes", want, component), func(ctx context.Context) (bool, string) {
			list, err := podRes.List(ctx, metav1.ListOptions{LabelSelector: sel})
			if err != nil {
				return false, err.Error()
			}
			var ready []string
			var states []string
			for _, u := range list.Items {
				var p corev1.Pod
				if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &p); err != nil {
					return false, err.Error()
				}
				isReady := false
				for _, c := range p.Status.Conditions {
					isReady = isReady || (c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue)
				}
				states = append(states, fmt.Sprintf("%s on %q: %s ready=%v", p.Name, p.Spec.NodeName, p.Status.Phase, isReady))
				if p.DeletionTimestamp == nil && isReady && p.Status.Phase == corev1.PodRunning &&
					slices.Contains(kc.Nodes, p.Spec.NodeName) && p.Annotations["checksum/config"] == checksum {
					ready = append(ready, p.Name)
				}
			}
			return len(ready) == want && len(list.Items) == want, strings.Join(states, "; ")
		})
	}
	checksum := func(objs []*unstructured.Unstructured, name string) string {
		d := find(objs, "Deployment", name)
		require.NotNil(t, d)
		v, _, _ := unstructured.NestedString(d.Object, "spec", "template", "metadata", "annotations", "checksum/config")
		require.NotEmpty(t, v)
		return v
	}

	started := time.Now()
	for _, comp := range []struct {
		name     string
		replicas int
	}{{"server", 1}, {"worker", 2}} {
		name := release + "-" + comp.name
		sum := checksum(objs, name)
		require.NoError(t, rolledOut(ctx, name, sum))
		require.NoError(t, podsReady(ctx, comp.name, sum, comp.replicas))
	}
	pvc, err := k.dyn.Resource(corev1.SchemeGroupVersion.WithResource("persistentvolumeclaims")).Namespace("salve").Get(ctx, release+"-audit", metav1.GetOptions{})
	require.NoError(t, err)
	phase, _, _ := unstructured.NestedString(pvc.Object, "status", "phase")
	require.Equal(t, "Bound", phase, "the audit PVC")
	t.Logf("the default release rolled out in %s", time.Since(started).Round(100*time.Millisecond))

	// 3. Rendering is deterministic: the same values apply as a no-op.
	gens := map[string]int64{}
	for _, n := range []string{release + "-server", release + "-worker"} {
		u, err := depRes.Get(ctx, n, metav1.GetOptions{})
		require.NoError(t, err)
		gens[n] = u.GetGeneration()
	}
	k.apply(t, ctx, "salve", renderReal(), false)
	for n, g := range gens {
		u, err := depRes.Get(ctx, n, metav1.GetOptions{})
		require.NoError(t, err)
		require.Equal(t, g, u.GetGeneration(), "re-applying the same values changed Deployment %s: the render is not deterministic", n)
	}

	// 4. A config change rolls both Deployments' pods.
	started = time.Now()
	changed := renderReal("config.values.publicURL=https://salve.example.test")
	k.apply(t, ctx, "salve", changed, false)
	for _, comp := range []struct {
		name     string
		replicas int
	}{{"server", 1}, {"worker", 2}} {
		name := release + "-" + comp.name
		sum := checksum(changed, name)
		require.NotEqual(t, checksum(objs, name), sum, "%s: the config changed but checksum/config did not", name)
		require.NoError(t, rolledOut(ctx, name, sum))
		t.Logf("%s rolled out after %s", name, time.Since(started).Round(100*time.Millisecond))
		require.NoError(t, podsReady(ctx, comp.name, sum, comp.replicas))
		t.Logf("%s pods ready after %s", name, time.Since(started).Round(100*time.Millisecond))
	}
	t.Logf("a config change rolled the pods in %s; whole test %s", time.Since(started).Round(100*time.Millisecond), time.Since(begin).Round(100*time.Millisecond))
}
