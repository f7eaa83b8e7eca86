package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/salve-sre/salve/activities"
	"github.com/salve-sre/salve/runbooks"
)

// errInvalidRunbooks makes Execute exit 1 after the problems were printed.
var errInvalidRunbooks = errors.New("invalid runbooks")

func newRunbook(stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "runbook",
		Short: "Author runbooks",
	}
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
