package runbookload_test

import (
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/activities"
	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/internal/runbookload"
	"github.com/salve-sre/salve/runbooks"
	"github.com/salve-sre/salve/slos"
)

type auditLog struct {
	mu   sync.Mutex
	evs  []domain.AuditEvent
	fail error
}

func (a *auditLog) RecordAll(_ context.Context, evs []domain.AuditEvent) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.fail != nil {
		return a.fail
	}
	a.evs = append(a.evs, evs...)
	return nil
}

func (a *auditLog) actions() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]string, len(a.evs))
	for i, ev := range a.evs {
		out[i] = ev.Action + ":" + ev.Runbook
	}
	return out
}

func runbook(name, url string) string {
	return "apiVersion: salve/v1\nkind: Runbook\nmetadata: {name: " + name + "}\nspec:\n  steps:\n    - {name: call, action: http.request, with: {url: \"" + url + "\"}}\n"
}

func setup(t *testing.T) (*runbookload.Loader, *auditLog, string, *[]*runbooks.Set) {
	t.Helper()
	reg, err := activities.NewRegistry()
	require.NoError(t, err)
	dir := t.TempDir()
	audit := &auditLog{}
	var stored []*runbooks.Set
	l := &runbookload.Loader{Dir: dir, Catalog: reg, Audit: audit, Store: func(s *runbooks.Set) { stored = append(stored, s) }}
	return l, audit, dir, &stored
}

func write(t *testing.T, dir, name, body string) {
	t.Helper()
	require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600))
}

func urlOf(t *testing.T, s *runbooks.Set, name string) string {
	t.Helper()
	rb, ok := s.Get(name)
	require.True(t, ok, "runbook %s not served", name)
	return rb.Spec.Steps[0].With["url"].(string)
}

func TestReloadAppliesValidChangesAndKeepsThePreviousVersionOfInvalidOnes(t *testing.T) {
	l, audit, dir, stored := setup(t)
	ctx := context.Background()
	write(t, dir, "a.yaml", runbook("a", "http://v1"))
	write(t, dir, "b.yaml", runbook("b", "http://b"))
	write(t, dir, "notes.txt", "not a runbook")

	ch, err := l.Reload(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{"a", "b"}, ch.Loaded)
	require.Len(t, *stored, 1)
	require.Equal(t, "http://v1", urlOf(t, l.Current(), "a"))

	// Nothing changed: nothing stored, nothing audited.
	ch, err = l.Reload(ctx)
	require.NoError(t, err)
	require.True(t, ch.Empty())
	require.Len(t, *stored, 1)

	// A valid edit replaces the runbook; its hash changes.
	oldHash := func() string { rb, _ := l.Current().Get("a"); return rb.Hash }()
	write(t, dir, "a.yaml", runbook("a", "http://v2"))
	ch, err = l.Reload(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{"a"}, ch.Loaded)
	require.Equal(t, "http://v2", urlOf(t, l.Current(), "a"))
	require.NotEqual(t, oldHash, func() string { rb, _ := l.Current().Get("a"); return rb.Hash }())

	// An invalid edit is rejected; v2 keeps serving; it is reported once.
	write(t, dir, "a.yaml", strings.Replace(runbook("a", "http://v3"), "http.request", "http.reqest", 1))
	ch, err = l.Reload(ctx)
	require.NoError(t, err)
	require.Len(t, ch.Rejected, 1)
	require.Contains(t, ch.Rejected[0], `unknown step kind "http.reqest"`)
	require.Contains(t, ch.Rejected[0], "the previous version of a")
	require.Equal(t, "http://v2", urlOf(t, l.Current(), "a"))
	require.Len(t, *stored, 2)
	_, err = l.Reload(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{
		"runbook.loaded:a", "runbook.loaded:b", "runbook.loaded:a", "runbook.rejected:a",
	}, audit.actions(), "a rejection is audited once per content")

	// Fixing it applies the fix; deleting a file removes its runbook.
	write(t, dir, "a.yaml", runbook("a", "http://v4"))
	require.NoError(t, os.Remove(filepath.Join(dir, "b.yaml")))
	ch, err = l.Reload(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{"a"}, ch.Loaded)
	require.Equal(t, []string{"b"}, ch.Removed)
	require.Equal(t, "http://v4", urlOf(t, l.Current(), "a"))
	_, ok := l.Current().Get("b")
	require.False(t, ok)
}

func TestReloadRejectsANameClashAndKeepsServing(t *testing.T) {
	l, _, dir, _ := setup(t)
	ctx := context.Background()
	write(t, dir, "a.yaml", runbook("a", "http://a"))
	_, err := l.Reload(ctx)
	require.NoError(t, err)

	write(t, dir, "copy.yaml", runbook("a", "http://copy"))
	ch, err := l.Reload(ctx)
	require.NoError(t, err)
	require.Len(t, ch.Rejected, 1)
	require.Contains(t, ch.Rejected[0], `runbook name "a" is already used`)
	require.Equal(t, "http://a", urlOf(t, l.Current(), "a"))

	// Renaming the copy resolves the clash on the next poll.
	write(t, dir, "copy.yaml", runbook("a-copy", "http://copy"))
	ch, err = l.Reload(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{"a-copy"}, ch.Loaded)
	require.Equal(t, "http://a", urlOf(t, l.Current(), "a"))
}

// Nothing serves unaudited: when the audit write fails, the change is not
// applied, and the next reload tries again.
func TestReloadAppliesNothingWhenAuditFails(t *testing.T) {
	l, audit, dir, _ := setup(t)
	ctx := context.Background()
	write(t, dir, "a.yaml", runbook("a", "http://v1"))
	_, err := l.Reload(ctx)
	require.NoError(t, err)

	write(t, dir, "a.yaml", runbook("a", "http://v2"))
	audit.fail = errors.New("nats down")
	_, err = l.Reload(ctx)
	require.ErrorContains(t, err, "nothing applied")
	require.Equal(t, "http://v1", urlOf(t, l.Current(), "a"))

	audit.fail = nil
	ch, err := l.Reload(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{"a"}, ch.Loaded)
	require.Equal(t, "http://v2", urlOf(t, l.Current(), "a"))
}

func TestWatchPicksUpChanges(t *testing.T) {
	l, _, dir, _ := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	write(t, dir, "a.yaml", runbook("a", "http://v1"))
	_, err := l.Reload(ctx)
	require.NoError(t, err)
	done := make(chan struct{})
	go func() { defer close(done); l.Watch(ctx, 20*time.Millisecond) }()
	write(t, dir, "a.yaml", runbook("a", "http://v2"))
	require.Eventually(t, func() bool {
		rb, _ := l.Current().Get("a")
		return rb.Spec.Steps[0].With["url"] == "http://v2"
	}, 10*time.Second, 20*time.Millisecond)
	cancel()
	<-done
}

// A clash blocks only the clashing file: an unrelated edit in the same
// poll applies. On a first load the first file by path keeps the name.
func TestNameClashBlocksOnlyTheClashingFile(t *testing.T) {
	l, _, dir, _ := setup(t)
	ctx := context.Background()
	write(t, dir, "a.yaml", runbook("a", "http://a"))
	write(t, dir, "b-copy-of-a.yaml", runbook("a", "http://copy"))
	write(t, dir, "c.yaml", runbook("c", "http://c1"))
	ch, err := l.Reload(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{"a", "c"}, ch.Loaded)
	require.Len(t, ch.Rejected, 1)
	require.Contains(t, ch.Rejected[0], "b-copy-of-a.yaml: runbook name \"a\" is already used by "+filepath.Join(dir, "a.yaml"))
	require.Equal(t, "http://a", urlOf(t, l.Current(), "a"))

	write(t, dir, "c.yaml", runbook("c", "http://c2"))
	ch, err = l.Reload(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{"c"}, ch.Loaded, "the unrelated edit applies while the clash lasts")
	require.Equal(t, "http://c2", urlOf(t, l.Current(), "c"))
}

// A runbook directory that disappears (an unmounted volume) does not
// unload what is serving.
func TestMissingDirectoryKeepsServing(t *testing.T) {
	l, _, dir, _ := setup(t)
	ctx := context.Background()
	write(t, dir, "a.yaml", runbook("a", "http://a"))
	_, err := l.Reload(ctx)
	require.NoError(t, err)
	require.NoError(t, os.RemoveAll(dir))
	ch, err := l.Reload(ctx)
	require.NoError(t, err)
	require.Len(t, ch.Rejected, 1)
	require.Contains(t, ch.Rejected[0], "is missing")
	require.Equal(t, "http://a", urlOf(t, l.Current(), "a"))
}

// SLO files next to the runbooks are loaded with them: a valid one is
// stored, a bad one rejected with its file and line, the runbooks unharmed.
func TestLoaderLoadsSLOsNextToRunbooks(t *testing.T) {
	l, _, dir, stored := setup(t)
	var slosSeen map[string]*slos.SLO
	l.StoreSLOs = func(m map[string]*slos.SLO) { slosSeen = m }
	good, err := os.ReadFile("../../slos/checkout-availability.yaml")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "checkout.yaml"), good, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "bad-slo.yaml"), []byte("apiVersion: openslo/v1alpha\nkind: SLO\nmetadata: {name: Bad}\n"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "call.yaml"), []byte(runbook("call", "http://127.0.0.1:1/x")), 0o600))
	ch, err := l.Reload(context.Background())
	require.NoError(t, err)
	require.Equal(t, []string{"call"}, ch.Loaded)
	require.Len(t, ch.Rejected, 1)
	require.Contains(t, ch.Rejected[0], filepath.Join(dir, "bad-slo.yaml")+":3:")
	require.Len(t, *stored, 1)
	require.Equal(t, []string{"checkout-availability"}, slices.Sorted(maps.Keys(slosSeen)))

	rbs, err := runbookload.LoadDir(dir, l.Catalog)
	require.Len(t, rbs, 1, "LoadDir skips SLO files")
	require.NoError(t, err)
	got, err := runbookload.LoadSLOs(dir)
	require.Len(t, got, 1)
	require.ErrorContains(t, err, "bad-slo.yaml")
}

// An SLO file broken by an edit keeps its last good version serving (its
// runbooks keep deciding by it), like a runbook.
func TestLoaderKeepsTheLastGoodSLO(t *testing.T) {
	l, _, dir, _ := setup(t)
	var slosSeen map[string]*slos.SLO
	l.StoreSLOs = func(m map[string]*slos.SLO) { slosSeen = m }
	good, err := os.ReadFile("../../slos/checkout-availability.yaml")
	require.NoError(t, err)
	path := filepath.Join(dir, "checkout.yaml")
	require.NoError(t, os.WriteFile(path, good, 0o600))
	_, err = l.Reload(context.Background())
	require.NoError(t, err)
	require.Contains(t, slosSeen, "checkout-availability")

	require.NoError(t, os.WriteFile(path, append(good, []byte("\n  oops: [unclosed\n")...), 0o600))
	ch, err := l.Reload(context.Background())
	require.NoError(t, err)
	require.Len(t, ch.Rejected, 1)
	require.Contains(t, slosSeen, "checkout-availability", "the last good version keeps serving")

	// A second file with the same SLO name is ignored, and said so.
	require.NoError(t, os.WriteFile(path, good, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "copy.yaml"), good, 0o600))
	ch, err = l.Reload(context.Background())
	require.NoError(t, err)
	require.Len(t, ch.Rejected, 1)
	require.Contains(t, ch.Rejected[0], `copy.yaml: SLO name "checkout-availability" is already used by`)
}
