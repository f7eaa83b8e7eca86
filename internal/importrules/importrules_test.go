package importrules

import (
	"bufio"
	"bytes"
	"fmt"
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// How a banned entry matches import paths.
const (
	matchTree   = iota // the package and its subpackages
	matchPrefix        // any path starting with the string
	matchExact         // that package only
)

// banned is one import that a deterministic package must not have.
type banned struct {
	path  string
	match int
	why   string
}

func (b banned) matches(importPath string) bool {
	switch b.match {
	case matchPrefix:
		return strings.HasPrefix(importPath, b.path)
	case matchExact:
		return importPath == b.path
	}
	return importPath == b.path || strings.HasPrefix(importPath, b.path+"/")
}

// ioImports is what workflows/, runbooks/, internal/domain and
// activities/step must not
// import: clients of the outside world, whose calls are neither
// deterministic nor replayable. "net" is the package net itself: pure
// parsers such as net/url and net/netip stay allowed.
var ioImports = []banned{
	{path: "github.com/nats-io/", match: matchPrefix, why: "NATS"},
	{path: "github.com/hashicorp/vault", match: matchPrefix, why: "Vault"}, // also vault-client-go
	{path: "k8s.io/", match: matchPrefix, why: "Kubernetes"},
	{path: "net", match: matchExact, why: "the network"},
	{path: "net/http", why: "HTTP"},
	{path: "net/rpc", why: "RPC over the network"},
	{path: "net/smtp", why: "SMTP"},
	{path: "go.temporal.io/sdk/client", why: "the Temporal client (workflows talk to Temporal through workflow.*)"},
	{path: "go.temporal.io/server", why: "the Temporal server"},
	{path: "os/exec", why: "processes"},
	{path: "os", match: matchExact, why: "the file system and the environment (internal/runbookload reads runbook files)"},
}

// clockFuncs read or wait on the wall clock; workflow code uses
// workflow.Now, workflow.Sleep and workflow.NewTimer instead.
var clockFuncs = map[string]bool{
	"Now": true, "Sleep": true, "Since": true, "Until": true,
	"After": true, "AfterFunc": true, "Tick": true, "NewTimer": true, "NewTicker": true,
}

// mapIterFuncs return iterators in Go's randomized map order.
var mapIterFuncs = map[string]bool{"Keys": true, "Values": true, "All": true}

// rules says what is checked in one directory.
type rules struct {
	stdlibOnly    bool // every import is from the standard library
	deterministic bool // no wall clock, no go statements, no select
	noMapRange    bool // no range over a map (needs type information)
}

// packages lists the directories (relative to the module root) the rules
// apply to.
var packages = []struct {
	dir   string
	rules rules
}{
	{dir: "workflows", rules: rules{deterministic: true, noMapRange: true}},
	{dir: "runbooks", rules: rules{deterministic: true}},
	{dir: "internal/domain", rules: rules{stdlibOnly: true}},
	// The contract between workflows and activities: workflows import it,
	// so it holds types and names only.
	{dir: "activities/step", rules: rules{stdlibOnly: true}},
}

// check returns every violation in one file, as "file:line: message".
// info may be nil when r.noMapRange is false.
func check(fset *token.FileSet, f *ast.File, r rules, info *types.Info) []string {
	var out []string
	report := func(pos token.Pos, format string, args ...any) {
		p := fset.Position(pos)
		out = append(out, fmt.Sprintf("%s:%d: %s", p.Filename, p.Line, fmt.Sprintf(format, args...)))
	}

	timeName, mapsName := "", ""
	for _, spec := range f.Imports {
		path, err := strconv.Unquote(spec.Path.Value)
		if err != nil {
			report(spec.Pos(), "unreadable import %s", spec.Path.Value)
			continue
		}
		for _, b := range ioImports {
			if b.matches(path) {
				report(spec.Pos(), "imports %q (%s)", path, b.why)
				break
			}
		}
		if first, _, _ := strings.Cut(path, "/"); r.stdlibOnly && strings.Contains(first, ".") {
			report(spec.Pos(), "imports %q: this package may import only the standard library", path)
		}
		local := ""
		if spec.Name != nil {
			local = spec.Name.Name
		}
		switch path {
		case "time":
			timeName = cmpOr(local, "time")
		case "maps":
			mapsName = cmpOr(local, "maps")
		}
		if r.deterministic && local == "." && (path == "time" || path == "maps") {
			report(spec.Pos(), "dot-imports %q, which hides wall-clock or map-order calls", path)
		}
	}

	// isPkgCall reports whether e is pkg.Name for a Name in names, where
	// pkg is the file's local name of an imported package.
	isPkgCall := func(e ast.Expr, pkg string, names map[string]bool) (string, bool) {
		sel, ok := e.(*ast.SelectorExpr)
		if !ok || pkg == "" || pkg == "_" || pkg == "." {
			return "", false
		}
		id, ok := sel.X.(*ast.Ident)
		// id.Obj is nil for package names: a local variable called "time"
		// is not the time package.
		if !ok || id.Name != pkg || id.Obj != nil || !names[sel.Sel.Name] {
			return "", false
		}
		return sel.Sel.Name, true
	}

	ast.Inspect(f, func(n ast.Node) bool {
		switch x := n.(type) {
		case *ast.GoStmt:
			if r.deterministic {
				report(x.Pos(), "go statement: use workflow.Go")
			}
		case *ast.SelectStmt:
			if r.deterministic {
				report(x.Pos(), "select statement: use workflow.NewSelector")
			}
		case *ast.SelectorExpr:
			if name, ok := isPkgCall(x, timeName, clockFuncs); ok && r.deterministic {
				report(x.Pos(), "time.%s reads the wall clock: use workflow.Now, workflow.Sleep or workflow.NewTimer", name)
			}
		case *ast.RangeStmt:
			if !r.noMapRange {
				break
			}
			if call, ok := x.X.(*ast.CallExpr); ok {
				if name, ok := isPkgCall(call.Fun, mapsName, mapIterFuncs); ok {
					report(x.Pos(), "range over maps.%s: map order is random; sort the keys", name)
				}
			}
			if info == nil {
				break
			}
			if tv, ok := info.Types[x.X]; ok && tv.Type != nil {
				if _, isMap := tv.Type.Underlying().(*types.Map); isMap {
					report(x.Pos(), "range over a map (%s): map order is random; sort the keys (workflow.DeterministicKeys)", tv.Type)
				}
			}
		}
		return true
	})
	return out
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// moduleRoot walks up from the test's directory to the go.mod of Salve.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	require.NoError(t, err)
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil {
			require.Contains(t, string(data), "module github.com/salve-sre/salve\n", "found %s/go.mod of another module", dir)
			return dir
		}
		parent := filepath.Dir(dir)
		require.NotEqual(t, dir, parent, "no go.mod above the test directory")
		dir = parent
	}
}

// parseDir parses every non-test .go file of dir.
func parseDir(t *testing.T, fset *token.FileSet, dir string) []*ast.File {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var files []*ast.File
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, parser.ParseComments)
		require.NoError(t, err)
		files = append(files, f)
	}
	require.NotEmpty(t, files, "%s has no Go files: was it moved? Update the list in this test.", dir)
	return files
}

// exportData maps the import paths of pattern's package and all its
// dependencies to their compiled export data, which `go list -export`
// produces (from the build cache when warm).
func exportData(t *testing.T, root string, patterns ...string) map[string]string {
	t.Helper()
	args := append([]string{"list", "-export", "-deps", "-f", "{{.ImportPath}}\t{{.Export}}"}, patterns...)
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "go %s: %s", strings.Join(args, " "), stderr.String())
	exports := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		path, file, ok := strings.Cut(sc.Text(), "\t")
		if ok && file != "" {
			exports[path] = file
		}
	}
	require.NoError(t, sc.Err())
	return exports
}

// typeCheck type-checks one package's files for the map-range rule.
func typeCheck(t *testing.T, fset *token.FileSet, importPath string, files []*ast.File, exports map[string]string) *types.Info {
	t.Helper()
	conf := types.Config{Importer: importer.ForCompiler(fset, "gc", func(path string) (io.ReadCloser, error) {
		file, ok := exports[path]
		if !ok {
			return nil, fmt.Errorf("no export data for %q", path)
		}
		return os.Open(file)
	})}
	info := &types.Info{Types: map[ast.Expr]types.TypeAndValue{}}
	_, err := conf.Check(importPath, fset, files, info)
	require.NoError(t, err, "type-check %s", importPath)
	require.NotEmpty(t, info.Types)
	return info
}

// TestDeterministicPackages is the import-rule test of DESIGN §5: workflow
// and runbook code is replayed by Temporal and must not reach the outside
// world, read the clock, start goroutines, select, or depend on map order;
// internal/domain is the stdlib-only vocabulary at the bottom.
func TestDeterministicPackages(t *testing.T) {
	root := moduleRoot(t)
	for _, pkg := range packages {
		t.Run(pkg.dir, func(t *testing.T) {
			fset := token.NewFileSet()
			files := parseDir(t, fset, filepath.Join(root, filepath.FromSlash(pkg.dir)))
			var info *types.Info
			if pkg.rules.noMapRange {
				info = typeCheck(t, fset, "github.com/salve-sre/salve/"+pkg.dir, files, exportData(t, root, "./"+pkg.dir))
			}
			var violations []string
			for _, f := range files {
				violations = append(violations, check(fset, f, pkg.rules, info)...)
			}
			sort.Strings(violations)
			require.Empty(t, violations, "%s breaks the determinism rules (CONVENTIONS: Workflows stay deterministic):\n%s", pkg.dir, strings.Join(violations, "\n"))
		})
	}
}

// TestCheckerFindsViolations keeps the checker honest: each source below
// breaks (or keeps) one rule, and the checker must say so.
func TestCheckerFindsViolations(t *testing.T) {
	workflowRules := rules{deterministic: true, noMapRange: true}
	domainRules := rules{stdlibOnly: true}
	tests := []struct {
		name  string
		rules rules
		src   string
		want  []string // substrings, one per expected violation, in order
	}{
		{
			name:  "time.Now",
			rules: workflowRules,
			src:   "import \"time\"\nfunc f() { _ = time.Now() }",
			want:  []string{"time.Now reads the wall clock"},
		},
		{
			name:  "aliased time.Sleep",
			rules: workflowRules,
			src:   "import clock \"time\"\nfunc f() { clock.Sleep(clock.Second) }",
			want:  []string{"time.Sleep reads the wall clock"},
		},
		{
			name:  "time.Now as a value",
			rules: workflowRules,
			src:   "import \"time\"\nvar now = time.Now",
			want:  []string{"time.Now reads the wall clock"},
		},
		{
			name:  "durations and a local variable named time are fine",
			rules: workflowRules,
			src:   "import \"time\"\nconst d = 5 * time.Second\nfunc f() { time := struct{ Now int }{}; _ = time.Now }",
		},
		{
			name:  "go statement",
			rules: workflowRules,
			src:   "func f() { go f() }",
			want:  []string{"go statement"},
		},
		{
			name:  "select statement",
			rules: workflowRules,
			src:   "func f(c chan int) { select { case <-c: } }",
			want:  []string{"select statement"},
		},
		{
			name:  "range over a map",
			rules: workflowRules,
			src:   "type S struct{ m map[string]bool }\nfunc f(s S) { for k := range s.m { _ = k } }",
			want:  []string{"range over a map (map[string]bool)"},
		},
		{
			name:  "range over a named map type",
			rules: workflowRules,
			src:   "type Labels map[string]string\nfunc f(l Labels) { for range l {} }",
			want:  []string{"range over a map"},
		},
		{
			name:  "range over maps.Keys",
			rules: workflowRules,
			src:   "import \"maps\"\nfunc f(m map[string]int) { for k := range maps.Keys(m) { _ = k } }",
			want:  []string{"range over maps.Keys"},
		},
		{
			name:  "range over slices, strings and ints is fine",
			rules: workflowRules,
			src:   "func f(s []int, str string) { for range s {}; for range str {}; for range 3 {} }",
		},
		{
			name:  "map ranges are allowed where the rule is off",
			rules: rules{deterministic: true},
			src:   "func f(m map[string]int) { for k := range m { _ = k } }",
		},
		{
			name:  "banned imports",
			rules: workflowRules,
			src: `import (
	_ "github.com/nats-io/nats.go"
	_ "github.com/hashicorp/vault/api"
	_ "k8s.io/client-go/kubernetes"
	_ "net/http"
	_ "net/http/httptest"
	_ "go.temporal.io/sdk/client"
	_ "go.temporal.io/server/temporal"
	_ "os/exec"
	_ "net"
)`,
			want: []string{`"github.com/nats-io/nats.go" (NATS)`, `"github.com/hashicorp/vault/api" (Vault)`, `"k8s.io/client-go/kubernetes" (Kubernetes)`, `"net/http" (HTTP)`, `"net/http/httptest" (HTTP)`, `"go.temporal.io/sdk/client"`, `"go.temporal.io/server/temporal"`, `"os/exec" (processes)`, `"net" (the network)`},
		},
		{
			name:  "allowed imports",
			rules: workflowRules,
			src: `import (
	_ "go.temporal.io/sdk/workflow"
	_ "go.temporal.io/sdk/temporal"
	_ "net/url"
	_ "github.com/salve-sre/salve/runbooks"
	_ "network.example/lib"
)`,
		},
		{
			name:  "domain imports only the standard library",
			rules: domainRules,
			src: `import (
	_ "strings"
	_ "encoding/json"
	_ "github.com/salve-sre/salve/runbooks"
	_ "golang.org/x/exp/maps"
)`,
			want: []string{`"github.com/salve-sre/salve/runbooks": this package may import only the standard library`, `"golang.org/x/exp/maps": this package may import only the standard library`},
		},
		{
			name:  "domain may use the clock",
			rules: domainRules,
			src:   "import \"time\"\nfunc f() time.Time { return time.Now() }",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fset := token.NewFileSet()
			f, err := parser.ParseFile(fset, "inline.go", "package p\n"+tt.src+"\n", 0)
			require.NoError(t, err)
			var info *types.Info
			if tt.rules.noMapRange {
				// Imports need not resolve for these snippets: the map
				// types involved are declared in the snippet itself.
				info = &types.Info{Types: map[ast.Expr]types.TypeAndValue{}}
				conf := types.Config{Importer: importer.ForCompiler(fset, "gc", func(path string) (io.ReadCloser, error) {
					return nil, fmt.Errorf("not resolved in this test: %q", path)
				}), Error: func(error) {}}
				_, _ = conf.Check("p", fset, []*ast.File{f}, info)
			}
			got := check(fset, f, tt.rules, info)
			require.Len(t, got, len(tt.want), "violations: %q", got)
			for i, w := range tt.want {
				require.Contains(t, got[i], w)
				require.True(t, strings.HasPrefix(got[i], "inline.go:"), got[i])
			}
		})
	}
}
