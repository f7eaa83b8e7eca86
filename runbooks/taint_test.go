package runbooks_test

import (
	"net/url"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/runbooks"
)

// FuzzRenderKeepsStructure renders attacker-chosen label values through the
// escaping functions: whatever the value, a URL keeps its host and its
// path segments, a query parameter keeps its place, and a PromQL string
// literal holds exactly the value.
func FuzzRenderKeepsStructure(f *testing.F) {
	for _, s := range []string{"", "cart", "evil/x?", "a b", `x"}[15m])) or vector(1) #`, "../../admin", "%2F", "@attacker.example", "\\\"", "\x00", "日本", "#frag", "?a=b&c=d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		data := runbooks.TemplateData{Labels: map[string]string{"v": v}}
		u, err := runbooks.RenderString(`http://host.internal/x/{{ .Labels.v | pathEscape }}/y?q={{ .Labels.v | queryEscape }}&k=1`, data)
		require.NoError(t, err)
		parsed, err := url.Parse(u)
		require.NoError(t, err, "rendered %q", u)
		require.Equal(t, "host.internal", parsed.Host)
		require.Equal(t, "http", parsed.Scheme)
		require.Empty(t, parsed.Fragment)
		segs := strings.Split(parsed.EscapedPath(), "/")
		require.Len(t, segs, 4, "path %q", parsed.EscapedPath())
		got, err := url.PathUnescape(segs[2])
		require.NoError(t, err)
		require.Equal(t, v, got)
		require.Equal(t, "y", segs[3])
		q := parsed.Query()
		require.Equal(t, []string{v}, q["q"])
		require.Equal(t, []string{"1"}, q["k"])

		if !utf8.ValidString(v) {
			return // PromQL strings are UTF-8; the quoting still escapes
		}
		p, err := runbooks.RenderString(`up{a={{ .Labels.v | promQuote }}} > 0`, data)
		require.NoError(t, err)
		require.True(t, strings.HasPrefix(p, "up{a=") && strings.HasSuffix(p, "} > 0"), p)
		lit := strings.TrimSuffix(strings.TrimPrefix(p, "up{a="), "} > 0")
		unq, err := strconv.Unquote(lit)
		require.NoError(t, err, "literal %s", lit)
		require.Equal(t, v, unq, "the value stays one string literal")
	})
}

func TestNameParamTypes(t *testing.T) {
	label := runbooks.Param{Type: runbooks.ParamDNSLabel}
	name := runbooks.Param{Type: runbooks.ParamK8sName}
	for _, ok := range []string{"shop", "a-1", strings.Repeat("a", 63)} {
		require.NoError(t, label.Check(ok), ok)
		require.NoError(t, name.Check(ok), ok)
	}
	require.NoError(t, name.Check("cart.v2"))
	require.Error(t, label.Check("cart.v2"), "a namespace has no dots")
	for _, bad := range []string{"", "Shop", "-a", "a-", "a_b", "a/b", `x"}`, strings.Repeat("a", 64), "a b"} {
		require.Error(t, label.Check(bad), bad)
	}
	for _, bad := range []string{"", "Cart", "a..b", ".a", "a/b", "a?b", strings.Repeat("a", 254)} {
		require.Error(t, name.Check(bad), bad)
	}
}
