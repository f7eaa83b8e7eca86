package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/salve-sre/salve/activities/step"
)

// workload is what the kinds need of a Deployment or StatefulSet.
type workload struct {
	meta     metav1.ObjectMeta
	replicas int32
	template corev1.PodTemplateSpec
	dep      *appsv1.Deployment
	sts      *appsv1.StatefulSet
}

func getWorkload(ctx context.Context, c kubernetes.Interface, t target) (*workload, error) {
	switch t.kind {
	case "StatefulSet":
		s, err := c.AppsV1().StatefulSets(t.namespace).Get(ctx, t.name, getOpts())
		if err != nil {
			return nil, apiError("get", t, err)
		}
		return &workload{meta: s.ObjectMeta, replicas: ptrOr(s.Spec.Replicas, 1), template: s.Spec.Template, sts: s}, nil
	default:
		d, err := c.AppsV1().Deployments(t.namespace).Get(ctx, t.name, getOpts())
		if err != nil {
			return nil, apiError("get", t, err)
		}
		return &workload{meta: d.ObjectMeta, replicas: ptrOr(d.Spec.Replicas, 1), template: d.Spec.Template, dep: d}, nil
	}
}

func ptrOr(p *int32, def int32) int32 {
	if p == nil {
		return def
	}
	return *p
}

// mergePatch applies a JSON merge patch to the workload itself. The
// resourceVersion in the patch makes it fail with a conflict if the object
// changed since it was read, so a decision is never applied to a stale view.
func mergePatch(ctx context.Context, c kubernetes.Interface, t target, patch map[string]any) error {
	b, err := json.Marshal(patch)
	if err != nil {
		return err
	}
	switch t.kind {
	case "StatefulSet":
		_, err = c.AppsV1().StatefulSets(t.namespace).Patch(ctx, t.name, types.MergePatchType, b, metav1.PatchOptions{FieldManager: "salve"})
	default:
		_, err = c.AppsV1().Deployments(t.namespace).Patch(ctx, t.name, types.MergePatchType, b, metav1.PatchOptions{FieldManager: "salve"})
	}
	if err != nil {
		if apierrors.IsConflict(err) {
			return fmt.Errorf("%s changed while Salve acted on it; retrying: %w", t, err)
		}
		return apiError("patch", t, err)
	}
	return nil
}

func recordPatch(rv, key, detail string) map[string]any {
	return map[string]any{"metadata": map[string]any{
		"resourceVersion": rv,
		"annotations":     map[string]any{AnnotationAction: key + " " + detail},
	}}
}

func (k kinds) scale(ctx context.Context, req step.Request) (step.Result, error) {
	t, err := parseTarget(req.Params, "Deployment", "StatefulSet")
	if err != nil {
		return step.Result{}, err
	}
	abs, hasAbs, err := optInt(req.Params, "replicas")
	if err != nil {
		return step.Result{}, err
	}
	delta, hasDelta, err := optInt(req.Params, "delta")
	if err != nil {
		return step.Result{}, err
	}
	lo, _, err := optInt(req.Params, "min")
	if err != nil {
		return step.Result{}, err
	}
	hi, hasMax, err := optInt(req.Params, "max")
	if err != nil {
		return step.Result{}, err
	}
	switch {
	case hasAbs == hasDelta:
		return step.Result{}, fmt.Errorf("%w: give replicas (an absolute count) or delta (a change), exactly one", step.ErrInvalidParams)
	case hasDelta && !hasMax:
		return step.Result{}, fmt.Errorf("%w: max is required with delta, so repeated runs cannot scale without bound", step.ErrInvalidParams)
	case lo < 0 || (hasMax && hi < lo):
		return step.Result{}, fmt.Errorf("%w: bounds must satisfy 0 <= min <= max, got min %d max %d", step.ErrInvalidParams, lo, hi)
	case hasAbs && (abs < lo || (hasMax && abs > hi)):
		return step.Result{}, fmt.Errorf("%w: replicas %d is outside the bounds min %d, max %s", step.ErrPermanent, abs, lo, maxString(hasMax, hi))
	}

	c, release, err := k.client(ctx, req, t)
	if err != nil {
		return step.Result{}, err
	}
	defer release()
	var from, to int
	// Read, decide and record as one unit, again on a write conflict (the
	// controllers update the object all the time): the decision is always
	// made on the version the record is written against.
	err = onConflict(func() error {
		w, err := getWorkload(ctx, c, t)
		if err != nil {
			return err
		}
		if detail, ok := recorded(w.meta.Annotations, req.IdempotencyKey); ok {
			// A retried attempt: finish the action the first attempt decided.
			if _, err := fmt.Sscanf(detail, "scale from=%d to=%d", &from, &to); err != nil {
				return fmt.Errorf("%w: %s carries an unreadable %s annotation %q", step.ErrPermanent, t, AnnotationAction, detail)
			}
			return nil
		}
		from = int(w.replicas)
		to = scaleTarget(from, abs, delta, hasDelta, lo, hi, hasMax)
		return mergePatch(ctx, c, t, recordPatch(w.meta.ResourceVersion, req.IdempotencyKey, fmt.Sprintf("scale from=%d to=%d", from, to)))
	})
	if err != nil {
		return step.Result{}, err
	}
	if err := onConflict(func() error { return setScale(ctx, c, t, int32(to)) }); err != nil {
		return step.Result{}, err
	}
	wanted := abs
	if hasDelta {
		wanted = from + delta
	}
	return step.Result{Output: map[string]any{
		"previousReplicas": from,
		"replicas":         to,
		"changed":          from != to,
		"clamped":          to != wanted,
	}}, nil
}

// scaleTarget is the replica count a scale step sets: the absolute count,
// or the current one plus delta, clamped to [lo, hi]. Bounds clamp a
// change; they never turn it around (a scale-out of a workload already
// above max leaves it alone rather than scaling it in).
func scaleTarget(from, abs, delta int, hasDelta bool, lo, hi int, hasMax bool) int {
	to := abs
	if hasDelta {
		to = from + delta
	}
	to = max(to, lo)
	if hasMax {
		to = min(to, hi)
	}
	if hasDelta && ((delta > 0 && to < from) || (delta < 0 && to > from)) {
		to = from
	}
	return to
}

func maxString(has bool, v int) string {
	if !has {
		return "none"
	}
	return strconv.Itoa(v)
}

// setScale uses the scale subresource, as kubectl scale does.
func setScale(ctx context.Context, c kubernetes.Interface, t target, replicas int32) error {
	switch t.kind {
	case "StatefulSet":
		sc, err := c.AppsV1().StatefulSets(t.namespace).GetScale(ctx, t.name, getOpts())
		if err != nil {
			return apiError("get scale of", t, err)
		}
		if sc.Spec.Replicas == replicas {
			return nil
		}
		sc.Spec.Replicas = replicas
		if _, err := c.AppsV1().StatefulSets(t.namespace).UpdateScale(ctx, t.name, sc, metav1.UpdateOptions{FieldManager: "salve"}); err != nil {
			return apiError("scale", t, err)
		}
	default:
		sc, err := c.AppsV1().Deployments(t.namespace).GetScale(ctx, t.name, getOpts())
		if err != nil {
			return apiError("get scale of", t, err)
		}
		if sc.Spec.Replicas == replicas {
			return nil
		}
		sc.Spec.Replicas = replicas
		if _, err := c.AppsV1().Deployments(t.namespace).UpdateScale(ctx, t.name, sc, metav1.UpdateOptions{FieldManager: "salve"}); err != nil {
			return apiError("scale", t, err)
		}
	}
	return nil
}

func (k kinds) restart(ctx context.Context, req step.Request) (step.Result, error) {
	t, err := parseTarget(req.Params, "Deployment", "StatefulSet")
	if err != nil {
		return step.Result{}, err
	}
	wait, err := optBool(req.Params, "wait")
	if err != nil {
		return step.Result{}, err
	}
	c, release, err := k.client(ctx, req, t)
	if err != nil {
		return step.Result{}, err
	}
	defer release()
	at := ""
	err = onConflict(func() error {
		w, err := getWorkload(ctx, c, t)
		if err != nil {
			return err
		}
		at = ""
		if detail, ok := recorded(w.meta.Annotations, req.IdempotencyKey); ok {
			_, _ = fmt.Sscanf(detail, "restart at=%s", &at) // already restarted by this step
		}
		if at != "" {
			return nil
		}
		at = k.opts.Now().UTC().Format(time.RFC3339)
		// One patch records the action and restarts: both or neither.
		patch := recordPatch(w.meta.ResourceVersion, req.IdempotencyKey, "restart at="+at)
		patch["spec"] = map[string]any{"template": map[string]any{"metadata": map[string]any{"annotations": map[string]any{AnnotationRestartedAt: at}}}}
		return mergePatch(ctx, c, t, patch)
	})
	if err != nil {
		return step.Result{}, err
	}
	out := map[string]any{"restartedAt": at}
	if wait {
		err = k.waitInto(ctx, c, t, out)
	}
	return step.Result{Output: out}, err
}

func (k kinds) rollback(ctx context.Context, req step.Request) (step.Result, error) {
	t, err := parseTarget(req.Params)
	if err != nil {
		return step.Result{}, err
	}
	toRev, hasTo, err := optInt(req.Params, "toRevision")
	if err != nil {
		return step.Result{}, err
	}
	wait, err := optBool(req.Params, "wait")
	if err != nil {
		return step.Result{}, err
	}
	c, release, err := k.client(ctx, req, t)
	if err != nil {
		return step.Result{}, err
	}
	defer release()
	d, err := c.AppsV1().Deployments(t.namespace).Get(ctx, t.name, getOpts())
	if err != nil {
		return step.Result{}, apiError("get", t, err)
	}
	out := map[string]any{}
	if detail, ok := recorded(d.Annotations, req.IdempotencyKey); ok {
		// Already rolled back by this step: a second undo would roll forward.
		var from, to int64
		_, _ = fmt.Sscanf(detail, "rollback from=%d to=%d", &from, &to)
		out["fromRevision"], out["toRevision"] = from, to
		out["toImages"] = images(d.Spec.Template.Spec)
	} else {
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		if err != nil {
			return step.Result{}, fmt.Errorf("%w: %s has a bad selector: %v", step.ErrPermanent, t, err)
		}
		list, err := c.AppsV1().ReplicaSets(t.namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
		if err != nil {
			return step.Result{}, apiError("list replica sets of", t, err)
		}
		cur, _ := strconv.ParseInt(d.Annotations[annotationRevision], 10, 64)
		byRev := map[int64]*appsv1.ReplicaSet{}
		var revs []int64
		for i := range list.Items {
			rs := &list.Items[i]
			if ref := metav1.GetControllerOf(rs); ref == nil || ref.UID != d.UID {
				continue
			}
			rev, err := strconv.ParseInt(rs.Annotations[annotationRevision], 10, 64)
			if err != nil {
				continue
			}
			byRev[rev] = rs
			revs = append(revs, rev)
		}
		sort.Slice(revs, func(i, j int) bool { return revs[i] > revs[j] })
		var target *appsv1.ReplicaSet
		var targetRev int64
		if hasTo {
			targetRev = int64(toRev)
			if targetRev == cur {
				return step.Result{}, fmt.Errorf("%w: %s is already at revision %d", step.ErrPermanent, t, cur)
			}
			if target = byRev[targetRev]; target == nil {
				return step.Result{}, fmt.Errorf("%w: %s has no revision %d (has: %v)", step.ErrPermanent, t, targetRev, revs)
			}
		} else {
			for _, r := range revs {
				if r < cur {
					target, targetRev = byRev[r], r
					break
				}
			}
			if target == nil {
				return step.Result{}, fmt.Errorf("%w: %s: %w: revision %d is the only one kept, so there is nothing to roll back to", step.ErrPermanent, t, errNoHistory, cur)
			}
		}
		tmpl := target.Spec.Template.DeepCopy()
		delete(tmpl.Labels, appsv1.DefaultDeploymentUniqueLabelKey)
		annotations := map[string]string{}
		for name, v := range d.Annotations {
			annotations[name] = v
		}
		annotations[AnnotationAction] = fmt.Sprintf("%s rollback from=%d to=%d", req.IdempotencyKey, cur, targetRev)
		// A JSON patch that replaces the template exactly (as kubectl
		// rollout undo does), guarded by the resourceVersion it was read at.
		ops := []map[string]any{
			{"op": "test", "path": "/metadata/resourceVersion", "value": d.ResourceVersion},
			{"op": "replace", "path": "/spec/template", "value": tmpl},
			{"op": "add", "path": "/metadata/annotations", "value": annotations},
		}
		b, err := json.Marshal(ops)
		if err != nil {
			return step.Result{}, err
		}
		if _, err := c.AppsV1().Deployments(t.namespace).Patch(ctx, t.name, types.JSONPatchType, b, metav1.PatchOptions{FieldManager: "salve"}); err != nil {
			if apierrors.IsConflict(err) || (apierrors.IsInvalid(err) && moved(ctx, c, t, d.ResourceVersion)) {
				// A failed "test" op is reported as invalid: the object moved on.
				return step.Result{}, fmt.Errorf("%s changed while Salve rolled it back; retrying: %v", t, err)
			}
			return step.Result{}, apiError("roll back", t, err)
		}
		out["fromRevision"], out["toRevision"] = cur, targetRev
		out["fromImages"], out["toImages"] = images(d.Spec.Template.Spec), images(tmpl.Spec)
	}
	if wait {
		err = k.waitInto(ctx, c, t, out)
	}
	return step.Result{Output: out}, err
}

// onConflict runs fn again, with a short backoff, while it fails with a
// write conflict; a conflict that outlasts the retries is returned (and
// retried by Temporal).
func onConflict(fn func() error) error {
	return retry.OnError(retry.DefaultRetry, apierrors.IsConflict, fn)
}

// moved reports whether the Deployment changed since rv was read.
func moved(ctx context.Context, c kubernetes.Interface, t target, rv string) bool {
	d, err := c.AppsV1().Deployments(t.namespace).Get(ctx, t.name, getOpts())
	return err != nil || d.ResourceVersion != rv
}

func (k kinds) waitRollout(ctx context.Context, req step.Request) (step.Result, error) {
	t, err := parseTarget(req.Params, "Deployment", "StatefulSet")
	if err != nil {
		return step.Result{}, err
	}
	c, release, err := k.client(ctx, req, t)
	if err != nil {
		return step.Result{}, err
	}
	defer release()
	st, err := k.wait(ctx, c, t)
	return step.Result{Output: st}, err
}

// rollout is a workload's rollout progress.
type rollout struct {
	desired, updated, available, ready, total int32
	done                                      bool
	stuck                                     string // why it will not finish on its own
}

func (r rollout) String() string {
	return fmt.Sprintf("%d/%d updated, %d/%d available", r.updated, r.desired, r.available, r.desired)
}

func progress(w *workload) rollout {
	r := rollout{desired: w.replicas}
	switch {
	case w.dep != nil:
		d := w.dep
		r.updated, r.available, r.ready, r.total = d.Status.UpdatedReplicas, d.Status.AvailableReplicas, d.Status.ReadyReplicas, d.Status.Replicas
		r.done = d.Status.ObservedGeneration >= d.Generation && r.updated == r.desired && r.total == r.updated && r.available == r.updated
		for _, c := range d.Status.Conditions {
			// An old condition, from before the controller saw this
			// change (e.g. the restart that is meant to unstick it), says
			// nothing about the new rollout.
			if d.Status.ObservedGeneration >= d.Generation && c.Type == appsv1.DeploymentProgressing && c.Reason == "ProgressDeadlineExceeded" {
				r.stuck = "progress deadline exceeded: " + c.Message
			}
		}
	case w.sts != nil:
		s := w.sts
		r.updated, r.available, r.ready, r.total = s.Status.UpdatedReplicas, s.Status.AvailableReplicas, s.Status.ReadyReplicas, s.Status.Replicas
		observed := s.Status.ObservedGeneration >= s.Generation
		switch {
		case s.Spec.UpdateStrategy.Type == appsv1.OnDeleteStatefulSetStrategyType:
			// Nothing rolls until pods are deleted: done once observed
			// and ready, as kubectl rollout status treats it.
			r.done = observed && r.ready == r.desired
		default:
			want := r.desired
			if ru := s.Spec.UpdateStrategy.RollingUpdate; ru != nil && ru.Partition != nil && *ru.Partition > 0 {
				want = max(r.desired-*ru.Partition, 0) // only pods at or above the partition update
			}
			r.done = observed && r.updated >= want && r.ready == r.desired
		}
	}
	return r
}

// waitInto waits for the rollout and adds its progress to a step's output.
func (k kinds) waitInto(ctx context.Context, c kubernetes.Interface, t target, out map[string]any) error {
	st, err := k.wait(ctx, c, t)
	for key, v := range st {
		out[key] = v
	}
	return err
}

// wait polls until the rollout is complete, the step's context ends, or
// Kubernetes reports it stuck.
func (k kinds) wait(ctx context.Context, c kubernetes.Interface, t target) (map[string]any, error) {
	start := k.opts.Now()
	var last rollout
	var out map[string]any
	for {
		w, err := getWorkload(ctx, c, t)
		if err != nil {
			if out != nil && ctx.Err() != nil {
				// The step's time ran out during a poll: report the
				// progress seen, not the interrupted request.
				return out, fmt.Errorf("rollout of %s not complete after %s: %s", t, k.opts.Now().Sub(start).Round(time.Second), last)
			}
			return nil, err
		}
		last = progress(w)
		out = map[string]any{"rolloutComplete": last.done, "updatedReplicas": last.updated, "availableReplicas": last.available, "desiredReplicas": last.desired}
		if last.done {
			return out, nil
		}
		if last.stuck != "" {
			return out, fmt.Errorf("%w: rollout of %s will not complete: %s (%s)", step.ErrPermanent, t, last.stuck, last)
		}
		if k.opts.Heartbeat != nil {
			k.opts.Heartbeat(ctx, map[string]any{"rollout": last.String()})
		}
		select {
		case <-ctx.Done():
			return out, fmt.Errorf("rollout of %s not complete after %s: %s", t, k.opts.Now().Sub(start).Round(time.Second), last)
		case <-time.After(k.opts.PollInterval):
		}
	}
}

func (k kinds) get(ctx context.Context, req step.Request) (step.Result, error) {
	t, err := parseTarget(req.Params, "Deployment", "StatefulSet")
	if err != nil {
		return step.Result{}, err
	}
	c, release, err := k.client(ctx, req, t)
	if err != nil {
		return step.Result{}, err
	}
	defer release()
	w, err := getWorkload(ctx, c, t)
	if err != nil {
		return step.Result{}, err
	}
	r := progress(w)
	out := map[string]any{
		"replicas":          w.replicas,
		"readyReplicas":     r.ready,
		"availableReplicas": r.available,
		"updatedReplicas":   r.updated,
		"rolloutComplete":   r.done,
		"images":            images(w.template.Spec),
		"generation":        w.meta.Generation,
		// A person's `kubectl rollout restart` shows here: a shadow run
		// compares it before and after its watch.
		"restartedAt": w.template.Annotations[AnnotationRestartedAt],
		// Salve's own last action on it, so a shadow run tells Salve's
		// changes from a person's.
		"salveAction": w.meta.Annotations[AnnotationAction],
	}
	if w.dep != nil {
		rev, _ := strconv.ParseInt(w.meta.Annotations[annotationRevision], 10, 64)
		out["revision"] = rev
		out["observedGeneration"] = w.dep.Status.ObservedGeneration
		out["conditions"] = conditions(w.dep.Status.Conditions)
	} else {
		out["revision"] = w.sts.Status.UpdateRevision
		out["observedGeneration"] = w.sts.Status.ObservedGeneration
	}
	return step.Result{Output: out}, nil
}

// createdAfter reports whether a pod is younger than the step: creation
// timestamps have second resolution, so the comparison is made at that
// resolution, on the safe side.
func createdAfter(p corev1.Pod, scheduled time.Time) bool {
	return !scheduled.IsZero() && !p.CreationTimestamp.Time.Before(scheduled.Truncate(time.Second))
}

// maxDeletePods bounds delete_pod even when a runbook asks for more.
const maxDeletePods = 100

func (k kinds) deletePod(ctx context.Context, req step.Request) (step.Result, error) {
	p := req.Params
	ns, err := step.String(p["namespace"])
	if err != nil || !dns1123.MatchString(ns) {
		return step.Result{}, fmt.Errorf("%w: namespace: want a Kubernetes namespace name, got %v", step.ErrInvalidParams, p["namespace"])
	}
	pod, _ := step.String(p["pod"])
	selector, _ := step.String(p["selector"])
	if (pod == "") == (selector == "") {
		return step.Result{}, fmt.Errorf("%w: give pod (a name) or selector (e.g. app=cart), exactly one", step.ErrInvalidParams)
	}
	maxCount, hasMax, err := optInt(p, "maxCount")
	if err != nil {
		return step.Result{}, err
	}
	if !hasMax {
		maxCount = 1
	}
	if maxCount < 1 || maxCount > maxDeletePods {
		return step.Result{}, fmt.Errorf("%w: maxCount must be from 1 to %d, got %d", step.ErrInvalidParams, maxDeletePods, maxCount)
	}
	var sel labels.Selector
	if selector != "" {
		if sel, err = labels.Parse(selector); err != nil {
			return step.Result{}, fmt.Errorf("%w: selector: %v", step.ErrInvalidParams, err)
		}
		if sel.Empty() {
			return step.Result{}, fmt.Errorf("%w: selector must not be empty: it would match every pod", step.ErrInvalidParams)
		}
	}
	cluster, err := parseCluster(p)
	if err != nil {
		return step.Result{}, err
	}
	t := target{cluster: cluster, namespace: ns, name: pod, kind: "Pod"}
	c, release, err := k.client(ctx, req, t)
	if err != nil {
		return step.Result{}, err
	}
	defer release()
	var victims []corev1.Pod
	matched := 0
	if pod != "" {
		p, err := c.CoreV1().Pods(ns).Get(ctx, pod, getOpts())
		switch {
		case apierrors.IsNotFound(err):
			return step.Result{Output: map[string]any{"deleted": []any{}, "matched": 0}}, nil // already gone
		case err != nil:
			return step.Result{}, apiError("get pod", t, err)
		case p.DeletionTimestamp == nil && !createdAfter(*p, req.ScheduledAt):
			// A pod recreated under the same name (a StatefulSet's) after
			// the step was scheduled is the replacement: spare it.
			victims, matched = []corev1.Pod{*p}, 1
		}
	} else {
		t.name = selector
		list, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
		if err != nil {
			return step.Result{}, apiError("list pods", t, err)
		}
		for _, p := range list.Items {
			// Pods already going, and pods created after the step was
			// scheduled (replacements of pods an earlier attempt deleted),
			// are not candidates: a retry never deletes more.
			if p.DeletionTimestamp != nil || createdAfter(p, req.ScheduledAt) {
				continue
			}
			victims = append(victims, p)
		}
		matched = len(victims)
		podsByPriority(victims)
		if len(victims) > maxCount {
			victims = victims[:maxCount]
		}
	}
	deleted := []any{}
	for _, v := range victims {
		// The UID precondition deletes the pod that was chosen, never a
		// namesake created since.
		err := c.CoreV1().Pods(ns).Delete(ctx, v.Name, metav1.DeleteOptions{Preconditions: metav1.NewUIDPreconditions(string(v.UID))})
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			continue // already gone (or replaced): the outcome we wanted
		}
		if err != nil {
			return step.Result{Output: map[string]any{"deleted": deleted}}, apiError("delete pod", target{cluster: cluster, namespace: ns, name: v.Name, kind: "Pod"}, err)
		}
		deleted = append(deleted, v.Name)
	}
	return step.Result{Output: map[string]any{"deleted": deleted, "matched": matched}}, nil
}
