package client

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// readAll parses a whole stream.
func readAll(t testing.TB, in string) ([]sseEvent, *sseParser, error) {
	t.Helper()
	p := newSSEParser(strings.NewReader(in), "")
	var out []sseEvent
	for {
		ev, err := p.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = nil
			}
			return out, p, err
		}
		out = append(out, ev)
	}
}

func TestSSEParser(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want []sseEvent
	}{
		{
			name: "one event",
			in:   "id: 1\nevent: step.started\ndata: {\"a\":1}\n\n",
			want: []sseEvent{{ID: "1", Name: "step.started", Data: `{"a":1}`}},
		},
		{
			name: "multi-line data joined with newlines",
			in:   "data: a\ndata:b\ndata:  c\n\n",
			want: []sseEvent{{Name: "message", Data: "a\nb\n c"}},
		},
		{
			name: "empty data lines count",
			in:   "data\ndata:\n\ndata: x\ndata:\n\n",
			want: []sseEvent{{Name: "message", Data: "\n"}, {Name: "message", Data: "x\n"}},
		},
		{
			name: "comments are keepalives",
			in:   ": keepalive\n\n:\nid: 7\n: more\ndata: x\n\n",
			want: []sseEvent{{ID: "7", Name: "message", Data: "x"}},
		},
		{
			name: "CRLF and CR line endings",
			in:   "id: 1\r\nevent: a\r\ndata: x\r\n\r\nid: 2\revent: b\rdata: y\r\rdata: z\n\r\n",
			want: []sseEvent{{ID: "1", Name: "a", Data: "x"}, {ID: "2", Name: "b", Data: "y"}, {ID: "2", Name: "message", Data: "z"}},
		},
		{
			name: "id persists; event name does not",
			in:   "id: 5\nevent: a\ndata: 1\n\ndata: 2\n\nid\ndata: 3\n\n",
			want: []sseEvent{{ID: "5", Name: "a", Data: "1"}, {ID: "5", Name: "message", Data: "2"}, {ID: "", Name: "message", Data: "3"}},
		},
		{
			name: "an id with NUL is ignored",
			in:   "id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n",
			want: []sseEvent{{ID: "1", Name: "message", Data: "a"}, {ID: "1", Name: "message", Data: "b"}},
		},
		{
			name: "no data, no event",
			in:   "event: lonely\nid: 9\n\ndata: x\n\n",
			want: []sseEvent{{ID: "9", Name: "message", Data: "x"}},
		},
		{
			name: "unknown fields and colons in values",
			in:   "foo: bar\ndata: a: b: c\nevent:run.started\n\n",
			want: []sseEvent{{Name: "run.started", Data: "a: b: c"}},
		},
		{
			name: "an unfinished event at the end is dropped",
			in:   "data: done\n\ndata: half",
			want: []sseEvent{{Name: "message", Data: "done"}},
		},
		{
			name: "an unterminated event at the end is dropped",
			in:   "data: done\n\ndata: half\n",
			want: []sseEvent{{Name: "message", Data: "done"}},
		},
		{
			name: "leading BOM",
			in:   "\xEF\xBB\xBFdata: x\n\n",
			want: []sseEvent{{Name: "message", Data: "x"}},
		},
		{
			name: "empty stream",
			in:   "",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, _, err := readAll(t, tc.in)
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestSSERetry(t *testing.T) {
	_, p, err := readAll(t, "retry: 1500\ndata: x\n\nretry: soon\n\n")
	require.NoError(t, err)
	require.Equal(t, 1500*time.Millisecond, p.retry)
}

func TestSSELastIDCarriesOver(t *testing.T) {
	p := newSSEParser(strings.NewReader("data: x\n\n"), "41")
	ev, err := p.Next()
	require.NoError(t, err)
	require.Equal(t, "41", ev.ID)
}

func TestSSETooLarge(t *testing.T) {
	big := strings.Repeat("x", maxSSELine+1)
	_, _, err := readAll(t, "data: "+big+"\n\n")
	require.ErrorIs(t, err, errSSETooLarge)
}

// writeSSE writes an event in the canonical form the parser reads back.
func writeSSE(w io.Writer, ev sseEvent) {
	fmt.Fprintf(w, "id: %s\nevent: %s\n", ev.ID, ev.Name)
	for _, l := range strings.Split(ev.Data, "\n") {
		fmt.Fprintf(w, "data: %s\n", l)
	}
	fmt.Fprint(w, "\n")
}

// FuzzSSE: the parser never panics, keeps its invariants (no line breaks
// in names, ids or data lines), and what it reads, written back in
// canonical form, reads back the same.
func FuzzSSE(f *testing.F) {
	for _, s := range []string{
		"id: 1\nevent: step.started\ndata: {\"a\":1}\n\n",
		"data: a\ndata:b\n\n: keepalive\n\n",
		"id: 1\r\nevent: a\r\ndata: x\r\n\r\nid: 2\revent: b\rdata: y\r\r",
		"\xEF\xBB\xBFdata: x\n\nretry: 10\nid\x00: 3\n\n",
		"event: end\ndata: {}\n\ndata: half",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, _, err := readAll(t, in)
		require.NoError(t, err)
		var b strings.Builder
		for _, ev := range got {
			require.NotEmpty(t, ev.Name)
			require.False(t, strings.ContainsAny(ev.Name+ev.ID, "\r\n"), "name or id with a line break: %q", ev)
			require.NotContains(t, ev.Data, "\r")
			require.NotContains(t, ev.ID, "\x00")
			writeSSE(&b, ev)
		}
		again, _, err := readAll(t, b.String())
		require.NoError(t, err)
		require.Equal(t, got, again)
	})
}
