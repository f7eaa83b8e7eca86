package kube

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/salve-sre/salve/activities/step"
)

func TestScaleTarget(t *testing.T) {
	tests := []struct {
		name             string
		from, abs, delta int
		hasDelta         bool
		lo, hi           int
		hasMax           bool
		want             int
	}{
		{"absolute", 2, 5, 0, false, 0, 10, true, 5},
		{"delta up", 2, 0, 3, true, 0, 10, true, 5},
		{"delta clamped to max", 8, 0, 5, true, 0, 10, true, 10},
		{"delta down clamped to min", 3, 0, -5, true, 1, 10, true, 1},
		{"already above max: scale-out leaves it alone", 12, 0, 2, true, 0, 10, true, 12},
		{"already below min: scale-in leaves it alone", 0, 0, -1, true, 1, 10, true, 0},
		{"absolute without max", 2, 50, 0, false, 0, 0, false, 50},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, scaleTarget(tt.from, tt.abs, tt.delta, tt.hasDelta, tt.lo, tt.hi, tt.hasMax))
		})
	}
}

// Bad parameters are refused before any client is asked for: no cluster
// is touched by a runbook mistake.
func TestParamsAreCheckedBeforeActing(t *testing.T) {
	specs := map[string]step.Spec{}
	for _, s := range Specs(Options{Clients: panicClients{}}) {
		specs[s.Kind] = s
	}
	tests := []struct {
		kind   string
		params map[string]any
		want   string
	}{
		{KindScale, map[string]any{"namespace": "shop", "name": "cart"}, "give replicas (an absolute count) or delta (a change), exactly one"},
		{KindScale, map[string]any{"namespace": "shop", "name": "cart", "replicas": 2, "delta": 1}, "exactly one"},
		{KindScale, map[string]any{"namespace": "shop", "name": "cart", "delta": 1}, "max is required with delta"},
		{KindScale, map[string]any{"namespace": "shop", "name": "cart", "replicas": 50, "max": 10}, "replicas 50 is outside the bounds min 0, max 10"},
		{KindScale, map[string]any{"namespace": "shop", "name": "cart", "replicas": 2, "min": 5, "max": 3}, "0 <= min <= max"},
		{KindScale, map[string]any{"namespace": "Shop!", "name": "cart", "replicas": 2}, "namespace: want a Kubernetes namespace name"},
		{KindScale, map[string]any{"namespace": "shop", "name": "cart", "kind": "DaemonSet", "replicas": 2}, "kind: want one of Deployment, StatefulSet"},
		{KindScale, map[string]any{"namespace": "shop", "name": "cart", "replicas": "lots"}, "replicas: want a whole number"},
		{KindRestart, map[string]any{"namespace": "shop", "name": "cart", "wait": "maybe"}, "wait: want true or false"},
		{KindRollback, map[string]any{"namespace": "shop", "name": "cart", "toRevision": "x"}, "toRevision: want a whole number"},
		{KindDeletePod, map[string]any{"namespace": "shop"}, "give pod (a name) or selector"},
		{KindDeletePod, map[string]any{"namespace": "shop", "pod": "a", "selector": "app=x"}, "exactly one"},
		{KindDeletePod, map[string]any{"namespace": "shop", "selector": "app=x", "maxCount": 0}, "maxCount must be from 1 to 100"},
		{KindDeletePod, map[string]any{"namespace": "shop", "selector": "app in (", "maxCount": 1}, "selector:"},
	}
	for _, tt := range tests {
		_, err := specs[tt.kind].Executor.Execute(context.Background(), step.Request{Kind: tt.kind, Params: tt.params})
		require.ErrorContains(t, err, tt.want, "%s %v", tt.kind, tt.params)
	}
}

type panicClients struct{}

func (panicClients) For(context.Context, step.Request, Target) (kubernetes.Interface, func(), error) {
	panic("a client must not be requested for bad parameters")
}

func TestNoClustersConfigured(t *testing.T) {
	for _, s := range Specs(Options{}) {
		_, err := s.Executor.Execute(context.Background(), step.Request{Params: map[string]any{
			"namespace": "shop", "name": "cart", "replicas": 1, "pod": "p",
		}})
		require.ErrorIs(t, err, step.ErrPermanent, s.Kind)
		require.ErrorContains(t, err, "--kubeconfig", s.Kind)
	}
}

func TestRecorded(t *testing.T) {
	ann := map[string]string{AnnotationAction: "salve/r/k/scale scale from=2 to=4"}
	d, ok := recorded(ann, "salve/r/k/scale")
	require.True(t, ok)
	require.Equal(t, "scale from=2 to=4", d)
	_, ok = recorded(ann, "salve/r/other/scale")
	require.False(t, ok)
	_, ok = recorded(nil, "salve/r/k/scale")
	require.False(t, ok)
	_, ok = recorded(ann, "")
	require.False(t, ok, "no key, no match")
}

func TestPodsByPriorityPutsNotReadyFirst(t *testing.T) {
	pod := func(name string, ready bool) corev1.Pod {
		st := corev1.ConditionFalse
		if ready {
			st = corev1.ConditionTrue
		}
		return corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(time.Unix(0, 0))},
			Status: corev1.PodStatus{Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: st}}}}
	}
	pods := []corev1.Pod{pod("a", true), pod("b", false), pod("c", true), pod("d", false)}
	podsByPriority(pods)
	var names []string
	for _, p := range pods {
		names = append(names, p.Name)
	}
	require.Equal(t, []string{"b", "d", "a", "c"}, names)
}
