package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"unicode/utf8"
)

// Store columns hold text that PostgreSQL and SQLite both keep: valid
// UTF-8 without NUL (PostgreSQL refuses NUL in text, SQLSTATE 22021).
// The webhook refuses both at the door, but events also come from the
// API, runbooks and older versions, and one unstorable event must never
// stop the recorder. The record of truth is event_json, whose JSON
// escapes every byte; the columns only index it.

// columnText is s as a column can hold it: invalid bytes become U+FFFD
// as in the event's JSON, and so do NULs. Only for columns used to
// filter, where a rare collision costs nothing.
func columnText(s string) string {
	if storable(s) {
		return s
	}
	return strings.ReplaceAll(asJSON(s), "\x00", "\uFFFD")
}

// columnKey is s as a unique key column can hold it: s as in the event's
// JSON, or a SHA-256 of that when it holds a NUL, so two different keys
// never become one (which would drop the second as a duplicate).
func columnKey(s string) string {
	if storable(s) {
		return s
	}
	s = asJSON(s)
	if strings.IndexByte(s, 0) < 0 {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(sum[:])
}

func storable(s string) bool {
	return strings.IndexByte(s, 0) < 0 && utf8.ValidString(s)
}

// asJSON is s as encoding/json stores it: each invalid byte becomes
// U+FFFD. (strings.ToValidUTF8 would merge runs of them.)
func asJSON(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b.WriteString("\uFFFD")
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}
