package domain

import (
	"path"
	"strings"
	"testing"
)

// validForTemporal is what WorkflowID promises: printable ASCII, bounded.
func validForTemporal(t *testing.T, id string) {
	t.Helper()
	if len(id) > 300 {
		t.Fatalf("ID is %d bytes: %q", len(id), id)
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			t.Fatalf("ID %q has byte %#x at %d", id, id[i], i)
		}
	}
}

func TestWorkflowIDKeepsPlainKeys(t *testing.T) {
	for _, k := range []string{"shop/web", "0123abcd", "a=b,c:d", strings.Repeat("k", MaxPlainKey)} {
		id := WorkflowID("rb", k)
		if id != "salve/rb/"+k {
			t.Errorf("WorkflowID(rb, %q) = %q, want the key as it is", k, id)
		}
		rb, got, err := ParseWorkflowID(id)
		if err != nil || rb != "rb" || got != k || HashedKey(got) {
			t.Errorf("ParseWorkflowID(%q) = %q, %q, %v", id, rb, got, err)
		}
	}
}

func TestWorkflowIDHashesEverythingElse(t *testing.T) {
	keys := []string{
		"café", "shop/web ", "a b", "nul\x00", "tab\t", "new\nline", "~", "a~b",
		strings.Repeat("k", MaxPlainKey+1), strings.Repeat("é", 5000), "\xff\xfe",
		strings.Repeat("x", 300) + "1", strings.Repeat("x", 300) + "2",
	}
	seen := map[string]string{}
	for _, k := range keys {
		id := WorkflowID("rb", k)
		validForTemporal(t, id)
		if again := WorkflowID("rb", k); again != id {
			t.Fatalf("not deterministic: %q then %q", id, again)
		}
		_, part, err := ParseWorkflowID(id)
		if err != nil || !HashedKey(part) {
			t.Errorf("%q -> %q: want a hashed key part (%v)", k, id, err)
		}
		if other, dup := seen[id]; dup {
			t.Errorf("keys %q and %q share ID %q", other, k, id)
		}
		seen[id] = k
		// A plain key that looks like the hashed form is itself hashed,
		// so it can never join another key's run.
		if WorkflowID("rb", part) == id {
			t.Errorf("the key %q collides with the hashed ID of %q", part, k)
		}
	}
}

func FuzzWorkflowID(f *testing.F) {
	for _, s := range []string{"", "shop/web", "café", "a~b", "\x00", strings.Repeat("z", 300), "a/../b", "x?y", "a//b", "/lead", "%2F"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, k string) {
		if k == "" {
			return
		}
		id := WorkflowID("rb", k)
		validForTemporal(t, id)
		rb, part, err := ParseWorkflowID(id)
		if err != nil || rb != "rb" {
			t.Fatalf("ParseWorkflowID(%q): %q, %v", id, rb, err)
		}
		if !HashedKey(part) && part != k {
			t.Fatalf("plain ID %q does not carry key %q", id, k)
		}
		addressable(t, id)
	})
}

// addressable fails unless id, put in a URL path as it is, reaches the
// API as itself: nothing a server would clean or a URL would end.
func addressable(t *testing.T, id string) {
	t.Helper()
	if strings.ContainsAny(id, "?#%\\") {
		t.Fatalf("ID %q holds a character that ends or changes a URL path", id)
	}
	if path.Clean("/v1/runs/"+id) != "/v1/runs/"+id {
		t.Fatalf("ID %q is not a clean URL path", id)
	}
}

func TestWorkflowIDsAreAddressable(t *testing.T) {
	for _, k := range []string{"a/../b", "x?y", "a//b", "/lead", "trail/", "./x", "a/.", "50%", "a#b", `a\b`} {
		id := WorkflowID("rb", k)
		if !HashedKey(strings.TrimPrefix(id, "salve/rb/")) {
			t.Errorf("key %q kept plain in %q", k, id)
		}
		addressable(t, id)
	}
	addressable(t, WorkflowID("rb", "shop/web"))
	if WorkflowID("rb", "shop/web") != "salve/rb/shop/web" {
		t.Error("an ordinary key must keep its plain ID (existing runs)")
	}
}

// The runs of a runbook are listed by the prefix WorkflowID(runbook, "").
func TestEmptyKeyIsTheRunbooksPrefix(t *testing.T) {
	if got := WorkflowID("rb", ""); got != "salve/rb/" {
		t.Fatalf("WorkflowID(rb, \"\") = %q, want the prefix salve/rb/", got)
	}
}
