package runbooks_test

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/activities"
	"github.com/salve-sre/salve/activities/step"
	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/internal/runbookload"
	"github.com/salve-sre/salve/runbooks"
)

// registry is the production step registry, so runbooks here are validated
// exactly as they are when Salve loads them.
func registry(t testing.TB) *step.Registry {
	t.Helper()
	reg, err := activities.NewRegistry()
	require.NoError(t, err)
	return reg
}

func mustParse(t *testing.T, doc string) *runbooks.Runbook {
	t.Helper()
	rb, err := runbooks.Parse("test.yaml", []byte(doc), registry(t))
	require.NoError(t, err)
	return rb
}

// problems returns the problems of a Parse error, failing the test if err is
// not a *runbooks.ValidationError wrapping ErrInvalid.
func problems(t *testing.T, err error) []runbooks.Problem {
	t.Helper()
	require.Error(t, err)
	require.ErrorIs(t, err, runbooks.ErrInvalid)
	var verr *runbooks.ValidationError
	require.ErrorAs(t, err, &verr)
	require.NotEmpty(t, verr.Problems)
	return verr.Problems
}

const validRunbook = `# a comment line
apiVersion: salve/v1
kind: Runbook
metadata:
  name: restart-web
  owner: team-web
  description: Restart the web tier.
  labels: {tier: web}
spec:
  trigger:
    matchers:
      - alertname="WebDown"
      - severity=~"warning|critical"
    incidentKey: '{{ .Labels.namespace }}/{{ .Labels.service }}'
  params:
    namespace: {fromLabel: namespace, required: true}
    url: {fromAnnotation: runbook_hook, default: "http://127.0.0.1:9/hook", pattern: 'http://127\.0\.0\.1:[0-9]+/[a-z]+'}
  toil: {manualMinutes: 15}
  steps:
    - name: restart
      action: http.request
      with:
        url: '{{ .Params.url }}'
        method: POST
        headers: {X-Namespace: '{{ .Params.namespace }}'}
        expectStatus: [200, 202]
      timeout: 45s
      retry: {maxAttempts: 5, initialInterval: 2s, maxInterval: 1m}
    - name: settle
      action: sleep
      with: {duration: 2m}
    - name: verify
      action: http.request
      when: '{{ eq .Steps.restart.Status "succeeded" }}'
      with: {url: '{{ .Params.url }}'}
      continueOnError: true
  onFailure:
    - name: page
      action: http.request
      with: {url: "http://127.0.0.1:9/page", body: 'run {{ .Run.WorkflowID }} failed'}
`

func TestParseValid(t *testing.T) {
	rb := mustParse(t, validRunbook)

	require.Equal(t, "restart-web", rb.Name())
	require.Equal(t, runbooks.APIVersion, rb.APIVersion)
	require.Equal(t, runbooks.Kind, rb.Kind)
	require.Equal(t, "team-web", rb.Metadata.Owner)
	require.Equal(t, map[string]string{"tier": "web"}, rb.Metadata.Labels)
	require.Equal(t, "test.yaml", rb.Source)
	require.Regexp(t, `^[0-9a-f]{64}$`, rb.Hash)
	require.Equal(t, []string{`alertname="WebDown"`, `severity=~"warning|critical"`}, rb.Spec.Trigger.Matchers)
	require.Equal(t, runbooks.Param{FromLabel: "namespace", Required: true}, rb.Spec.Params["namespace"])
	require.Equal(t, runbooks.Param{FromAnnotation: "runbook_hook", Default: "http://127.0.0.1:9/hook", Pattern: `http://127\.0\.0\.1:[0-9]+/[a-z]+`}, rb.Spec.Params["url"])
	require.InDelta(t, 15.0, rb.Spec.Toil.ManualMinutes, 0)

	require.Len(t, rb.Spec.Steps, 3)
	restart := rb.Spec.Steps[0]
	require.Equal(t, "restart", restart.Name)
	require.Equal(t, "http.request", restart.Action)
	require.Equal(t, 45*time.Second, restart.Timeout.D())
	require.Equal(t, &runbooks.Retry{
		MaxAttempts:     5,
		InitialInterval: runbooks.Duration(2 * time.Second),
		MaxInterval:     runbooks.Duration(time.Minute),
	}, restart.Retry)
	require.Equal(t, "POST", restart.With["method"])
	require.Equal(t, []any{200, 202}, restart.With["expectStatus"])
	require.Equal(t, runbooks.ActionSleep, rb.Spec.Steps[1].Action)
	require.True(t, rb.Spec.Steps[2].ContinueOnError)
	require.Len(t, rb.Spec.OnFailure, 1)
	require.Equal(t, "page", rb.Spec.OnFailure[0].Name)

	// The hash names the exact bytes: any edit changes it.
	again := mustParse(t, validRunbook)
	require.Equal(t, rb.Hash, again.Hash)
	edited := mustParse(t, validRunbook+"# edited\n")
	require.NotEqual(t, rb.Hash, edited.Hash)
}

// TestParseReportsEveryProblem puts many independent mistakes in one file
// and requires all of them at once, each with file, line and field.
func TestParseReportsEveryProblem(t *testing.T) {
	const doc = `apiVersion: salve/v2
kind: Runbook
metadata:
  name: Bad_Name
spec:
  trigger:
    matchers:
      - alertname="X"
      - 'severity=~"unclosed'
    incidentKey: '{{ .Labels.instance '
  steps:
    - name: call
      action: http.reqest
      with:
        url: http://x
    - name: call
      action: http.request
      with:
        url: http://x
        uri: http://y
    - name: wait
      action: sleep
      with:
        duration: 5 minutes
    - name: check
      action: http.request
      when: '{{ if }}'
      with:
        url: '{{ .Params.url'
`
	_, err := runbooks.Parse("runbooks/bad.yaml", []byte(doc), registry(t))
	got := problems(t, err)

	want := []struct {
		line int
		path string
		msg  string // a substring of the message
	}{
		{1, "apiVersion", `must be "salve/v1", got "salve/v2"`},
		{4, "metadata.name", `must be a DNS label`},
		{9, "spec.trigger.matchers[1]", `bad matcher "severity=~\"unclosed"`},
		{10, "spec.trigger.incidentKey", `bad template "{{ .Labels.instance "`},
		{13, "spec.steps[0].action", `unknown step kind "http.reqest" (did you mean "http.request"?)`},
		{16, "spec.steps[1].name", `duplicate step name "call" (first at spec.steps[0])`},
		{18, "spec.steps[1].with", `unknown parameter "uri"`},
		{24, "spec.steps[2].with.duration", `want a duration such as "30s", got "5 minutes"`},
		{27, "spec.steps[3].when", `bad template "{{ if }}"`},
		{29, "spec.steps[3].with.url", `bad template "{{ .Params.url"`},
	}
	require.Len(t, got, len(want), "problems: %v", err)
	for i, w := range want {
		p := got[i]
		require.Equal(t, "runbooks/bad.yaml", p.Source, "problem %d", i)
		require.Equal(t, w.path, p.Path, "problem %d: %s", i, p)
		require.Equal(t, w.line, p.Line, "problem %d: %s", i, p)
		require.Contains(t, p.Msg, w.msg, "problem %d", i)
	}
	// The error text is what `salve runbook validate` prints: one line per
	// problem, each file:line: field: message.
	lines := strings.Split(err.Error(), "\n")
	require.Len(t, lines, len(want))
	require.Equal(t, `runbooks/bad.yaml:13:15: spec.steps[0].action: unknown step kind "http.reqest" (did you mean "http.request"?)`, lines[4])
	for i, l := range lines {
		require.True(t, strings.HasPrefix(l, "runbooks/bad.yaml:"), "line %d: %s", i, l)
	}
}

func TestParseProblems(t *testing.T) {
	const header = "apiVersion: salve/v1\nkind: Runbook\nmetadata: {name: x}\n"
	tests := []struct {
		name string
		doc  string
		want []string // Problem.String() of each problem, in order
	}{
		{
			name: "unknown fields everywhere are all reported with lines",
			doc: `apiVersion: salve/v1
kind: Runbook
metadata:
  name: x
  team: web
spec:
  steps:
    - name: a
      action: http.request
      with: {url: "http://x"}
      retries: 3
`,
			want: []string{
				`f.yaml:5: unknown field "team" (known here: name, description, owner, labels)`,
				`f.yaml:11: unknown field "retries" (did you mean "retry"?) (known here: name, action, with, when, timeout, retry, continueOnError, approval)`,
			},
		},
		{
			name: "wrong kind",
			doc:  "apiVersion: salve/v1\nkind: Playbook\nmetadata: {name: x}\nspec:\n  steps: [{name: a, action: sleep, with: {duration: 1s}}]\n",
			want: []string{`f.yaml:2:7: kind: must be "Runbook", got "Playbook"`},
		},
		{
			name: "no steps",
			doc:  header + "spec:\n  steps: []\n",
			want: []string{"f.yaml:5:3: spec.steps: a runbook needs at least one step"},
		},
		{
			name: "name too long",
			doc:  "apiVersion: salve/v1\nkind: Runbook\nmetadata: {name: " + strings.Repeat("a", 64) + "}\nspec:\n  steps: [{name: a, action: sleep, with: {duration: 1s}}]\n",
			want: []string{`f.yaml:3:18: metadata.name: must be a DNS label (lowercase letters, digits and '-', at most 63), got "` + strings.Repeat("a", 64) + `"`},
		},
		{
			name: "step without name or action",
			doc:  header + "spec:\n  steps:\n    - with: {url: http://x}\n",
			want: []string{
				"f.yaml:6:7: spec.steps[0].name: every step needs a name",
				"f.yaml:6:7: spec.steps[0].action: every step needs an action (one of: http.request, kubernetes.delete_pod, kubernetes.get, kubernetes.restart, kubernetes.rollback, kubernetes.scale, kubernetes.wait_rollout, notify, prometheus.assert, prometheus.query, sleep)",
			},
		},
		{
			name: "step name unusable in templates",
			doc:  header + "spec:\n  steps:\n    - {name: check-1, action: sleep, with: {duration: 1s}}\n",
			want: []string{`f.yaml:6:14: spec.steps[0].name: step names are letters, digits and '_' starting with a letter (they are used as {{ .Steps.<name> }}), got "check-1"`},
		},
		{
			name: "onFailure step names share the namespace of steps",
			doc:  header + "spec:\n  steps:\n    - {name: a, action: sleep, with: {duration: 1s}}\n  onFailure:\n    - {name: a, action: sleep, with: {duration: 1s}}\n",
			want: []string{`f.yaml:8:14: spec.onFailure[0].name: duplicate step name "a" (first at spec.steps[0])`},
		},
		{
			name: "http.request without its required url, and a wrong type",
			doc:  header + "spec:\n  steps:\n    - name: a\n      action: http.request\n      with: {headers: [a, b]}\n",
			want: []string{
				`f.yaml:8:7: spec.steps[0].with: parameter "headers": want a map of strings, got []interface {}`,
				`f.yaml:8:7: spec.steps[0].with: missing required parameter "url"`,
			},
		},
		{
			name: "sleep takes only a duration",
			doc:  header + "spec:\n  steps:\n    - name: a\n      action: sleep\n      with: {duration: 1s, jitter: 1s}\n",
			want: []string{"f.yaml:8:7: spec.steps[0].with: sleep takes exactly one parameter, duration (e.g. duration: 5m)"},
		},
		{
			name: "sleep with a negative duration",
			doc:  header + "spec:\n  steps:\n    - name: a\n      action: sleep\n      with: {duration: -5s}\n",
			want: []string{`f.yaml:8:24: spec.steps[0].with.duration: duration "-5s" is negative`},
		},
		{
			name: "sleep with a number instead of a duration",
			doc:  header + "spec:\n  steps:\n    - name: a\n      action: sleep\n      with: {duration: 30}\n",
			want: []string{`f.yaml:8:24: spec.steps[0].with.duration: want a duration such as "30s", got int`},
		},
		{
			name: "unknown step kind far from every known kind gets no suggestion",
			doc:  header + "spec:\n  steps:\n    - {name: a, action: pagerduty.trigger}\n",
			want: []string{`f.yaml:6:25: spec.steps[0].action: unknown step kind "pagerduty.trigger"`},
		},
		{
			name: "typo of sleep is suggested too",
			doc:  header + "spec:\n  steps:\n    - {name: a, action: slep, with: {duration: 1s}}\n",
			want: []string{`f.yaml:6:25: spec.steps[0].action: unknown step kind "slep" (did you mean "sleep"?)`},
		},
		{
			name: "param rules",
			doc: header + `spec:
  params:
    1bad: {}
    both: {fromLabel: a, fromAnnotation: b}
    reqdef: {required: true, default: x}
  steps: [{name: a, action: sleep, with: {duration: 1s}}]
`,
			want: []string{
				`f.yaml:6:5: spec.params.1bad: parameter names are letters, digits and '_' starting with a letter, got "1bad"`,
				"f.yaml:7:5: spec.params.both: set fromLabel or fromAnnotation, not both",
				"f.yaml:8:5: spec.params.reqdef: a required parameter cannot have a default",
			},
		},
		{
			name: "negative toil and retry",
			doc:  header + "spec:\n  toil: {manualMinutes: -1}\n  steps:\n    - {name: a, action: http.request, with: {url: http://x}, retry: {maxAttempts: -1}}\n",
			want: []string{
				"f.yaml:5:25: spec.toil.manualMinutes: must not be negative",
				"f.yaml:7:83: spec.steps[0].retry.maxAttempts: must be from 0 (default 3) to 100",
			},
		},
		{
			name: "wrong YAML type",
			doc:  header + "spec:\n  steps: {name: a}\n",
			want: []string{"f.yaml:5: cannot unmarshal !!map into []runbooks.Step"},
		},
		{
			name: "YAML syntax error",
			doc:  header + "spec:\n  steps: [\n",
			// yaml.v3 points at the line with the unclosed bracket.
			want: []string{"f.yaml:5: did not find expected node content"},
		},
		{
			name: "two documents in one file",
			doc:  header + "spec:\n  steps: [{name: a, action: sleep, with: {duration: 1s}}]\n---\n" + header,
			// The line of the "---" that starts the second document.
			want: []string{"f.yaml:6: more than one YAML document: put one runbook per file"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rb, err := runbooks.Parse("f.yaml", []byte(tt.doc), registry(t))
			require.Nil(t, rb)
			got := problems(t, err)
			strs := make([]string, len(got))
			for i, p := range got {
				strs[i] = p.String()
			}
			require.Equal(t, tt.want, strs)
		})
	}
}

func TestParseEmptyInput(t *testing.T) {
	for _, doc := range []string{"", "\n", "# only a comment\n"} {
		rb, err := runbooks.Parse("empty.yaml", []byte(doc), registry(t))
		require.Nil(t, rb)
		got := problems(t, err)
		require.Equal(t, "empty.yaml", got[0].Source)
	}
}

func TestMatches(t *testing.T) {
	rb := mustParse(t, `apiVersion: salve/v1
kind: Runbook
metadata: {name: m}
spec:
  trigger:
    matchers: ['alertname="X"', 'severity=~"warning|critical"', 'env!="dev"']
  steps: [{name: a, action: sleep, with: {duration: 1s}}]
`)
	manual := mustParse(t, `apiVersion: salve/v1
kind: Runbook
metadata: {name: manual}
spec:
  steps: [{name: a, action: sleep, with: {duration: 1s}}]
`)
	tests := []struct {
		name   string
		labels map[string]string
		want   bool
	}{
		{"all match", map[string]string{"alertname": "X", "severity": "critical", "env": "prod"}, true},
		{"regex alternative", map[string]string{"alertname": "X", "severity": "warning"}, true},
		{"absent label satisfies !=", map[string]string{"alertname": "X", "severity": "warning"}, true},
		{"regex is anchored", map[string]string{"alertname": "X", "severity": "criticality"}, false},
		{"regex does not match", map[string]string{"alertname": "X", "severity": "info"}, false},
		{"!= excludes", map[string]string{"alertname": "X", "severity": "critical", "env": "dev"}, false},
		{"equality is exact", map[string]string{"alertname": "XY", "severity": "critical"}, false},
		{"missing label", map[string]string{"severity": "critical"}, false},
		{"no labels", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, rb.Matches(tt.labels))
			// A runbook without matchers is launched by hand only.
			require.False(t, manual.Matches(tt.labels))
		})
	}
}

func TestSet(t *testing.T) {
	const tmpl = `apiVersion: salve/v1
kind: Runbook
metadata: {name: NAME}
spec:
  trigger: {matchers: ['MATCHER']}
  steps: [{name: a, action: sleep, with: {duration: 1s}}]
`
	mk := func(name, matcher string) *runbooks.Runbook {
		doc := strings.NewReplacer("NAME", name, "MATCHER", matcher).Replace(tmpl)
		rb, err := runbooks.Parse(name+".yaml", []byte(doc), registry(t))
		require.NoError(t, err)
		return rb
	}
	zeta := mk("zeta", `severity="critical"`)
	alpha := mk("alpha", `alertname="Down"`)
	mid := mk("mid", `alertname="Other"`)

	set, err := runbooks.NewSet(zeta, alpha, mid)
	require.NoError(t, err)
	require.Equal(t, []*runbooks.Runbook{alpha, mid, zeta}, set.All())

	got, ok := set.Get("mid")
	require.True(t, ok)
	require.Same(t, mid, got)
	_, ok = set.Get("nope")
	require.False(t, ok)

	matched := set.Match(domain.AlertEvent{Labels: map[string]string{"alertname": "Down", "severity": "critical"}})
	require.Equal(t, []*runbooks.Runbook{alpha, zeta}, matched)
	require.Empty(t, set.Match(domain.AlertEvent{Labels: map[string]string{"alertname": "Nothing"}}))

	_, err = runbooks.NewSet(alpha, mk("alpha", `alertname="Again"`))
	require.ErrorIs(t, err, runbooks.ErrInvalid)
	require.Contains(t, err.Error(), `runbook name "alpha" is already used by alpha.yaml`)
}

func TestIncidentKey(t *testing.T) {
	const tmpl = `apiVersion: salve/v1
kind: Runbook
metadata: {name: k}
spec:
  trigger:
    matchers: ['alertname="X"']
    incidentKey: 'KEY'
  steps: [{name: a, action: sleep, with: {duration: 1s}}]
`
	withKey := func(key string) *runbooks.Runbook {
		if key == "" {
			return mustParse(t, strings.Replace(tmpl, "    incidentKey: 'KEY'\n", "", 1))
		}
		return mustParse(t, strings.Replace(tmpl, "KEY", key, 1))
	}
	alert := domain.AlertEvent{
		Fingerprint: "fp123",
		Status:      domain.StatusFiring,
		Labels:      map[string]string{"alertname": "X", "namespace": "shop", "deployment": "web", "empty": ""},
		Annotations: map[string]string{"team": "payments"},
	}
	tests := []struct {
		name    string
		key     string
		alert   domain.AlertEvent
		want    string
		wantErr string
	}{
		{name: "default is the fingerprint", alert: alert, want: "fp123"},
		{name: "default without fingerprint", alert: domain.AlertEvent{Labels: alert.Labels}, wantErr: "alert has no fingerprint"},
		{name: "template over labels", key: "{{ .Labels.namespace }}/{{ .Labels.deployment }}", alert: alert, want: "shop/web"},
		{name: "template over annotations and the alert", key: "{{ .Annotations.team }}-{{ .Alert.Fingerprint }}", alert: alert, want: "payments-fp123"},
		{name: "constant key groups every alert", key: "global", alert: alert, want: "global"},
		{name: "missing label is an error, not an empty key", key: "{{ .Labels.pod }}", alert: alert, wantErr: `map has no entry for key "pod"`},
		{name: "alert without labels", key: "{{ .Labels.namespace }}", alert: domain.AlertEvent{Fingerprint: "fp"}, wantErr: `map has no entry for key "namespace"`},
		{name: "empty rendering is an error", key: "{{ .Labels.empty }}", alert: alert, wantErr: `incident key of runbook "k" rendered empty for alert {alertname="X", deployment="web", empty="", namespace="shop"}`},
		{name: "blank rendering is an error", key: " {{ .Labels.empty }} ", alert: alert, wantErr: "rendered empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := withKey(tt.key).IncidentKey(tt.alert)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestResolveParams(t *testing.T) {
	rb := mustParse(t, `apiVersion: salve/v1
kind: Runbook
metadata: {name: p}
spec:
  params:
    ns: {fromLabel: namespace, required: true}
    url: {fromAnnotation: hook, default: "http://default"}
    size: {fromLabel: size, default: "3"}
    mode: {default: safe}
    note: {description: "optional, no source"}
  steps: [{name: a, action: sleep, with: {duration: 1s}}]
`)
	alert := &domain.AlertEvent{
		Labels:      map[string]string{"namespace": "shop", "size": "5", "hook": "not-an-annotation"},
		Annotations: map[string]string{"hook": "http://from-annotation", "namespace": "not-a-label"},
	}
	tests := []struct {
		name    string
		alert   *domain.AlertEvent
		launch  map[string]string
		want    map[string]string
		wantErr []string
	}{
		{
			name:  "label and annotation beat defaults",
			alert: alert,
			want:  map[string]string{"ns": "shop", "url": "http://from-annotation", "size": "5", "mode": "safe", "note": ""},
		},
		{
			name:   "launch params beat labels, annotations and defaults",
			alert:  alert,
			launch: map[string]string{"ns": "other", "url": "http://launch", "mode": "fast", "note": "hi"},
			want:   map[string]string{"ns": "other", "url": "http://launch", "size": "5", "mode": "fast", "note": "hi"},
		},
		{
			name:  "defaults when the alert lacks the label and annotation",
			alert: &domain.AlertEvent{Labels: map[string]string{"namespace": "shop"}},
			want:  map[string]string{"ns": "shop", "url": "http://default", "size": "3", "mode": "safe", "note": ""},
		},
		{
			name:   "manual launch without an alert",
			launch: map[string]string{"ns": "shop"},
			want:   map[string]string{"ns": "shop", "url": "http://default", "size": "3", "mode": "safe", "note": ""},
		},
		{
			name:    "missing required parameter names where it comes from",
			wantErr: []string{`missing required parameter "ns" (from alert label "namespace" or a launch param)`},
		},
		{
			name:    "empty required label counts as missing",
			alert:   &domain.AlertEvent{Labels: map[string]string{"namespace": ""}},
			wantErr: []string{`missing required parameter "ns"`},
		},
		{
			name:    "unknown launch params and missing ones are reported together",
			launch:  map[string]string{"namespce": "shop", "zzz": "1"},
			wantErr: []string{`unknown parameter "namespce"`, `unknown parameter "zzz"`, `missing required parameter "ns"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := rb.ResolveParams(tt.alert, tt.launch)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, runbooks.ErrParams)
				for _, w := range tt.wantErr {
					require.ErrorContains(t, err, w)
				}
				require.Nil(t, got)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestResolveParamsSourceHints(t *testing.T) {
	rb := mustParse(t, `apiVersion: salve/v1
kind: Runbook
metadata: {name: p}
spec:
  params:
    a: {fromAnnotation: hook, required: true}
    b: {required: true}
  steps: [{name: a, action: sleep, with: {duration: 1s}}]
`)
	_, err := rb.ResolveParams(nil, nil)
	require.ErrorIs(t, err, runbooks.ErrParams)
	require.EqualError(t, err, `bad runbook parameters: missing required parameter "a" (from alert annotation "hook" or a launch param); missing required parameter "b" (pass it as a launch param)`)
}

func templateData() runbooks.TemplateData {
	return runbooks.TemplateData{
		Alert:       domain.AlertEvent{Fingerprint: "fp1", Status: domain.StatusFiring},
		Labels:      map[string]string{"host": "web-1", "env": "prod"},
		Annotations: map[string]string{"summary": "Web Down"},
		Params:      map[string]string{"env": "prod", "code": "204", "empty": "", "flag": "true", "yes": "yes"},
		Steps: map[string]runbooks.StepData{
			"check": {Status: "succeeded", Output: map[string]any{"status": float64(200), "body": `{"ok":true}`}},
		},
		Run: runbooks.RunData{Runbook: "rb", WorkflowID: "salve/rb/key", IncidentKey: "key"},
	}
}

func TestRenderString(t *testing.T) {
	tests := []struct {
		name    string
		text    string
		want    string
		wantErr string
	}{
		{name: "plain text is returned as is", text: "no template {here}", want: "no template {here}"},
		{name: "labels", text: "http://{{ .Labels.host }}/x", want: "http://web-1/x"},
		{name: "annotations", text: "{{ .Annotations.summary }}", want: "Web Down"},
		{name: "earlier step output", text: "{{ .Steps.check.Output.status }}", want: "200"},
		{name: "earlier step status", text: "{{ .Steps.check.Status }}", want: "succeeded"},
		{name: "run data", text: "{{ .Run.WorkflowID }} {{ .Run.IncidentKey }} {{ .Run.Runbook }}", want: "salve/rb/key key rb"},
		{name: "alert", text: "{{ .Alert.Fingerprint }}", want: "fp1"},
		{name: "lower upper trim", text: `{{ lower "AbC" }}{{ upper "x" }}{{ trim "  y  " }}`, want: "abcXy"},
		{name: "replace", text: `{{ .Labels.host | replace "-" "_" }}`, want: "web_1"},
		{name: "quote", text: `{{ quote .Annotations.summary }}`, want: `"Web Down"`},
		{name: "toJSON", text: `{{ toJSON .Steps.check.Output }}`, want: `{"body":"{\"ok\":true}","status":200}`},
		{name: "default for an empty value", text: `{{ .Params.empty | default "none" }}`, want: "none"},
		{name: "default keeps a set value", text: `{{ .Params.env | default "none" }}`, want: "prod"},
		{name: "missing label is an error", text: "{{ .Labels.nope }}", wantErr: `map has no entry for key "nope"`},
		{name: "missing step is an error", text: "{{ .Steps.later.Output.status }}", wantErr: `map has no entry for key "later"`},
		{name: "unknown function is an error", text: "{{ now }}", wantErr: `function "now" not defined`},
		{name: "bad syntax is an error", text: "{{ .Labels.host ", wantErr: `template "{{ .Labels.host "`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := runbooks.RenderString(tt.text, templateData())
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestRender(t *testing.T) {
	with := map[string]any{
		"url":          "http://{{ .Labels.host }}/restart",
		"expectStatus": []any{200, "{{ .Params.code }}"},
		"headers":      map[string]any{"X-Run": "{{ .Run.WorkflowID }}", "X-Static": "s"},
		"count":        3,
		"enabled":      true,
	}
	got, err := runbooks.Render(with, templateData())
	require.NoError(t, err)
	require.Equal(t, map[string]any{
		"url":          "http://web-1/restart",
		"expectStatus": []any{200, "204"},
		"headers":      map[string]any{"X-Run": "salve/rb/key", "X-Static": "s"},
		"count":        3,
		"enabled":      true,
	}, got)
	// The input is not modified: the runbook snapshot stays as written.
	require.Equal(t, "http://{{ .Labels.host }}/restart", with["url"])
	require.Equal(t, "{{ .Params.code }}", with["expectStatus"].([]any)[1])

	empty, err := runbooks.Render(nil, templateData())
	require.NoError(t, err)
	require.Nil(t, empty)

	// Errors name the parameter, and sorted keys make the first one stable.
	_, err = runbooks.Render(map[string]any{
		"b":       "{{ .Labels.missing_b }}",
		"a":       []any{"ok", map[string]any{"k": "{{ .Labels.missing_a }}"}},
		"headers": "{{ .Labels.missing_h }}",
	}, templateData())
	require.ErrorContains(t, err, `a: [1]: k: template "{{ .Labels.missing_a }}"`)
}

func TestEvalWhen(t *testing.T) {
	tests := []struct {
		name    string
		when    string
		want    bool
		wantErr string
	}{
		{name: "empty guard runs the step", when: "", want: true},
		{name: "blank guard runs the step", when: "  ", want: true},
		{name: "eq true", when: `{{ eq .Params.env "prod" }}`, want: true},
		{name: "eq false", when: `{{ eq .Params.env "staging" }}`, want: false},
		{name: "step status", when: `{{ eq .Steps.check.Status "succeeded" }}`, want: true},
		{name: "step output", when: `{{ eq .Steps.check.Output.status 200.0 }}`, want: true},
		{name: "literal true", when: "true", want: true},
		{name: "literal false", when: "false", want: false},
		{name: "surrounding space is trimmed", when: ` {{ .Params.flag }} `, want: true},
		{name: "rendering empty is an error, not false", when: `{{ .Params.empty }}`, wantErr: `rendered ""; it must render true or false`},
		{name: "anything else is an error", when: `{{ .Params.yes }}`, wantErr: `when "{{ .Params.yes }}" rendered "yes"; it must render true or false`},
		{name: "a typo in a literal is an error", when: "ture", wantErr: "it must render true or false"},
		{name: "missing key is an error, not false", when: `{{ eq .Params.nope "x" }}`, wantErr: `map has no entry for key "nope"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := runbooks.EvalWhen(tt.when, templateData())
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				require.False(t, got)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestDurationJSON(t *testing.T) {
	d := runbooks.Duration(90 * time.Second)
	b, err := d.MarshalJSON()
	require.NoError(t, err)
	require.JSONEq(t, `"1m30s"`, string(b))
	var back runbooks.Duration
	require.NoError(t, back.UnmarshalJSON(b))
	require.Equal(t, d, back)
	require.Error(t, back.UnmarshalJSON([]byte(`"soon"`)))
	require.Error(t, back.UnmarshalJSON([]byte(`90`)))
	require.True(t, runbooks.Duration(0).IsZero())
}

// TestShippedRunbooks keeps the bundled library valid against the
// production registry: a change to a step kind's schema that breaks a
// shipped runbook fails here, not at someone's start-up.
func TestShippedRunbooks(t *testing.T) {
	files, err := filepath.Glob("*.yaml")
	require.NoError(t, err)
	yml, err := filepath.Glob("*.yml")
	require.NoError(t, err)
	files = append(files, yml...)
	require.NotEmpty(t, files, "the runbook library is empty")

	rbs, err := runbookload.LoadDir(".", registry(t))
	require.NoError(t, err)
	require.Len(t, rbs, len(files))
	_, err = runbooks.NewSet(rbs...)
	require.NoError(t, err, "shipped runbook names must be unique")

	dns := regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	for _, rb := range rbs {
		t.Run(rb.Name(), func(t *testing.T) {
			require.Regexp(t, dns, rb.Name())
			require.NotEmpty(t, rb.Metadata.Description, "shipped runbooks describe themselves")
			require.NotEmpty(t, rb.Metadata.Owner, "shipped runbooks name an owner")
			require.NotEmpty(t, rb.Spec.Steps)
			// Parameters a runbook can resolve on its own must resolve
			// without any launch params when nothing is required.
			required := false
			for _, p := range rb.Spec.Params {
				required = required || p.Required
			}
			if !required {
				_, err := rb.ResolveParams(nil, nil)
				require.NoError(t, err)
			}
		})
	}
}

func TestValidationErrorIs(t *testing.T) {
	err := &runbooks.ValidationError{Problems: []runbooks.Problem{{Source: "a.yaml", Line: 3, Path: "kind", Msg: "bad"}, {Source: "a.yaml", Msg: "no line"}}}
	require.ErrorIs(t, err, runbooks.ErrInvalid)
	require.False(t, errors.Is(err, runbooks.ErrParams))
	require.Equal(t, "a.yaml:3: kind: bad\na.yaml: no line", err.Error())
}

func TestResolveParamsTyped(t *testing.T) {
	rb, err := runbooks.Parse("typed.yaml", []byte(`apiVersion: salve/v1
kind: Runbook
metadata: {name: typed}
spec:
  params:
    replicas: {type: int, min: 1, max: 10, default: "2"}
    env: {type: enum, values: [staging, production], fromLabel: env}
    drain: {type: bool}
    wait: {type: duration, max: 10m}
    ns: {pattern: '[a-z]+'}
  steps:
    - {name: s, action: sleep, with: {duration: 1s}}
`), registry(t))
	require.NoError(t, err)

	got, err := rb.ResolveParams(&domain.AlertEvent{Labels: map[string]string{"env": "production"}}, map[string]string{"replicas": "10", "drain": "true", "wait": "90s", "ns": "shop"})
	require.NoError(t, err)
	require.Equal(t, map[string]string{"replicas": "10", "env": "production", "drain": "true", "wait": "90s", "ns": "shop"}, got)

	_, err = rb.ResolveParams(&domain.AlertEvent{Labels: map[string]string{"env": "prod"}}, map[string]string{"replicas": "11", "drain": "yes", "wait": "1h", "ns": "Shop!"})
	require.ErrorIs(t, err, runbooks.ErrParams)
	for _, want := range []string{
		`parameter "drain": want true or false, got "yes"`,
		`parameter "env": want one of staging, production, got "prod" (did you mean "production"?)`,
		`parameter "ns": "Shop!" does not match the pattern [a-z]+`,
		`parameter "replicas": 11 is above the maximum 10`,
		`parameter "wait": 1h0m0s is above the maximum 10m0s`,
	} {
		require.Contains(t, err.Error(), want)
	}

	_, err = rb.ResolveParams(nil, map[string]string{"replicas": "0"})
	require.ErrorContains(t, err, `parameter "replicas": 0 is below the minimum 1`)
	_, err = rb.ResolveParams(nil, map[string]string{"replicas": "2.5"})
	require.ErrorContains(t, err, `parameter "replicas": want a whole number, got "2.5"`)
}

func TestTemplateHost(t *testing.T) {
	for in, want := range map[string]string{"node-1:9100": "node-1", "node-1": "node-1", "[::1]:9100": "::1", "10.0.0.1:80": "10.0.0.1", "fe80::1": "fe80::1"} {
		got, err := runbooks.RenderString(`{{ host .Params.i }}`, runbooks.TemplateData{Params: map[string]string{"i": in}})
		require.NoError(t, err)
		require.Equal(t, want, got, in)
	}
}

// One rule for "does a run wait for a person": the runbook's approval or
// any step's, onFailure steps included (the dashboard once forgot them).
func TestNeedsApproval(t *testing.T) {
	base := `apiVersion: salve/v1
kind: Runbook
metadata: {name: a}
spec:
  steps:
    - {name: s, action: http.request, with: {url: "http://x"}%s}
%s`
	for name, c := range map[string]struct {
		step, rest string
		want       bool
	}{
		"none":              {"", "", false},
		"runbook":           {"", "  safety: {approval: {required: true}}\n", true},
		"a step":            {", approval: {required: true}", "", true},
		"an onFailure step": {"", "  onFailure:\n    - {name: undo, action: http.request, with: {url: \"http://x/undo\"}, approval: {required: true}}\n", true},
	} {
		rb := mustParse(t, fmt.Sprintf(base, c.step, c.rest))
		require.Equal(t, c.want, rb.NeedsApproval(), name)
	}
}
