// Package runbookload keeps the serving runbook set in step with a runbook
// directory. Every file is validated before it replaces anything: an
// invalid edit is rejected, logged and audited, and the file's previous
// good version keeps serving. New runs use the new version; running runs
// keep the snapshot they started with (the workflow input carries it).
package runbookload

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/runbooks"
	"github.com/salve-sre/salve/slos"
)

// Auditor records audit events durably.
type Auditor interface {
	RecordAll(ctx context.Context, evs []domain.AuditEvent) error
}

// Loader loads and reloads one directory.
type Loader struct {
	Dir     string
	Catalog runbooks.StepCatalog
	Audit   Auditor
	Log     *slog.Logger
	// Store receives each new set (e.g. triggers.AtomicRunbooks.Store).
	Store func(*runbooks.Set)
	// StoreSLOs receives the SLOs (kind: SLO files in the same
	// directory) after every reload, by name.
	StoreSLOs func(map[string]*slos.SLO)
	// Now is the clock for audit events; time.Now when nil.
	Now func() time.Time

	mu       sync.Mutex
	files    map[string]fileState // path -> what was last seen
	current  *runbooks.Set
	rejected map[string]bool // content hashes already reported
}

type fileState struct {
	hash string            // of the bytes last read
	good *runbooks.Runbook // last valid version; nil if never valid
	slo  *slos.SLO         // the same, for a kind: SLO file
}

// Change summarises one reload, for logs and tests.
type Change struct {
	Loaded   []string // runbooks new or changed
	Removed  []string // runbooks whose file went away
	Rejected []string // problems of files that were not applied
}

// Empty reports whether nothing changed.
func (c Change) Empty() bool { return len(c.Loaded)+len(c.Removed)+len(c.Rejected) == 0 }

// Current returns the set last stored.
func (l *Loader) Current() *runbooks.Set {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.current
}

// Reload reads the directory once and applies what changed. The first call
// loads everything. It returns an error only when audit events cannot be
// written; the new set is not stored then, so nothing serves unaudited.
func (l *Loader) Reload(ctx context.Context) (Change, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.files == nil {
		l.files = map[string]fileState{}
		l.rejected = map[string]bool{}
	}
	now := time.Now
	if l.Now != nil {
		now = l.Now
	}
	at := now().UTC()
	actor := domain.Actor{Kind: domain.ActorSystem, Name: "runbook-loader"}

	paths, err := Files(l.Dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return Change{}, err
	}
	if err != nil && l.current != nil && len(l.current.All()) > 0 {
		// The directory went away (an unmounted volume, a checkout in
		// progress): keep serving rather than unload every runbook.
		if l.Log != nil && !l.rejected["missing-dir"] {
			l.Log.Error("runbook directory is missing; keeping the loaded runbooks", "dir", l.Dir)
		}
		l.rejected["missing-dir"] = true
		return Change{Rejected: []string{"runbook directory " + l.Dir + " is missing; the loaded runbooks keep serving"}}, nil
	}
	delete(l.rejected, "missing-dir")
	next := make(map[string]fileState, len(paths))
	var ch Change
	var evs []domain.AuditEvent
	newRejections := map[string]bool{}
	reject := func(hash, problem string, rb *runbooks.Runbook) {
		ch.Rejected = append(ch.Rejected, problem)
		if l.rejected[hash] {
			return // already reported this exact content
		}
		newRejections[hash] = true
		ev := domain.AuditEvent{ID: "runbook.rejected/" + hash, Time: at, Actor: actor, Action: domain.ActionRunbookRejected, Error: problem}
		if rb != nil {
			ev.Runbook, ev.RunbookHash = rb.Name(), rb.Hash
		}
		evs = append(evs, ev)
	}
	for _, path := range paths {
		prev := l.files[path]
		data, err := os.ReadFile(path)
		if err != nil {
			next[path] = prev // keep serving what we had
			reject(hashOf([]byte(path+err.Error())), fmt.Sprintf("%s: %v", path, err), nil)
			continue
		}
		h := hashOf(data)
		if h == prev.hash {
			next[path] = prev
			continue
		}
		if slos.IsSLO(data) {
			s, err := slos.Parse(path, data)
			if err != nil {
				next[path] = fileState{hash: h, slo: prev.slo}
				reject(h, err.Error(), nil)
				continue
			}
			next[path] = fileState{hash: h, slo: s}
			continue
		}
		rb, err := runbooks.Parse(path, data, l.Catalog)
		if err != nil {
			next[path] = fileState{hash: h, good: prev.good, slo: prev.slo}
			msg := err.Error()
			if prev.good != nil {
				msg += fmt.Sprintf("\n(the previous version of %s, sha256 %s, keeps serving)", prev.good.Name(), short(prev.good.Hash))
			}
			reject(h, msg, prev.good)
			continue
		}
		next[path] = fileState{hash: h, good: rb}
	}

	// A name used by two files: the files that changed in this poll are
	// rejected (the version that served keeps serving); unrelated changes
	// still apply. Forgetting the rejected files' hashes makes the next
	// poll look at them again, in case the other file is renamed.
	byName := map[string][]string{}
	for _, path := range slices.Sorted(maps.Keys(next)) {
		if rb := next[path].good; rb != nil {
			byName[rb.Name()] = append(byName[rb.Name()], path)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(byName)) {
		paths := byName[name]
		if len(paths) < 2 {
			continue
		}
		// The file that keeps the name: one that did not change in this
		// poll, else (first load, or both changed) the first by path.
		keeper := paths[0]
		for _, path := range paths {
			if prev, existed := l.files[path]; existed && prev.good == next[path].good {
				keeper = path
			}
		}
		for _, path := range paths {
			if path == keeper {
				continue
			}
			prev, existed := l.files[path]
			msg := fmt.Sprintf("%s: runbook name %q is already used by %s", path, name, keeper)
			reject(hashOf([]byte(msg)), msg, next[path].good)
			if existed {
				next[path] = prev
			} else {
				delete(next, path)
			}
		}
	}
	var list []*runbooks.Runbook
	for _, path := range slices.Sorted(maps.Keys(next)) {
		if rb := next[path].good; rb != nil {
			list = append(list, rb)
		}
	}
	set, err := runbooks.NewSet(list...)
	if err != nil {
		return ch, err // two unchanged files clash: only possible if the first load let it through
	}

	old := map[string]*runbooks.Runbook{}
	if l.current != nil {
		for _, rb := range l.current.All() {
			old[rb.Name()] = rb
		}
	}
	for _, rb := range set.All() {
		if prev, ok := old[rb.Name()]; ok && prev.Hash == rb.Hash {
			delete(old, rb.Name())
			continue
		}
		delete(old, rb.Name())
		ch.Loaded = append(ch.Loaded, rb.Name())
		evs = append(evs, domain.AuditEvent{
			ID: "runbook.loaded/" + rb.Name() + "/" + rb.Hash + "/" + at.Format(time.RFC3339Nano), Time: at, Actor: actor, Action: domain.ActionRunbookLoaded,
			Runbook: rb.Name(), RunbookHash: rb.Hash, Detail: map[string]string{"source": rb.Source},
		})
	}
	for _, name := range slices.Sorted(maps.Keys(old)) {
		ch.Removed = append(ch.Removed, name)
		evs = append(evs, domain.AuditEvent{
			ID: "runbook.removed/" + name + "/" + old[name].Hash + "/" + at.Format(time.RFC3339Nano), Time: at, Actor: actor,
			Action: domain.ActionRunbookRemoved, Runbook: name, RunbookHash: old[name].Hash,
		})
	}
	if len(evs) > 0 && l.Audit != nil {
		if err := l.Audit.RecordAll(ctx, evs); err != nil {
			return ch, fmt.Errorf("audit runbook changes (nothing applied): %w", err)
		}
	}
	for h := range newRejections {
		l.rejected[h] = true
	}
	l.files = next
	sloByName, dups := sloSet(next)
	for _, d := range dups {
		ch.Rejected = append(ch.Rejected, d)
		if l.Log != nil && !l.rejected[d] {
			l.Log.Error("SLO file ignored", "problem", d)
			l.rejected[d] = true
		}
	}
	if l.StoreSLOs != nil {
		l.StoreSLOs(sloByName)
	}
	for _, rb := range set.All() {
		if p := rb.Spec.SLO; p != nil && sloByName[p.Name] == nil && l.Log != nil && !l.rejected["slo/"+rb.Hash] {
			// The runbook still serves: its runs do what onUnknown says.
			l.Log.Warn("runbook names an SLO no kind: SLO file defines; its runs take spec.slo.onUnknown", "runbook", rb.Name(), "slo", p.Name, "dir", l.Dir)
			l.rejected["slo/"+rb.Hash] = true
		}
	}
	if l.current == nil || len(ch.Loaded)+len(ch.Removed) > 0 {
		l.current = set
		if l.Store != nil {
			l.Store(set)
		}
	}
	l.logChange(ch, newRejections)
	return ch, nil
}

// sloSet is the SLOs of the files, by name; of two files with one name
// the first by path wins, and the others are returned as problems.
func sloSet(files map[string]fileState) (map[string]*slos.SLO, []string) {
	out := map[string]*slos.SLO{}
	var dups []string
	for _, path := range slices.Sorted(maps.Keys(files)) {
		if s := files[path].slo; s != nil {
			if first, dup := out[s.Name()]; dup {
				dups = append(dups, fmt.Sprintf("%s: SLO name %q is already used by %s; this file is ignored", path, s.Name(), first.Source))
				continue
			}
			out[s.Name()] = s
		}
	}
	return out, dups
}

func (l *Loader) logChange(ch Change, fresh map[string]bool) {
	if l.Log == nil {
		return
	}
	for _, name := range ch.Loaded {
		l.Log.Info("runbook loaded", "runbook", name)
	}
	for _, name := range ch.Removed {
		l.Log.Warn("runbook removed: its file is gone", "runbook", name)
	}
	if len(fresh) > 0 {
		for _, p := range ch.Rejected {
			for _, line := range strings.Split(p, "\n") {
				l.Log.Error("runbook change rejected", "problem", line)
			}
		}
	}
}

// Watch reloads every interval until ctx ends. Polling, rather than file
// notifications, also sees Kubernetes ConfigMap updates (a symlink swap)
// and network file systems, and costs a few small reads per interval.
func (l *Loader) Watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := l.Reload(ctx); err != nil && ctx.Err() == nil && l.Log != nil {
				l.Log.Error("runbook reload", "error", err)
			}
		}
	}
}

func hashOf(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}
