package api

import (
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/salve-sre/salve/internal/audit"
	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/internal/runs"
	"github.com/salve-sre/salve/internal/timeline"
	"github.com/salve-sre/salve/internal/trust"
	"github.com/salve-sre/salve/runbooks"
	"github.com/salve-sre/salve/triggers"
	"github.com/salve-sre/salve/workflows"
)

// TestSchemasMatchGoTypes checks each component schema against the Go
// type it describes: the same JSON field names, and a field is required
// exactly when encoding/json always writes it. Responses only exercise the
// fields the fakes fill; this covers the others.
func TestSchemasMatchGoTypes(t *testing.T) {
	var spec struct {
		Components struct {
			Schemas map[string]struct {
				Required   []string                  `yaml:"required"`
				Properties map[string]map[string]any `yaml:"properties"`
			} `yaml:"schemas"`
		} `yaml:"components"`
	}
	require.NoError(t, yaml.Unmarshal(openapiYAML, &spec))

	type alertItem struct { // the item of GET /v1/alerts, as listAlerts builds it
		audit.AlertState
		DurationSeconds float64 `json:"durationSeconds,omitempty"`
	}
	types := map[string]any{
		"Summary": runs.Summary{}, "Detail": runs.Detail{}, "PendingApproval": runs.PendingApproval{},
		"LaunchRequest": runs.LaunchRequest{}, "LaunchResult": runs.LaunchResult{},
		"DecisionRequest": runs.DecisionRequest{}, "DecisionResult": runs.DecisionResult{},
		"CancelRequest": runs.CancelRequest{}, "CancelResult": runs.CancelResult{}, "RunbookStats": runs.RunbookStats{},
		"Status": workflows.Status{}, "StepStatus": workflows.StepStatus{}, "AlertRef": workflows.AlertRef{},
		"ApprovalWait": workflows.ApprovalWait{}, "ApprovalRecord": workflows.ApprovalRecord{},
		"Evidence": workflows.Evidence{}, "TrustSummary": trust.Summary{}, "TrustPolicy": trust.Policy{},
		"Plan": runbooks.Plan{}, "PlannedStep": runbooks.PlannedStep{}, "PlannedApproval": runbooks.PlannedApproval{},
		"PlannedCredential": runbooks.PlannedCredential{}, "SafetyCheck": runbooks.SafetyCheck{}, "PlannedSLO": runbooks.PlannedSLO{},
		"Runbook": runbooks.Runbook{}, "RunbookMetadata": runbooks.Metadata{}, "RunbookSpec": runbooks.Spec{},
		"Trigger": runbooks.Trigger{}, "Param": runbooks.Param{}, "Toil": runbooks.Toil{}, "SLOPolicy": runbooks.SLOPolicy{}, "Credential": runbooks.Credential{},
		"Safety": runbooks.Safety{}, "CircuitBreaker": runbooks.CircuitBreaker{}, "Access": runbooks.Access{},
		"Approval": runbooks.Approval{}, "Step": runbooks.Step{}, "Retry": runbooks.Retry{},
		"RunbookItem": runbookItem{},
		"Actor":       domain.Actor{}, "AuditEvent": domain.AuditEvent{},
		"AuditRecord": audit.Record{}, "VerifyResult": audit.VerifyResult{}, "AuditAnchor": audit.Anchor{},
		"AlertOccurrence": alertItem{},
		"Timeline":        timeline.Timeline{}, "TimelineEntry": timeline.Entry{},
		"SLOItem": SLOItem{}, "SLOBurn": SLOBurn{}, "SLODetail": SLODetail{}, "SLOIncident": SLOIncident{},
		"SLOSaved": SLOSaved{}, "SLOReliability": SLOReliability{},
	}
	// Request bodies Salve decodes from others: only the names must match;
	// what is required is what the decoder checks, not what Go writes.
	requests := map[string]any{"WebhookMessage": triggers.WebhookMessage{}, "WebhookAlert": triggers.WebhookAlert{}}

	check := func(name string, v any, checkRequired bool) {
		s, ok := spec.Components.Schemas[name]
		if !ok {
			t.Errorf("schema %s: missing", name)
			return
		}
		fields := jsonFields(reflect.TypeOf(v))
		var names, required []string
		for _, f := range fields {
			names = append(names, f.name)
			if !f.optional {
				required = append(required, f.name)
			}
			prop, ok := s.Properties[f.name]
			if ok && f.nullable && !f.optional && prop["nullable"] != true {
				t.Errorf("schema %s: property %s can be null (a Go pointer without omitempty): mark it nullable", name, f.name)
			}
		}
		sort.Strings(names)
		props := make([]string, 0, len(s.Properties))
		for p := range s.Properties {
			props = append(props, p)
		}
		sort.Strings(props)
		if !slices.Equal(names, props) {
			t.Errorf("schema %s: properties %v, but %T has JSON fields %v", name, props, v, names)
		}
		if checkRequired {
			sort.Strings(required)
			got := slices.Clone(s.Required)
			sort.Strings(got)
			if !slices.Equal(required, got) {
				t.Errorf("schema %s: required %v, but %T always writes %v", name, got, v, required)
			}
		}
	}
	for name, v := range types {
		check(name, v, true)
	}
	for name, v := range requests {
		check(name, v, false)
	}
}

type jsonField struct {
	name     string
	optional bool // omitempty or omitzero
	nullable bool // a pointer
}

// jsonFields lists the fields encoding/json writes for t, with embedded
// structs flattened.
func jsonFields(t reflect.Type) []jsonField {
	var out []jsonField
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			out = append(out, jsonFields(f.Type)...)
			continue
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		optional := false
		for _, o := range strings.Split(opts, ",") {
			// omitempty never drops a struct (e.g. a zero time.Time).
			if o == "omitzero" || o == "omitempty" && f.Type.Kind() != reflect.Struct {
				optional = true
			}
		}
		out = append(out, jsonField{name: name, optional: optional, nullable: f.Type.Kind() == reflect.Pointer})
	}
	return out
}
