package runbooks

import (
	"bytes"
	"errors"
	"fmt"

	"gopkg.in/yaml.v3"
)

// Trust ladder rungs a runbook file can be promoted to (internal/trust
// owns the ladder; this file only knows how each is written).
const (
	RungApprove = "approve"
	RungEnforce = ModeEnforce
)

// SetRung rewrites a runbook file's safety settings for a promotion:
// approve is mode enforce with the runbook's approval required; enforce
// is mode enforce without the runbook-level approval (step approvals
// stay: they guard one risky step, which is the author's call).
// Comments and the rest of the file are kept; Salve never writes the
// file itself behind its owners' (and git's) back — the CLI prints this
// or writes it where a person asked.
func SetRung(src []byte, rung string) ([]byte, error) {
	if rung != RungApprove && rung != RungEnforce {
		return nil, fmt.Errorf("rung %q: want approve or enforce", rung)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return nil, err
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("not a runbook: the file is not one YAML mapping")
	}
	spec := mapping(doc.Content[0], "spec")
	if spec == nil {
		return nil, errors.New("not a runbook: no spec")
	}
	safety := ensureMapping(spec, "safety")
	setScalar(safety, "mode", ModeEnforce, "!!str")
	deleteKey(safety, "shadowWindow")
	switch rung {
	case RungApprove:
		a := ensureMapping(safety, "approval")
		setScalar(a, "required", "true", "!!bool")
		// On approve a run acts only once a person approves: one that
		// timed out waiting must not act anyway.
		for i := 0; i+1 < len(a.Content); i += 2 {
			if a.Content[i].Value == "onTimeout" && a.Content[i+1].Value == ApprovalTimeoutGoOn {
				deleteKey(a, "onTimeout")
				break
			}
		}
	case RungEnforce:
		// The whole run-level approval goes: its timeout and onTimeout
		// mean nothing (and are refused) without required: true.
		deleteKey(safety, "approval")
	}
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// mapping returns the mapping under key in m, or nil.
func mapping(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key && m.Content[i+1].Kind == yaml.MappingNode {
			return m.Content[i+1]
		}
	}
	return nil
}

func ensureMapping(m *yaml.Node, key string) *yaml.Node {
	if n := mapping(m, key); n != nil {
		return n
	}
	deleteKey(m, key) // a null or scalar there is replaced
	n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key}, n)
	return n
}

func setScalar(m *yaml.Node, key, value, tag string) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			v := m.Content[i+1]
			v.Kind, v.Tag, v.Value, v.Content, v.Style = yaml.ScalarNode, tag, value, nil, 0
			return
		}
	}
	m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key},
		&yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: value})
}

func deleteKey(m *yaml.Node, key string) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content = append(m.Content[:i], m.Content[i+2:]...)
			return
		}
	}
}
