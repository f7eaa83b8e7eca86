package runbooks_test

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/runbooks"
)

// TestBadFixtures parses every file in testdata/bad. Each names the
// problems it must produce in "# want: ..." lines; every want must appear
// in a problem located at a line of the file, and the file must produce no
// problem that is not wanted, so a new, unexpected message is noticed.
func TestBadFixtures(t *testing.T) {
	files, err := filepath.Glob("testdata/bad/*.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	reg := registry(t)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			require.NoError(t, err)
			var wants []string
			sc := bufio.NewScanner(bytes.NewReader(data))
			for sc.Scan() {
				if w, ok := strings.CutPrefix(sc.Text(), "# want: "); ok {
					wants = append(wants, w)
				}
			}
			require.NotEmpty(t, wants, "a bad fixture needs at least one '# want:' line")
			rb, err := runbooks.Parse(f, data, reg)
			require.Nil(t, rb)
			require.ErrorIs(t, err, runbooks.ErrInvalid)
			got := problems(t, err)
			matched := make([]bool, len(got))
			for _, w := range wants {
				found := false
				for i, p := range got {
					if strings.Contains(p.String(), w) {
						found, matched[i] = true, true
					}
				}
				require.True(t, found, "want a problem containing %q\ngot:\n%s", w, err)
			}
			for i, p := range got {
				require.True(t, matched[i], "unexpected problem: %s", p)
				require.True(t, strings.HasPrefix(p.String(), f+":"), "problem must start with the file name: %s", p)
				if !strings.Contains(p.Msg, "empty file") {
					require.Positive(t, p.Line, "problem without a line: %s", p)
				}
			}
		})
	}
}

// TestGoodFixtures: every file in testdata/good is valid.
func TestGoodFixtures(t *testing.T) {
	files, err := filepath.Glob("testdata/good/*.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		_, err = runbooks.Parse(f, data, registry(t))
		require.NoError(t, err, f)
	}
}
