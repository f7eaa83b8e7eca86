package runbooks_test

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/salve-sre/salve/runbooks"
)

var fuzzDNSLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// FuzzParse feeds arbitrary bytes to Parse with the production registry.
// Runbook files are written by people and reviewed by few: Parse must never
// panic or hang, and anything it accepts must be usable by the trigger and
// the workflow.
func FuzzParse(f *testing.F) {
	files, err := filepath.Glob("*.yaml")
	if err != nil {
		f.Fatal(err)
	}
	if len(files) == 0 {
		f.Fatal("no shipped runbooks to seed the corpus with")
	}
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(validRunbook))
	for _, broken := range []string{
		"",
		"---\n",
		"apiVersion: salve/v1\nkind: Runbook\n",
		"apiVersion: [\n",
		"apiVersion: salve/v1\nkind: Runbook\nmetadata: {name: x}\nspec:\n  steps:\n    - {name: a, action: http.reqest, with: {url: '{{ .Params.url'}}\n",
		"apiVersion: salve/v1\nkind: Runbook\nmetadata: {name: x}\nspec:\n  trigger: {matchers: ['a=~\"(\"'], incidentKey: '{{'}\n  steps: [{name: a, action: sleep, with: {duration: soon}}]\n",
		"apiVersion: salve/v1\nkind: Runbook\nmetadata: {name: x, extra: 1}\nspec:\n  steps: [{name: a, action: sleep, with: {duration: 1s}, timeout: 5x}]\n",
		"apiVersion: salve/v1\nkind: Runbook\nmetadata: {name: x}\nspec:\n  params: {1p: {required: true, default: d}}\n  steps: [{name: a, action: sleep, with: {duration: 1s}}]\n---\nmore\n",
		"&a [*a, *a]\n",
		"apiVersion: salve/v1\nkind: Runbook\nmetadata: {name: x}\nspec:\n  steps: [{name: a, action: http.request, with: {url: http://x, headers: {1: 2}, expectStatus: [{a: b}]}}]\n",
	} {
		f.Add([]byte(broken))
	}

	reg := registry(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		rb, err := runbooks.Parse("fuzz.yaml", data, reg)
		if err != nil {
			if rb != nil {
				t.Fatalf("Parse returned a runbook and an error: %v", err)
			}
			if !errors.Is(err, runbooks.ErrInvalid) {
				t.Fatalf("Parse error does not wrap ErrInvalid: %v", err)
			}
			var verr *runbooks.ValidationError
			if !errors.As(err, &verr) || len(verr.Problems) == 0 {
				t.Fatalf("Parse error is not a ValidationError with problems: %#v", err)
			}
			for _, p := range verr.Problems {
				if p.Source != "fuzz.yaml" || p.Line < 0 {
					t.Fatalf("problem without its source or with a bad line: %#v", p)
				}
			}
			return
		}
		if rb == nil {
			t.Fatal("Parse returned neither a runbook nor an error")
		}
		if name := rb.Name(); len(name) > 63 || !fuzzDNSLabel.MatchString(name) {
			t.Fatalf("accepted runbook name %q is not a DNS label", name)
		}
		if len(rb.Spec.Steps) == 0 {
			t.Fatal("accepted a runbook without steps")
		}
		if rb.APIVersion != runbooks.APIVersion || rb.Kind != runbooks.Kind {
			t.Fatalf("accepted apiVersion %q kind %q", rb.APIVersion, rb.Kind)
		}
		// Matching must not panic on whatever matchers were accepted.
		rb.Matches(map[string]string{"alertname": "X", "severity": "critical"})
	})
}
