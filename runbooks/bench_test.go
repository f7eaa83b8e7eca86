package runbooks_test

import (
	"os"
	"testing"

	"github.com/salve-sre/salve/runbooks"
)

// BenchmarkParse is the cost of validating one realistic runbook (what a
// hot reload or `salve runbook validate` pays per file).
func BenchmarkParse(b *testing.B) {
	data, err := os.ReadFile("rollback-bad-rollout.yaml")
	if err != nil {
		b.Fatal(err)
	}
	reg := registry(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := runbooks.Parse("rollback-bad-rollout.yaml", data, reg); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRender is the cost of rendering one step's parameters inside
// the workflow.
func BenchmarkRender(b *testing.B) {
	data, err := os.ReadFile("rollback-bad-rollout.yaml")
	if err != nil {
		b.Fatal(err)
	}
	rb, err := runbooks.Parse("rollback-bad-rollout.yaml", data, registry(b))
	if err != nil {
		b.Fatal(err)
	}
	td := runbooks.TemplateData{
		Params: map[string]string{"namespace": "shop", "deployment": "checkout", "service": "checkout", "maxErrorRatio": "0.01", "verifyFor": "2m", "verifyWithin": "10m"},
		Steps:  map[string]runbooks.StepData{},
	}
	with := rb.Spec.Steps[2].With
	b.ReportAllocs()
	for b.Loop() {
		if _, err := runbooks.Render(with, td); err != nil {
			b.Fatal(err)
		}
	}
}
