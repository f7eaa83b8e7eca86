package kube_test

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/salve-sre/salve/activities"
	"github.com/salve-sre/salve/activities/kube"
	"github.com/salve-sre/salve/activities/step"
	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/internal/snapshot"
	"github.com/salve-sre/salve/internal/testenv"
	"github.com/salve-sre/salve/runbooks"
	"github.com/salve-sre/salve/workflows"
)

// cluster is one real control plane (etcd, kube-apiserver,
// controller-manager, scheduler, kwok nodes) shared by the subtests: it
// takes tens of seconds to start.
type cluster struct {
	c          kubernetes.Interface
	steps      map[string]step.Spec
	kubeconfig string
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	k := testenv.Kube(t)
	cfg, err := clientcmd.BuildConfigFromFlags("", k.KubeconfigPath)
	require.NoError(t, err)
	c, err := kubernetes.NewForConfig(cfg)
	require.NoError(t, err)
	clients, err := kube.FromKubeconfig(k.KubeconfigPath, "")
	require.NoError(t, err)
	steps := map[string]step.Spec{}
	for _, s := range kube.Specs(kube.Options{Clients: clients, PollInterval: 200 * time.Millisecond}) {
		steps[s.Kind] = s
	}
	return &cluster{c: c, steps: steps, kubeconfig: k.KubeconfigPath}
}

func (cl *cluster) run(t *testing.T, ctx context.Context, kind, key string, params map[string]any) (map[string]any, error) {
	t.Helper()
	res, err := cl.steps[kind].Executor.Execute(ctx, step.Request{
		WorkflowID: "salve/test/k", Step: "s", Kind: kind, Params: params, IdempotencyKey: key,
		ScheduledAt: time.Now(),
	})
	return res.Output, err
}

func (cl *cluster) deployment(t *testing.T, ns, name, image string, replicas int32, nodeSelector map[string]string) {
	t.Helper()
	ctx := context.Background()
	_, err := cl.c.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil {
		_, err = cl.c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		require.NoError(t, err)
		// Pods are refused until the namespace's default ServiceAccount
		// exists, and the ReplicaSet controller then backs off for tens of
		// seconds: wait for it first.
		require.Eventually(t, func() bool {
			_, err := cl.c.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
			return err == nil
		}, 30*time.Second, 100*time.Millisecond)
	}
	labels := map[string]string{"app": name}
	_, err = cl.c.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					Containers:   []corev1.Container{{Name: "app", Image: image}},
					NodeSelector: nodeSelector,
					// kwok honours the grace period; tests need not wait it out.
					TerminationGracePeriodSeconds: new(int64),
				},
			},
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
}

func (cl *cluster) setImage(t *testing.T, ns, name, image string) {
	t.Helper()
	ctx := context.Background()
	d, err := cl.c.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	require.NoError(t, err)
	d.Spec.Template.Spec.Containers[0].Image = image
	_, err = cl.c.AppsV1().Deployments(ns).Update(ctx, d, metav1.UpdateOptions{})
	require.NoError(t, err)
}

func (cl *cluster) replicaSets(t *testing.T, ns string) int {
	t.Helper()
	list, err := cl.c.AppsV1().ReplicaSets(ns).List(context.Background(), metav1.ListOptions{})
	require.NoError(t, err)
	return len(list.Items)
}

func wait(t *testing.T, cl *cluster, ns, name string) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	out, err := cl.run(t, ctx, kube.KindWaitRollout, "", map[string]any{"namespace": ns, "name": name})
	require.NoError(t, err)
	require.Equal(t, true, out["rolloutComplete"])
	return out
}

func TestAgainstRealKubernetes(t *testing.T) {
	cl := startCluster(t)
	ctx := context.Background()

	t.Run("wait_rollout and get see a complete rollout", func(t *testing.T) {
		cl.deployment(t, "shop", "cart", "registry.example/cart:1.0", 2, nil)
		out := wait(t, cl, "shop", "cart")
		require.EqualValues(t, 2, out["availableReplicas"])
		got, err := cl.run(t, ctx, kube.KindGet, "", map[string]any{"namespace": "shop", "name": "cart"})
		require.NoError(t, err)
		require.EqualValues(t, 2, got["replicas"])
		require.EqualValues(t, 2, got["availableReplicas"])
		require.EqualValues(t, 1, got["revision"])
		require.Equal(t, []any{"app=registry.example/cart:1.0"}, got["images"])
		require.Equal(t, true, got["rolloutComplete"])
		require.Equal(t, "True", got["conditions"].(map[string]any)["Available"])
	})

	t.Run("scale by a delta is bounded and a retried attempt does not add twice", func(t *testing.T) {
		p := map[string]any{"namespace": "shop", "name": "cart", "delta": 3, "max": 4}
		out, err := cl.run(t, ctx, kube.KindScale, "salve/scale-out/shop/cart/scale", p)
		require.NoError(t, err)
		require.Equal(t, map[string]any{"previousReplicas": 2, "replicas": 4, "changed": true, "clamped": true}, out)

		p = map[string]any{"namespace": "shop", "name": "cart", "delta": 1, "max": 10}
		first, err := cl.run(t, ctx, kube.KindScale, "salve/scale-out/shop/cart-2/scale", p)
		require.NoError(t, err)
		require.Equal(t, 5, first["replicas"])
		retry, err := cl.run(t, ctx, kube.KindScale, "salve/scale-out/shop/cart-2/scale", p)
		require.NoError(t, err)
		require.Equal(t, first, retry, "the retry finishes the first attempt's action")
		d, err := cl.c.AppsV1().Deployments("shop").Get(ctx, "cart", metav1.GetOptions{})
		require.NoError(t, err)
		require.EqualValues(t, 5, *d.Spec.Replicas)
		require.Equal(t, "salve/scale-out/shop/cart-2/scale scale from=4 to=5", d.Annotations[kube.AnnotationAction])

		_, err = cl.run(t, ctx, kube.KindScale, "k3", map[string]any{"namespace": "shop", "name": "cart", "replicas": 50, "max": 10})
		require.ErrorIs(t, err, step.ErrPermanent)
		wait(t, cl, "shop", "cart")
	})

	t.Run("restart rolls new pods once per step, however often it is retried", func(t *testing.T) {
		before := cl.replicaSets(t, "shop")
		p := map[string]any{"namespace": "shop", "name": "cart", "wait": true}
		rctx, cancel := context.WithTimeout(ctx, 90*time.Second)
		defer cancel()
		out, err := cl.run(t, rctx, kube.KindRestart, "salve/restart/shop/cart/restart", p)
		require.NoError(t, err)
		require.Equal(t, true, out["rolloutComplete"])
		require.NotEmpty(t, out["restartedAt"])
		require.Equal(t, before+1, cl.replicaSets(t, "shop"), "a restart makes a new ReplicaSet")
		d, err := cl.c.AppsV1().Deployments("shop").Get(ctx, "cart", metav1.GetOptions{})
		require.NoError(t, err)
		require.Equal(t, out["restartedAt"], d.Spec.Template.Annotations[kube.AnnotationRestartedAt])

		again, err := cl.run(t, rctx, kube.KindRestart, "salve/restart/shop/cart/restart", p)
		require.NoError(t, err)
		require.Equal(t, out["restartedAt"], again["restartedAt"])
		require.Equal(t, before+1, cl.replicaSets(t, "shop"), "the retry did not restart again")
	})

	t.Run("rollback returns to the previous images, once", func(t *testing.T) {
		cl.deployment(t, "payments", "api", "registry.example/api:1.0", 1, nil)
		wait(t, cl, "payments", "api")
		cl.setImage(t, "payments", "api", "registry.example/api:2.0")
		wait(t, cl, "payments", "api")

		rctx, cancel := context.WithTimeout(ctx, 90*time.Second)
		defer cancel()
		p := map[string]any{"namespace": "payments", "name": "api", "wait": true}
		out, err := cl.run(t, rctx, kube.KindRollback, "salve/rollback/payments/api/rollback", p)
		require.NoError(t, err)
		require.EqualValues(t, 2, out["fromRevision"])
		require.EqualValues(t, 1, out["toRevision"])
		require.Equal(t, []any{"app=registry.example/api:2.0"}, out["fromImages"])
		require.Equal(t, []any{"app=registry.example/api:1.0"}, out["toImages"])
		require.Equal(t, true, out["rolloutComplete"])
		got, err := cl.run(t, ctx, kube.KindGet, "", map[string]any{"namespace": "payments", "name": "api"})
		require.NoError(t, err)
		require.Equal(t, []any{"app=registry.example/api:1.0"}, got["images"])
		require.EqualValues(t, 3, got["revision"], "the controller renumbers the restored revision")

		// A retry of the same step must not undo its own rollback.
		again, err := cl.run(t, rctx, kube.KindRollback, "salve/rollback/payments/api/rollback", p)
		require.NoError(t, err)
		require.EqualValues(t, 1, again["toRevision"])
		got, err = cl.run(t, ctx, kube.KindGet, "", map[string]any{"namespace": "payments", "name": "api"})
		require.NoError(t, err)
		require.Equal(t, []any{"app=registry.example/api:1.0"}, got["images"])

		// An explicit revision that does not exist is refused.
		_, err = cl.run(t, ctx, kube.KindRollback, "k-missing", map[string]any{"namespace": "payments", "name": "api", "toRevision": 9})
		require.ErrorIs(t, err, step.ErrPermanent)
		require.ErrorContains(t, err, "has no revision 9")
	})

	t.Run("a worker that dies after acting: Temporal's retry does not act twice", func(t *testing.T) {
		cl.deployment(t, "retry", "web", "registry.example/web:1.0", 2, nil)
		wait(t, cl, "retry", "web")
		scaled, restarts := retriedRun(t, cl, "retry", "web")
		// At least twice each: the acting attempt and the retry (a write
		// conflict with the controllers can add an attempt).
		require.GreaterOrEqual(t, scaled, 2)
		require.GreaterOrEqual(t, restarts, 2)
		d, err := cl.c.AppsV1().Deployments("retry").Get(ctx, "web", metav1.GetOptions{})
		require.NoError(t, err)
		require.EqualValues(t, 3, *d.Spec.Replicas, "2 + 1, not 2 + 1 + 1")
		rs, err := cl.c.AppsV1().ReplicaSets("retry").List(ctx, metav1.ListOptions{})
		require.NoError(t, err)
		require.Len(t, rs.Items, 2, "one restart, not two: the original ReplicaSet and one new one")
	})

	t.Run("rollback without history is refused", func(t *testing.T) {
		cl.deployment(t, "payments", "fresh", "registry.example/fresh:1.0", 1, nil)
		wait(t, cl, "payments", "fresh")
		_, err := cl.run(t, ctx, kube.KindRollback, "k", map[string]any{"namespace": "payments", "name": "fresh"})
		require.ErrorIs(t, err, step.ErrPermanent)
		require.ErrorContains(t, err, "no rollout history")
	})

	t.Run("delete_pod removes at most maxCount and spares replacements", func(t *testing.T) {
		pods := func() []corev1.Pod {
			list, err := cl.c.CoreV1().Pods("shop").List(ctx, metav1.ListOptions{LabelSelector: "app=cart"})
			require.NoError(t, err)
			var live []corev1.Pod
			for _, p := range list.Items {
				if p.DeletionTimestamp == nil {
					live = append(live, p)
				}
			}
			return live
		}
		before := pods()
		require.NotEmpty(t, before)
		scheduled := time.Now()
		time.Sleep(1100 * time.Millisecond) // creation timestamps have second precision
		req := step.Request{WorkflowID: "w", Step: "kill", Kind: kube.KindDeletePod, IdempotencyKey: "w/kill", ScheduledAt: scheduled,
			Params: map[string]any{"namespace": "shop", "selector": "app=cart", "maxCount": 2}}
		res, err := cl.steps[kube.KindDeletePod].Executor.Execute(ctx, req)
		require.NoError(t, err)
		require.Len(t, res.Output["deleted"], 2)
		require.Equal(t, len(before), res.Output["matched"])

		_, err = cl.steps[kube.KindDeletePod].Executor.Execute(ctx, step.Request{Kind: kube.KindDeletePod, Params: map[string]any{"namespace": "shop", "pod": "no-such-pod"}})
		require.NoError(t, err, "a pod that is already gone is the outcome wanted")
	})

	t.Run("wait_rollout gives up with the progress it saw", func(t *testing.T) {
		cl.deployment(t, "shop", "nowhere", "registry.example/x:1", 1, map[string]string{"no-such-node": "true"})
		wctx, cancel := context.WithTimeout(ctx, 6*time.Second)
		defer cancel()
		_, err := cl.run(t, wctx, kube.KindWaitRollout, "", map[string]any{"namespace": "shop", "name": "nowhere"})
		require.ErrorContains(t, err, "rollout of Deployment shop/nowhere not complete after")
		require.ErrorContains(t, err, "0/1 available")
	})

	t.Run("steps name a cluster: each kubeconfig context is one", func(t *testing.T) {
		// A second context on the same API server with an identity the
		// server does not know: routing is visible in who the server sees.
		raw, err := clientcmd.LoadFromFile(cl.kubeconfig)
		require.NoError(t, err)
		cur := raw.Contexts[raw.CurrentContext]
		raw.AuthInfos["nobody"] = &clientcmdapi.AuthInfo{Token: "not-a-valid-token"}
		raw.Contexts["stranger"] = &clientcmdapi.Context{Cluster: cur.Cluster, AuthInfo: "nobody"}
		path := filepath.Join(t.TempDir(), "kubeconfig")
		require.NoError(t, clientcmd.WriteToFile(*raw, path))
		clients, err := kube.FromKubeconfig(path, "")
		require.NoError(t, err)
		require.ElementsMatch(t, []string{raw.CurrentContext, "stranger"}, clients.Clusters())
		get := kube.Specs(kube.Options{Clients: clients})[4]
		require.Equal(t, kube.KindGet, get.Kind)
		run := func(cluster string) error {
			_, err := get.Executor.Execute(ctx, step.Request{Kind: kube.KindGet, Params: map[string]any{"cluster": cluster, "namespace": "shop", "name": "cart"}})
			return err
		}
		require.NoError(t, run(""), "the current context")
		require.NoError(t, run(raw.CurrentContext))
		err = run("stranger")
		require.ErrorIs(t, err, step.ErrPermanent)
		require.ErrorContains(t, err, "access denied")
		require.ErrorContains(t, err, "in cluster stranger")
		err = run("nowhere")
		require.ErrorIs(t, err, step.ErrPermanent)
		require.ErrorContains(t, err, `unknown cluster "nowhere"`)
	})

	t.Run("errors say what is wrong", func(t *testing.T) {
		_, err := cl.run(t, ctx, kube.KindGet, "", map[string]any{"namespace": "shop", "name": "missing"})
		require.ErrorIs(t, err, step.ErrPermanent)
		require.ErrorContains(t, err, "Deployment shop/missing not found")
		_, err = cl.run(t, ctx, kube.KindGet, "", map[string]any{"namespace": "shop", "name": "cart", "kind": "StatefulSet"})
		require.ErrorContains(t, err, "StatefulSet shop/cart not found")
	})
}

// retriedRun runs a scale-then-restart runbook through the real workflow
// and the real activity adapter in Temporal's test environment. The first
// attempt of each step acts on the cluster and then fails, as if the
// worker died before reporting: Temporal retries, and the retry must find
// the recorded action instead of repeating it. It returns how many
// attempts the scale and restart steps made.
func retriedRun(t *testing.T, cl *cluster, ns, name string) (int, int) {
	t.Helper()
	reg := step.NewRegistry()
	var mu sync.Mutex
	attempts := map[string]int{}
	for _, kind := range []string{kube.KindScale, kube.KindRestart} {
		spec := cl.steps[kind]
		real := spec.Executor
		spec.Executor = step.ExecutorFunc(func(ctx context.Context, req step.Request) (step.Result, error) {
			res, err := real.Execute(ctx, req)
			mu.Lock()
			attempts[req.Kind]++
			mu.Unlock()
			t.Logf("%s attempt %d: %v %v", req.Kind, activity.GetInfo(ctx).Attempt, res.Output, err)
			if err == nil && activity.GetInfo(ctx).Attempt == 1 {
				return step.Result{}, errors.New("worker lost after the API call")
			}
			return res, err
		})
		require.NoError(t, reg.Register(spec))
	}
	acts := activities.New(reg, nopAudit{}, slog.New(slog.DiscardHandler))
	rb, err := runbooks.Parse("retry.yaml", []byte(`apiVersion: salve/v1
kind: Runbook
metadata: {name: retry}
spec:
  steps:
    - {name: scale, action: kubernetes.scale, with: {namespace: `+ns+`, name: `+name+`, delta: 1, max: 10}, retry: {initialInterval: 1s}}
    - {name: restart, action: kubernetes.restart, with: {namespace: `+ns+`, name: `+name+`}, retry: {initialInterval: 1s}}
`), reg)
	require.NoError(t, err)

	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler)))
	env := suite.NewTestWorkflowEnvironment()
	env.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: "salve/retry/" + ns, TaskQueue: "salve"})
	env.RegisterWorkflowWithOptions(workflows.Runbook, workflow.RegisterOptions{Name: workflows.WorkflowName})
	env.RegisterActivityWithOptions(acts.Audit, activity.RegisterOptions{Name: workflows.AuditActivity})
	env.RegisterActivityWithOptions(acts.Record, activity.RegisterOptions{Name: workflows.RecordActivity})
	env.RegisterActivityWithOptions(acts.RunFinished, activity.RegisterOptions{Name: workflows.RunFinishedActivity})
	for _, kind := range reg.Kinds() {
		fn, err := acts.Step(kind)
		require.NoError(t, err)
		env.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: step.ActivityName(kind)})
	}
	// The run verifies its snapshot first, as every run does.
	key := snapshot.Random()
	acts.VerifySnapshot = key.Verify
	env.RegisterActivityWithOptions(acts.VerifyRunbook, activity.RegisterOptions{Name: workflows.VerifyActivity})
	env.RegisterActivityWithOptions(acts.Prepare, activity.RegisterOptions{Name: workflows.PrepareActivity})
	sig, err := key.Sign(*rb)
	require.NoError(t, err)
	env.ExecuteWorkflow(workflows.Runbook, workflows.Input{Runbook: *rb, RunbookSignature: sig, IncidentKey: ns, Revision: workflows.CurrentRevision})
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	return attempts[kube.KindScale], attempts[kube.KindRestart]
}

type nopAudit struct{}

func (nopAudit) Record(context.Context, domain.AuditEvent) error { return nil }
