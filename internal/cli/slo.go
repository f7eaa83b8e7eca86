package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/salve-sre/salve/slos"
)

var errInvalidSLOs = errors.New("invalid SLOs")

func newSLO(stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "slo",
		Short: "SLOs as code: validate kind: SLO files and generate their Prometheus rules",
		Long: `SLO files (apiVersion: openslo/v1alpha, kind: SLO: one ratio objective over
Prometheus, a 30- or 28-day window) live next to the runbooks. A runbook names
one in spec.slo to act by how fast its error budget burns (docs/slos.md).`,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "validate [PATH...]",
		Short: "Check SLO files strictly; exit 1 on any problem",
		Long: `Parses every kind: SLO file given (files, or directories of *.yaml/*.yml,
where runbooks are skipped; default: ./runbooks) and reports every problem as
file:line: path: message.`,
		Example: `  salve slo validate runbooks
  salve slo validate slos/checkout-availability.yaml`,
		RunE: func(cmd *cobra.Command, args []string) error {
			all, err := readSLOs(args, stderr)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%d SLO(s) valid\n", len(all))
			return nil
		},
	})
	var out string
	rules := &cobra.Command{
		Use:   "rules [PATH...]",
		Short: "Write the Prometheus recording and burn-rate alerting rules of SLO files",
		Long: `Generates the Prometheus rules of every SLO given (Sloth's rules, rule for
rule, so Sloth's dashboards read them):
the SLI's error ratio recorded over each alert window, the error budget and
burn-rate series, and the SRE workbook's multi-window, multi-burn-rate alerts
SLOErrorBudgetBurn with sloth_severity="page" (2 % of the budget in 1 h, or
5 % in 6 h) and "ticket" (10 % in 1 d, or in 3 d), labelled salve_slo=<name>.
The file passes promtool check rules; load it into Prometheus and route the
alerts to Salve.`,
		Example: `  salve slo rules runbooks -o /etc/prometheus/rules/slos.yaml
  salve slo rules slos/checkout-availability.yaml | promtool check rules /dev/stdin`,
		RunE: func(cmd *cobra.Command, args []string) error {
			all, err := readSLOs(args, stderr)
			if err != nil {
				return err
			}
			if len(all) == 0 {
				return usageError{errors.New("no kind: SLO file among the paths given")}
			}
			var buf bytes.Buffer
			if err := slos.Rules(cmd.Context(), all, &buf); err != nil {
				return err
			}
			if out == "" || out == "-" {
				_, err := stdout.Write(buf.Bytes())
				return err
			}
			return writeFileAtomic(out, buf.Bytes())
		},
	}
	rules.Flags().StringVarP(&out, "output", "o", "", "write the rules to this file (default: stdout)")
	cmd.AddCommand(rules)
	return cmd
}

// readSLOs parses the SLO files among paths (default ./runbooks); every
// problem goes to stderr and makes it fail.
func readSLOs(paths []string, stderr io.Writer) ([]*slos.SLO, error) {
	if len(paths) == 0 {
		paths = []string{"runbooks"}
	}
	var (
		all      []*slos.SLO
		problems int
		seen     = map[string]string{}
	)
	for _, path := range paths {
		files, err := runbookFiles(path)
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				return nil, err
			}
			if !slos.IsSLO(data) {
				continue
			}
			s, err := slos.Parse(f, data)
			if err != nil {
				fmt.Fprintln(stderr, err)
				problems++
				continue
			}
			if first, dup := seen[s.Name()]; dup {
				fmt.Fprintf(stderr, "%s: metadata.name: %q is already the name of %s\n", f, s.Name(), first)
				problems++
				continue
			}
			seen[s.Name()] = f
			all = append(all, s)
		}
	}
	if problems > 0 {
		return nil, errInvalidSLOs
	}
	return all, nil
}

// writeFileAtomic writes data to path through a temporary file in the
// same directory, so a reader never sees half a rule file.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".salve-rules-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
