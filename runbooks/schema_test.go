package runbooks_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/salve-sre/salve/runbooks"
)

// The committed schema is what `salve runbook schema` prints today.
// Regenerate with: SALVE_UPDATE_SCHEMA=1 go test ./runbooks -run Schema
func TestSchemaIsCurrent(t *testing.T) {
	got, err := runbooks.JSONSchema(registry(t))
	require.NoError(t, err)
	got = append(got, '\n')
	if os.Getenv("SALVE_UPDATE_SCHEMA") != "" {
		require.NoError(t, os.WriteFile("schema.json", got, 0o644))
	}
	want, err := os.ReadFile("schema.json")
	require.NoError(t, err)
	require.Equal(t, string(want), string(got), "runbooks/schema.json is stale: run SALVE_UPDATE_SCHEMA=1 go test ./runbooks -run Schema")
}

func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	b, err := runbooks.JSONSchema(registry(t))
	require.NoError(t, err)
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	require.NoError(t, err)
	c := jsonschema.NewCompiler()
	require.NoError(t, c.AddResource("schema.json", doc))
	s, err := c.Compile("schema.json")
	require.NoError(t, err)
	return s
}

func yamlInstance(t *testing.T, path string) any {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	var v any
	require.NoError(t, yaml.Unmarshal(data, &v))
	b, err := json.Marshal(v)
	require.NoError(t, err)
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	require.NoError(t, err)
	return inst
}

// What the validator accepts, an editor using the schema accepts too.
func TestSchemaAcceptsValidRunbooks(t *testing.T) {
	s := compileSchema(t)
	files, err := filepath.Glob("testdata/good/*.yaml")
	require.NoError(t, err)
	library, err := filepath.Glob("*.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, library)
	for _, f := range append(files, library...) {
		require.NoError(t, s.Validate(yamlInstance(t, f)), f)
	}
}

// The schema catches the mistakes people make while typing: unknown
// fields, unknown step kinds, wrong step parameters and enum typos.
func TestSchemaRejectsCommonMistakes(t *testing.T) {
	s := compileSchema(t)
	for _, f := range []string{
		"unknown-field", "unknown-step-kind", "step-params", "bad-on-resolved",
		"param-unknown-type", "safety", "retry-out-of-range", "bad-name", "api-version-and-kind", "sleep-params",
	} {
		require.Error(t, s.Validate(yamlInstance(t, filepath.Join("testdata", "bad", f+".yaml"))), f)
	}
}
