package cli

import (
	"fmt"
	"io"
	"unicode/utf8"
)

// safeWriter escapes what a terminal would obey rather than show: C0
// control characters but newline and tab, DEL, and C1 controls (U+0080
// to U+009F, which some terminals read as ESC sequences). Alert labels,
// annotations and parameters are untrusted and reach the CLI's output;
// an ESC sequence in one must not move a cursor, retitle a window or hide
// a line. The escape is \uXXXX, which inside JSON means the same
// character, so JSON output stays valid and equal.
type safeWriter struct{ w io.Writer }

func (s safeWriter) Write(p []byte) (int, error) {
	clean := true
	for i := 0; i < len(p); {
		r, n := utf8.DecodeRune(p[i:])
		if unsafeRune(r, n) {
			clean = false
			break
		}
		i += n
	}
	if clean {
		return s.w.Write(p)
	}
	out := make([]byte, 0, len(p)+16)
	for i := 0; i < len(p); {
		r, n := utf8.DecodeRune(p[i:])
		if unsafeRune(r, n) {
			out = fmt.Appendf(out, `\u%04x`, r)
		} else {
			out = append(out, p[i:i+n]...)
		}
		i += n
	}
	if _, err := s.w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

func unsafeRune(r rune, n int) bool {
	if r == utf8.RuneError && n == 1 {
		return false // a stray byte is not a control; leave it
	}
	return (r < 0x20 && r != '\n' && r != '\t') || (r >= 0x7f && r <= 0x9f)
}
