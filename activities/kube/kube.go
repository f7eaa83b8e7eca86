// Package kube holds the Kubernetes step kinds: scale, restart, rollback,
// wait_rollout, get and delete_pod. Each acts through client-go on a client
// that Clients hands out for one step attempt (a Vault-issued, namespace-
// scoped token in production; a kubeconfig in development) and releases
// when the attempt ends.
//
// Mutating kinds are safe to retry: they record what they are about to do
// in an annotation on the workload, keyed by the step's idempotency key,
// before doing it, so a retried attempt finishes the same action instead
// of repeating it (a second relative scale, or a rollback of the rollback).
package kube

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/salve-sre/salve/activities/step"
)

// Step kinds.
const (
	KindScale       = "kubernetes.scale"
	KindRestart     = "kubernetes.restart"
	KindRollback    = "kubernetes.rollback"
	KindWaitRollout = "kubernetes.wait_rollout"
	KindGet         = "kubernetes.get"
	KindDeletePod   = "kubernetes.delete_pod"
)

// CredentialKubernetes names the credential the kinds need.
const CredentialKubernetes = "kubernetes"

// Annotations Salve writes on workloads.
const (
	AnnotationRestartedAt = "kubectl.kubernetes.io/restartedAt"
	annotationRevision    = "deployment.kubernetes.io/revision"
	// AnnotationAction records the last Salve action on a workload:
	// "<idempotency key> <detail>".
	AnnotationAction = "salve.dev/last-action"
)

// Target is where a step acts: a cluster named in Salve's configuration
// ("" = the default one) and a namespace.
type Target struct {
	Cluster   string
	Namespace string
}

// Clients hands out a Kubernetes client for one step attempt on one
// target. release is called when the attempt ends, success or failure
// (a Vault-backed implementation revokes the lease there).
type Clients interface {
	For(ctx context.Context, req step.Request, target Target) (client kubernetes.Interface, release func(), err error)
}

// StaticClient is a Clients that always returns the same client, whatever
// the cluster: for tests.
type StaticClient struct{ Client kubernetes.Interface }

// For returns the client.
func (s StaticClient) For(context.Context, step.Request, Target) (kubernetes.Interface, func(), error) {
	return s.Client, func() {}, nil
}

// Options configures the step kinds.
type Options struct {
	// Clients is nil when no cluster is configured: the kinds still
	// validate runbooks, and fail permanently when run.
	Clients Clients
	// Heartbeat reports progress of long waits (activity.RecordHeartbeat).
	Heartbeat func(ctx context.Context, details ...any)
	// PollInterval between rollout checks; default 2s.
	PollInterval time.Duration
	// Now is the clock for restartedAt; time.Now when nil.
	Now func() time.Time
}

// Specs returns every Kubernetes step kind.
func Specs(opts Options) []step.Spec {
	if opts.PollInterval <= 0 {
		opts.PollInterval = 2 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	k := kinds{opts: opts}
	cluster := step.Param{Name: "cluster", Type: step.TypeString, Doc: "cluster from Salve's configuration (a kubeconfig context); default the current one", Sink: step.SinkName}
	target := []step.Param{
		cluster,
		{Name: "namespace", Type: step.TypeString, Required: true, Doc: "namespace of the workload", Sink: step.SinkName},
		{Name: "name", Type: step.TypeString, Required: true, Doc: "name of the workload", Sink: step.SinkName},
		{Name: "kind", Type: step.TypeString, Doc: "Deployment (default) or StatefulSet", Sink: step.SinkName},
	}
	with := func(extra ...step.Param) step.ParamSchema {
		return step.ParamSchema{Params: append(append([]step.Param{}, target...), extra...)}
	}
	return []step.Spec{
		{
			Kind:    KindScale,
			Summary: "Scale a Deployment or StatefulSet to a replica count or by a delta, never past min/max.",
			Params: with(
				step.Param{Name: "replicas", Type: step.TypeInt, Doc: "absolute replica count (give replicas or delta)"},
				step.Param{Name: "delta", Type: step.TypeInt, Doc: "replicas to add (negative to remove)"},
				step.Param{Name: "min", Type: step.TypeInt, Doc: "never scale below this (default 0)"},
				step.Param{Name: "max", Type: step.TypeInt, Doc: "never scale above this (required with delta)"},
			),
			Mutating: true, Credential: CredentialKubernetes, Executor: step.ExecutorFunc(k.scale),
		},
		{
			Kind:    KindRestart,
			Summary: "Rollout-restart a Deployment or StatefulSet (like kubectl rollout restart), optionally waiting for the rollout.",
			Params: with(
				step.Param{Name: "wait", Type: step.TypeBool, Doc: "wait until the restarted rollout is complete (default false)"},
			),
			Mutating: true, Credential: CredentialKubernetes, Executor: step.ExecutorFunc(k.restart),
		},
		{
			Kind:    KindRollback,
			Summary: "Roll a Deployment back to its previous revision or toRevision (like kubectl rollout undo).",
			Params: step.ParamSchema{Params: []step.Param{
				target[0], target[1], target[2],
				{Name: "toRevision", Type: step.TypeInt, Doc: "revision to roll back to (default: the previous one)"},
				{Name: "wait", Type: step.TypeBool, Doc: "wait until the rolled-back rollout is complete (default false)"},
			}},
			Mutating: true, Credential: CredentialKubernetes, Executor: step.ExecutorFunc(k.rollback),
		},
		{
			Kind:       KindWaitRollout,
			Summary:    "Wait until a rollout is complete: updated = available = desired replicas.",
			Params:     with(),
			Credential: CredentialKubernetes, Executor: step.ExecutorFunc(k.waitRollout),
		},
		{
			Kind:       KindGet,
			Summary:    "Read a workload's state (replicas, available, revision, images, conditions, restartedAt) for later steps and when.",
			Params:     with(),
			Credential: CredentialKubernetes, Executor: step.ExecutorFunc(k.get),
		},
		{
			Kind:    KindDeletePod,
			Summary: "Delete pods by name or label selector, at most maxCount, not-ready pods first.",
			Params: step.ParamSchema{Params: []step.Param{
				target[0], target[1],
				{Name: "pod", Type: step.TypeString, Doc: "pod name (give pod or selector)", Sink: step.SinkName},
				{Name: "selector", Type: step.TypeString, Doc: "label selector, e.g. app=cart", Sink: step.SinkName},
				{Name: "maxCount", Type: step.TypeInt, Doc: "most pods to delete (default 1)"},
			}},
			Mutating: true, Credential: CredentialKubernetes, Executor: step.ExecutorFunc(k.deletePod),
		},
	}
}

type kinds struct{ opts Options }

// client obtains the attempt's client; release must be called.
func (k kinds) client(ctx context.Context, req step.Request, t target) (kubernetes.Interface, func(), error) {
	if k.opts.Clients == nil {
		return nil, nil, fmt.Errorf("%w: no Kubernetes access is configured: start Salve with --kubeconfig (development) or Vault credentials", step.ErrPermanent)
	}
	c, release, err := k.opts.Clients.For(ctx, req, Target{Cluster: t.cluster, Namespace: t.namespace})
	if err != nil {
		where := "namespace " + t.namespace
		if t.cluster != "" {
			where = "cluster " + t.cluster + ", " + where
		}
		return nil, nil, fmt.Errorf("kubernetes credentials for %s: %w", where, err)
	}
	return c, release, nil
}

// target is the workload a step acts on.
type target struct {
	cluster, namespace, name, kind string
}

func (t target) String() string {
	s := t.kind + " " + t.namespace + "/" + t.name
	if t.cluster != "" {
		s += " in cluster " + t.cluster
	}
	return s
}

var clusterName = regexp.MustCompile(`^[A-Za-z0-9][-A-Za-z0-9_.@:/]*$`)

func parseCluster(p map[string]any) (string, error) {
	v, ok := p["cluster"]
	if !ok || v == "" {
		return "", nil
	}
	s, err := step.String(v)
	if err != nil || !clusterName.MatchString(s) {
		return "", fmt.Errorf("%w: cluster: want a cluster name from Salve's configuration, got %v", step.ErrInvalidParams, v)
	}
	return s, nil
}

var dns1123 = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`)

func parseTarget(p map[string]any, kindAllowed ...string) (target, error) {
	var t target
	var err error
	if t.cluster, err = parseCluster(p); err != nil {
		return t, err
	}
	if t.namespace, err = step.String(p["namespace"]); err != nil || !dns1123.MatchString(t.namespace) {
		return t, fmt.Errorf("%w: namespace: want a Kubernetes namespace name, got %v", step.ErrInvalidParams, p["namespace"])
	}
	if t.name, err = step.String(p["name"]); err != nil || !dns1123.MatchString(t.name) {
		return t, fmt.Errorf("%w: name: want a Kubernetes object name, got %v", step.ErrInvalidParams, p["name"])
	}
	t.kind = "Deployment"
	if v, ok := p["kind"]; ok {
		s, _ := step.String(v)
		t.kind = ""
		for _, k := range kindAllowed {
			if strings.EqualFold(s, k) {
				t.kind = k
			}
		}
		if t.kind == "" {
			return t, fmt.Errorf("%w: kind: want one of %s, got %q", step.ErrInvalidParams, strings.Join(kindAllowed, ", "), s)
		}
	}
	return t, nil
}

func optInt(p map[string]any, name string) (int, bool, error) {
	v, ok := p[name]
	if !ok || v == "" {
		return 0, false, nil
	}
	n, err := step.Int(v)
	if err != nil {
		return 0, false, fmt.Errorf("%w: %s: %v", step.ErrInvalidParams, name, err)
	}
	return n, true, nil
}

func optBool(p map[string]any, name string) (bool, error) {
	v, ok := p[name]
	if !ok || v == "" {
		return false, nil
	}
	b, err := step.Bool(v)
	if err != nil {
		return false, fmt.Errorf("%w: %s: %v", step.ErrInvalidParams, name, err)
	}
	return b, nil
}

// apiError classifies a Kubernetes API error: what a retry cannot fix
// (not found, forbidden, invalid) is permanent.
func apiError(what string, t target, err error) error {
	switch {
	case apierrors.IsNotFound(err):
		return fmt.Errorf("%w: %s: %s not found", step.ErrPermanent, what, t)
	case apierrors.IsForbidden(err), apierrors.IsUnauthorized(err):
		return fmt.Errorf("%w: %s %s: access denied (check the credential's role): %s", step.ErrPermanent, what, t, apierrors.ReasonForError(err))
	case apierrors.IsInvalid(err), apierrors.IsBadRequest(err):
		return fmt.Errorf("%w: %s %s: %v", step.ErrPermanent, what, t, err)
	}
	return fmt.Errorf("%s %s: %w", what, t, err)
}

// recorded returns the detail Salve recorded for this idempotency key, if
// the workload's last action was this step's.
func recorded(annotations map[string]string, key string) (string, bool) {
	v, ok := annotations[AnnotationAction]
	if !ok || key == "" {
		return "", false
	}
	k, detail, _ := strings.Cut(v, " ")
	return detail, k == key
}

func images(spec corev1.PodSpec) []any {
	out := make([]any, 0, len(spec.Containers))
	for _, c := range spec.Containers {
		out = append(out, c.Name+"="+c.Image)
	}
	return out
}

func conditions(conds []appsv1.DeploymentCondition) map[string]any {
	out := map[string]any{}
	for _, c := range conds {
		out[string(c.Type)] = string(c.Status)
	}
	return out
}

// podsByPriority sorts pods so that not-ready ones come first, then by
// name, so a bounded delete removes the broken pods.
func podsByPriority(pods []corev1.Pod) {
	ready := func(p corev1.Pod) bool {
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady {
				return c.Status == corev1.ConditionTrue
			}
		}
		return false
	}
	sort.SliceStable(pods, func(i, j int) bool {
		ri, rj := ready(pods[i]), ready(pods[j])
		if ri != rj {
			return !ri
		}
		return pods[i].Name < pods[j].Name
	})
}

var errNoHistory = errors.New("no rollout history")

func getOpts() metav1.GetOptions { return metav1.GetOptions{} }
