package cli

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/spf13/cobra"
)

func newIncident(stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "incident",
		Short: "Look at incidents",
	}
	var server, token, format string
	tl := &cobra.Command{
		Use:   "timeline INCIDENT_KEY|RUN_ID",
		Short: "Print an incident's timeline (alerts, trigger decisions, runs, steps) for a postmortem",
		Long: `Merges the audit records of an incident — when its alerts fired and resolved,
which runbooks matched, every run and step with its outcome — into one
chronological timeline. Give the incident key or a run's workflow ID
(salve/<runbook>/<incident key>).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "markdown" && format != "json" {
				return fmt.Errorf("--format %q: want markdown or json", format)
			}
			u := strings.TrimRight(server, "/") + "/v1/timelines/" + args[0] + "?format=" + url.QueryEscape(format)
			req, err := http.NewRequestWithContext(cmd.Context(), http.MethodGet, u, nil)
			if err != nil {
				return err
			}
			if err := authorize(req, server, token); err != nil {
				return err
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return fmt.Errorf("reach Salve at %s (is it running? set --server): %w", server, err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				return err
			}
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("salve answered %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
			}
			_, err = stdout.Write(body)
			return err
		},
	}
	tl.Flags().StringVar(&server, "server", "http://127.0.0.1:8080", "Salve API base URL")
	tl.Flags().StringVar(&token, "token", "", "API token with role viewer (default $SALVE_TOKEN, or salve dev's .salve/admin-token on this machine)")
	tl.Flags().StringVar(&format, "format", "markdown", "markdown or json")
	cmd.AddCommand(tl)
	return cmd
}
