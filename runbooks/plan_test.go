package runbooks_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/runbooks"
)

func TestPlan(t *testing.T) {
	rb := mustParse(t, `apiVersion: salve/v1
kind: Runbook
metadata: {name: scale-web}
spec:
  params:
    namespace: {required: true, type: enum, values: [shop, payments]}
    replicas: {type: int, min: 1, max: 10, default: "3"}
  credentials: {kubernetes: {vaultRole: 'salve-{{ .Params.namespace }}', ttl: 5m}}
  safety:
    cooldown: 30m
    approval: {required: true, timeout: 10m}
  access: {approvers: ["group:sre"]}
  steps:
    - {name: before, action: kubernetes.get, with: {kind: Deployment, namespace: '{{ .Params.namespace }}', name: web}}
    - name: scale
      action: kubernetes.scale
      with: {namespace: '{{ .Params.namespace }}', name: web, replicas: '{{ .Params.replicas }}'}
      approval: {required: true}
    - {name: report, action: http.request, with: {url: 'http://ops/report?was={{ .Steps.before.Output.replicas | queryEscape }}'}}
  onFailure:
    - {name: undo, action: kubernetes.rollback, with: {namespace: '{{ .Params.namespace }}', name: web}}
`)
	p, err := rb.Plan(registry(t), "salve/scale-web/manual-1", "manual-1", nil, map[string]string{"namespace": "shop"})
	require.NoError(t, err)
	require.Equal(t, map[string]string{"namespace": "shop", "replicas": "3"}, p.Params)
	require.Equal(t, runbooks.ModeEnforce, p.Mode)
	require.Len(t, p.Steps, 3)
	require.False(t, p.Steps[0].Mutating)
	require.True(t, p.Steps[1].Mutating)
	require.True(t, p.Steps[1].Approval)
	require.Equal(t, map[string]any{"namespace": "shop", "name": "web", "replicas": "3"}, p.Steps[1].With)
	require.Equal(t, "http://ops/report?was=", p.Steps[2].With["url"], "outputs are unknown before the run")
	require.Equal(t, []runbooks.PlannedApproval{
		{Timeout: runbooks.Duration(10 * time.Minute), OnTimeout: "fail"},
		{Step: "scale", Timeout: runbooks.Duration(15 * time.Minute), OnTimeout: "fail"},
	}, p.Approvals)
	require.Equal(t, []runbooks.PlannedCredential{{Source: "kubernetes", Role: "salve-shop", TTL: runbooks.Duration(5 * time.Minute), Steps: []string{"before", "scale", "undo"}}}, p.Credentials)
	names := map[string]bool{}
	for _, c := range p.Safety {
		names[c.Name] = c.Enforced
	}
	require.Equal(t, map[string]bool{"one run per incident": true, "cooldown": true, "access": true}, names)

	_, err = rb.Plan(registry(t), "w", "k", nil, map[string]string{"namespace": "Shop!", "replicas": "50", "typo": "x"})
	require.ErrorIs(t, err, runbooks.ErrParams)
	require.ErrorContains(t, err, `unknown parameter "typo"`)
	require.ErrorContains(t, err, `parameter "namespace"`)
	require.ErrorContains(t, err, `parameter "replicas"`)
}
