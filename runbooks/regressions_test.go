package runbooks_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/runbooks"
)

// Bugs found in review; each case failed (or hung) before its fix.
func TestParseRegressions(t *testing.T) {
	const header = "apiVersion: salve/v1\nkind: Runbook\nmetadata: {name: x}\n"
	cases := []struct {
		name string
		doc  string
		want []string // substrings, one per expected problem, in order
	}{
		{
			name: "param name with an unclosed bracket does not hang",
			doc:  header + "spec:\n  params: {'a[': {}}\n  steps:\n    - {name: a, action: http.request, with: {url: http://x}}\n",
			want: []string{"parameter names are letters"},
		},
		{
			name: "a bad duration keeps its line and the file's other problems",
			doc:  header + "spec:\n  steps:\n    - {name: a, action: http.request, with: {url: http://x}, timeout: 5x}\n    - {name: b, action: slep}\n",
			want: []string{`f.yaml:6: want a duration such as "30s", got "5x"`, `f.yaml:7:25: spec.steps[1].action: unknown step kind "slep" (did you mean "sleep"?)`},
		},
		{
			name: "an unknown field and a semantic problem together",
			doc:  header + "spec:\n  foo: 1\n  steps:\n    - {name: a, action: slep}\n",
			want: []string{"f.yaml:5: unknown field \"foo\"", `unknown step kind "slep"`},
		},
		{
			name: "a malformed second document",
			doc:  header + "spec:\n  steps:\n    - {name: a, action: http.request, with: {url: http://x}}\n---\n[unclosed\n",
			want: []string{"f.yaml:"},
		},
		{
			name: "retry attempts are bounded",
			doc:  header + "spec:\n  steps:\n    - {name: a, action: http.request, with: {url: http://x}, retry: {maxAttempts: 4294967298}}\n",
			want: []string{"retry.maxAttempts: must be from 0"},
		},
		{
			name: "non-string map keys cannot reach the workflow",
			doc:  header + "spec:\n  steps:\n    - {name: a, action: http.request, with: {url: http://x, expectStatus: [{1: 2}]}}\n",
			want: []string{"map keys must be strings"},
		},
		{
			name: "a literal when must be true or false",
			doc:  header + "spec:\n  steps:\n    - {name: a, action: http.request, with: {url: http://x}, when: 'yes'}\n",
			want: []string{"spec.steps[0].when: must be a template that renders true or false"},
		},
		{
			name: "an empty file says so",
			doc:  "\n\n",
			want: []string{"empty file"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			done := make(chan error, 1)
			go func() {
				_, err := runbooks.Parse("f.yaml", []byte(tc.doc), registry(t))
				done <- err
			}()
			var err error
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("Parse did not return")
			}
			ps := problems(t, err)
			require.Len(t, ps, len(tc.want), "%v", ps)
			for i, w := range tc.want {
				require.Contains(t, ps[i].String(), w)
			}
		})
	}
}

func TestEmptyAnnotationFallsBackToDefault(t *testing.T) {
	data, err := os.ReadFile("demo-http-check.yaml")
	require.NoError(t, err)
	rb, err := runbooks.Parse("demo.yaml", data, registry(t))
	require.NoError(t, err)
	alert := &domain.AlertEvent{Labels: map[string]string{"alertname": "SalveDemo"}, Annotations: map[string]string{"remediation_url": ""}}
	params, err := rb.ResolveParams(alert, nil)
	require.NoError(t, err)
	require.True(t, strings.HasSuffix(params["url"], "/healthz"), params["url"])
}
