package cli

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

// What an alert carries reaches the CLI's output; a terminal must show
// its control characters, never obey them. JSON stays valid and equal.
func TestSafeWriterEscapesWhatATerminalObeys(t *testing.T) {
	var b bytes.Buffer
	w := safeWriter{&b}
	in := "name\x1b]0;pwned\x07 red\x1b[31m\r\u009b2J del\x7f ok: é 🔥\ttab\n"
	n, err := w.Write([]byte(in))
	require.NoError(t, err)
	require.Equal(t, len(in), n)
	require.Equal(t, `name\u001b]0;pwned\u0007 red\u001b[31m\u000d\u009b2J del\u007f ok: é 🔥`+"\ttab\n", b.String())

	b.Reset()
	v := map[string]string{"summary": "evil\u009b31m \u007f"}
	raw, err := json.Marshal(v) // encoding/json leaves C1 and DEL raw
	require.NoError(t, err)
	_, err = w.Write(raw)
	require.NoError(t, err)
	var back map[string]string
	require.NoError(t, json.Unmarshal(b.Bytes(), &back))
	require.Equal(t, v, back)
	require.NotContains(t, b.String(), "\u009b")
}
