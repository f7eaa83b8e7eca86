package cli

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/salve-sre/salve/activities"
	"github.com/salve-sre/salve/internal/client"
	"github.com/salve-sre/salve/internal/runbookload"
	"github.com/salve-sre/salve/internal/runbooktest"
	"github.com/salve-sre/salve/runbooks"
	"github.com/salve-sre/salve/slos"
)

// errInvalidRunbooks makes Execute exit 1 after the problems were printed.
var errInvalidRunbooks = errors.New("invalid runbooks")

func newRunbook(stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "runbook",
		Short: "Author runbooks",
	}
	cmd.AddCommand(newRunbookList(stdout), newRunbookShow(stdout), newRunbookSchema(stdout), newRunbookTest(stdout, stderr), newRunbookKinds(stdout),
		newRunbookEvidence(stdout), newRunbookPromote(stdout))
	cmd.AddCommand(&cobra.Command{
		Use:   "validate [PATH...]",
		Short: "Check runbook files strictly; exit 1 on any problem (for pre-commit and CI)",
		Long: `Parses every runbook file given (files, or directories of *.yaml/*.yml;
default: ./runbooks) exactly as Salve loads them: unknown fields, unknown step
kinds, bad step parameters, bad templates and duplicate names are reported
as file:line: path: message, all of them, not only the first.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				args = []string{"runbooks"}
			}
			reg, err := activities.NewRegistry()
			if err != nil {
				return err
			}
			var (
				all      []*runbooks.Runbook
				problems []string
				sloNames = map[string]bool{}
			)
			for _, path := range args {
				files, err := runbookFiles(path)
				if err != nil {
					return err
				}
				for _, f := range files {
					data, err := os.ReadFile(f)
					if err != nil {
						return err
					}
					if slos.IsSLO(data) { // an SLO next to the runbooks
						if s, err := slos.Parse(f, data); err != nil {
							problems = append(problems, err.Error())
						} else {
							sloNames[s.Name()] = true
						}
						continue
					}
					rb, err := runbooks.Parse(f, data, reg)
					if err != nil {
						problems = append(problems, err.Error())
						continue
					}
					all = append(all, rb)
				}
			}
			if _, err := runbooks.NewSet(all...); err != nil {
				problems = append(problems, err.Error())
			}
			for _, rb := range all {
				if p := rb.Spec.SLO; p != nil && !sloNames[p.Name] {
					problems = append(problems, fmt.Sprintf("%s: spec.slo.name: no kind: SLO file named %q among the files given (put it next to the runbooks)", rb.Source, p.Name))
				}
			}
			for _, p := range problems {
				fmt.Fprintln(stderr, p)
			}
			if len(problems) > 0 {
				return errInvalidRunbooks
			}
			fmt.Fprintf(stdout, "%d runbook(s) valid\n", len(all))
			return nil
		},
	})
	return cmd
}

func runbookFiles(path string) ([]string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return []string{path}, nil
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if !e.IsDir() && (strings.HasSuffix(e.Name(), ".yaml") || strings.HasSuffix(e.Name(), ".yml")) {
			out = append(out, filepath.Join(path, e.Name()))
		}
	}
	return out, nil
}

// testFiles expands paths to runbook test files: files as given, and every
// *.test.yaml / *.test.yml under directories.
func testFiles(paths []string) ([]string, error) {
	var out []string
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			out = append(out, p)
			continue
		}
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.IsDir() && (strings.HasSuffix(path, ".test.yaml") || strings.HasSuffix(path, ".test.yml")) {
				out = append(out, path)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

func newRunbookTest(stdout, stderr io.Writer) *cobra.Command {
	var verbose bool
	cmd := &cobra.Command{
		Use:   "test [PATH...]",
		Short: "Run runbook unit tests (*.test.yaml) against the real workflow with faked steps",
		Long: `Runs runbook test files: given input alerts (inline or a recorded
Alertmanager payload) and launch params, with canned outputs or failures for
steps, each case checks which runbooks match, the incident key, the ordered
steps with their rendered params, approvals and the onFailure path. The real
Runbook workflow runs in Temporal's test environment with every step kind
replaced by a recording fake: nothing real is touched, and timers are skipped.

PATH is a test file or a directory searched for *.test.yaml (default:
./runbooks/tests). Exit 1 if any case fails; a failing case prints what
differs and the whole plan it got.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				args = []string{filepath.Join("runbooks", "tests")}
			}
			files, err := testFiles(args)
			if err != nil {
				return err
			}
			if len(files) == 0 {
				return fmt.Errorf("no *.test.yaml files in %s", strings.Join(args, ", "))
			}
			reg, err := activities.NewRegistry()
			if err != nil {
				return err
			}
			passed, failed := 0, 0
			for _, path := range files {
				f, err := runbooktest.Load(path)
				if err != nil {
					fmt.Fprintf(stderr, "FAIL %v\n", err)
					failed++
					continue
				}
				for _, res := range runbooktest.RunFile(f, reg) {
					if res.Passed() {
						passed++
						fmt.Fprintf(stdout, "ok   %s: %s\n", res.File, res.Case)
						if verbose {
							printPlan(stdout, res.Plan)
						}
						continue
					}
					failed++
					fmt.Fprintf(stdout, "FAIL %s: %s\n", res.File, res.Case)
					for _, f := range res.Failures {
						fmt.Fprintf(stdout, "       %s\n", f)
					}
					fmt.Fprintln(stdout, "     got:")
					printPlan(stdout, res.Plan)
				}
			}
			fmt.Fprintf(stdout, "%d passed, %d failed\n", passed, failed)
			if failed > 0 {
				return errInvalidRunbooks
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "print the plan of passing cases too")
	return cmd
}

func printPlan(w io.Writer, p runbooktest.Plan) {
	var buf strings.Builder
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	err := enc.Encode(p)
	b := []byte(buf.String())
	if err != nil {
		fmt.Fprintf(w, "       (plan not printable: %v)\n", err)
		return
	}
	for _, line := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		fmt.Fprintf(w, "       %s\n", line)
	}
}

// loadRunbookDir loads a runbook directory and fails on any problem, for
// the commands that show runbooks.
func loadRunbookDir(dir string) (*runbooks.Set, error) {
	reg, err := activities.NewRegistry()
	if err != nil {
		return nil, err
	}
	rbs, err := runbookload.LoadDir(dir, reg)
	if err != nil {
		return nil, fmt.Errorf("%w\n(fix these, or check them with: salve runbook validate %s)", err, dir)
	}
	return runbooks.NewSet(rbs...)
}

func newRunbookList(stdout io.Writer) *cobra.Command {
	var dir string
	r := &remoteRunbooks{}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the runbooks in a directory, or with --remote the ones the server runs",
		Long: `Lists the runbooks in --runbooks (default ./runbooks): name, mode, steps,
the manual toil each saves, owner and trigger.
` + runbookRemoteHelp + connectionHelp,
		Example: `  salve runbook list
  salve runbook list --remote
  salve runbook list --addr https://salve.internal:8443 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if r.active(cmd) {
				return r.list(cmd.Context(), stdout)
			}
			if err := localEnvOverrides(cmd, "runbooks"); err != nil {
				return err
			}
			set, err := loadRunbookDir(dir)
			if err != nil {
				return err
			}
			if r.output.json() {
				list := []client.RunbookInfo{}
				for _, rb := range set.All() {
					list = append(list, runbookInfo(rb))
				}
				return printJSON(stdout, map[string]any{"runbooks": list})
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tMODE\tSTEPS\tTOIL\tOWNER\tTRIGGER")
			for _, rb := range set.All() {
				mode := rb.Spec.Safety.Mode
				if mode == "" {
					mode = runbooks.ModeEnforce
				}
				trigger := strings.Join(rb.Spec.Trigger.Matchers, ", ")
				if trigger == "" {
					trigger = "(manual only)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%gm\t%s\t%s\n", rb.Name(), mode, len(rb.Spec.Steps), rb.Spec.Toil.ManualMinutes, rb.Metadata.Owner, trigger)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&dir, "runbooks", "runbooks", "directory of runbook YAML files")
	r.flags(cmd)
	return cmd
}

func newRunbookShow(stdout io.Writer) *cobra.Command {
	var dir string
	r := &remoteRunbooks{}
	cmd := &cobra.Command{
		Use:   "show NAME",
		Short: "Print a runbook as Salve runs it, with every default filled in",
		Long: `Prints runbook NAME from --runbooks (default ./runbooks) as YAML, as Salve
runs it, with every default filled in; -o json prints it as JSON.

With --remote it prints what the server knows of it instead: description,
trigger, params, steps, its recent runs and their success rate.
` + runbookRemoteHelp + connectionHelp,
		Example: `  salve runbook show restart-crashlooping
  salve runbook show restart-crashlooping --remote`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if r.active(cmd) {
				return r.show(cmd.Context(), stdout, args[0])
			}
			if err := localEnvOverrides(cmd, "runbooks"); err != nil {
				return err
			}
			set, err := loadRunbookDir(dir)
			if err != nil {
				return err
			}
			rb, ok := set.Get(args[0])
			if !ok {
				names := make([]string, 0, len(set.All()))
				for _, r := range set.All() {
					names = append(names, r.Name())
				}
				return fmt.Errorf("no runbook %q in %s (have: %s)", args[0], dir, strings.Join(names, ", "))
			}
			if r.output.json() {
				return printJSON(stdout, runbooks.WithDefaults(rb))
			}
			out, err := runbooks.Show(rb)
			if err != nil {
				return err
			}
			_, err = stdout.Write(out)
			return err
		},
	}
	cmd.Flags().StringVar(&dir, "runbooks", "runbooks", "directory of runbook YAML files")
	r.flags(cmd)
	return cmd
}

func newRunbookSchema(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "schema",
		Short: "Print the JSON Schema of runbook files (for editors: yaml-language-server)",
		Long: `Prints a JSON Schema generated from the same definitions the validator uses,
including each step kind's parameters. Point your editor at it, e.g. with a
first line in each runbook:

  # yaml-language-server: $schema=../runbooks/schema.json

The repository keeps a copy in runbooks/schema.json, checked by the tests.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			reg, err := activities.NewRegistry()
			if err != nil {
				return err
			}
			b, err := runbooks.JSONSchema(reg)
			if err != nil {
				return err
			}
			_, err = stdout.Write(b)
			return err
		},
	}
}
