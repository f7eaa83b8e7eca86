package domain

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
)

// WorkflowIDPrefix starts every Salve run's Temporal workflow ID.
const WorkflowIDPrefix = "salve/"

// MaxPlainKey is the longest incident key a workflow ID carries as it is;
// longer keys are shortened and hashed (see WorkflowID).
const MaxPlainKey = 200

// hashMark separates a shortened key from its hash in a workflow ID. A
// plain key never contains it, so a plain ID can never equal a hashed one.
const hashMark = '~'

// WorkflowID names the one run that may exist at a time for an incident of a
// runbook. Temporal's ID uniqueness is what makes repeats join instead of
// starting a second run.
//
// Incident keys come from alert labels, so they may hold anything: Unicode,
// control characters, spaces, 10,000 characters. Temporal refuses some of
// these, and a refused ID must never stop an incident from being handled.
// A key of at most MaxPlainKey printable ASCII characters (no space, '~',
// '?', '#', '%' or '\\', and no empty, "." or ".." segment between slashes,
// so the ID stays one path under /v1/runs/) is used as it is; any other
// key becomes a readable prefix plus '~' and a SHA-256 of the whole key:
// still one ID per key, always valid, at most ~150 bytes. The
// original key travels in the run's input and memo, which is what people
// see.
func WorkflowID(runbook, incidentKey string) string {
	if plainKey(incidentKey) {
		return WorkflowIDPrefix + runbook + "/" + incidentKey
	}
	sum := sha256.Sum256([]byte(incidentKey))
	return WorkflowIDPrefix + runbook + "/" + readable(incidentKey, 64) + string(hashMark) + hex.EncodeToString(sum[:16])
}

// shadowMark starts the key part of a shadow run's workflow ID. A plain
// key never contains '~' and a hashed one ends in '~' and hex, so no real
// run's ID starts its key part with it.
const shadowMark = "~shadow/"

// ShadowWorkflowID names the one shadow run of an incident of a runbook
// in shadow mode. It is never a real run's ID: a runbook promoted or
// demoted while a run of the incident goes on starts a run of its new
// kind instead of joining one of the other, and the safety state of a
// shadow run is never taken for a real run's. It keeps the prefix
// salve/<runbook>/, so queries by runbook find shadow runs too; its key
// part reads as hashed (HashedKey), so the incident key is read from the
// run, as for a hashed ID.
func ShadowWorkflowID(runbook, incidentKey string) string {
	real := WorkflowID(runbook, incidentKey)
	return WorkflowIDPrefix + runbook + "/" + shadowMark + strings.TrimPrefix(real, WorkflowIDPrefix+runbook+"/")
}

// IsShadowWorkflowID reports whether id names a shadow run
// (ShadowWorkflowID).
func IsShadowWorkflowID(id string) bool {
	rest, ok := strings.CutPrefix(id, WorkflowIDPrefix)
	if !ok {
		return false
	}
	_, key, ok := strings.Cut(rest, "/")
	return ok && strings.HasPrefix(key, shadowMark)
}

// HashedKey reports whether the key part of a workflow ID is a shortened,
// hashed form rather than the incident key itself.
func HashedKey(idKey string) bool { return strings.ContainsRune(idKey, hashMark) }

func plainKey(k string) bool {
	if len(k) > MaxPlainKey {
		return false
	}
	for i := 0; i < len(k); i++ {
		switch c := k[i]; {
		case c <= ' ' || c > '~' || c == hashMark:
			return false
		case c == '?' || c == '#' || c == '%' || c == '\\':
			return false // would end or change a URL path (/v1/runs/{id})
		}
	}
	if k == "" {
		return true // WorkflowID(runbook, "") is the prefix of its runs' IDs
	}
	// Segments an HTTP server cleans away ("a/../b", "a//b", "a/./b", a
	// trailing '/') would make the run unreachable by its ID's URL.
	for _, seg := range strings.Split(k, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
	}
	return true
}

// readable keeps up to n characters of k a person can recognise, with
// anything else as '_'.
func readable(k string, n int) string {
	var b strings.Builder
	for i := 0; i < len(k) && b.Len() < n; i++ {
		c := k[i]
		if c <= ' ' || c >= hashMark || c == '?' || c == '#' || c == '%' || c == '\\' || c == '/' {
			c = '_' // one path segment, nothing a URL would read
		}
		b.WriteByte(c)
	}
	return b.String()
}

// ParseWorkflowID splits a workflow ID made by WorkflowID. Runbook names are
// DNS labels (no slash), so the first slash after the prefix separates them;
// incident keys may contain slashes. For a hashed ID (HashedKey) the key
// part is not the incident key: read that from the run.
func ParseWorkflowID(id string) (runbook, incidentKey string, err error) {
	rest, ok := strings.CutPrefix(id, WorkflowIDPrefix)
	if !ok {
		return "", "", fmt.Errorf("workflow ID %q does not start with %q", id, WorkflowIDPrefix)
	}
	runbook, incidentKey, ok = strings.Cut(rest, "/")
	if !ok || runbook == "" || incidentKey == "" {
		return "", "", fmt.Errorf("workflow ID %q is not %s<runbook>/<incident key>", id, WorkflowIDPrefix)
	}
	return runbook, incidentKey, nil
}
