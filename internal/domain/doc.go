// Package domain holds Salve's shared vocabulary: alert events, incident and
// run identifiers, and audit events. It imports only the standard library so
// that every other package, including deterministic workflow code, can use it.
package domain
