package cli

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/salve-sre/salve/internal/auth"
)

func newToken(stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Create API tokens",
	}
	cmd.AddCommand(newTokenCreate(stdout))
	return cmd
}

// tokenCreated is `salve token create -o json`.
type tokenCreated struct {
	Token   string   `json:"token"`
	Subject string   `json:"subject"`
	Role    string   `json:"role"`
	Groups  []string `json:"groups"`
	SHA256  string   `json:"sha256"`
}

func newTokenCreate(stdout io.Writer) *cobra.Command {
	var (
		out     outputFormat
		role    string
		subject string
		groups  []string
	)
	cmd := &cobra.Command{
		Use:   "create --role ROLE --subject NAME",
		Short: "Make a new API token and the config entry that enables it",
		Long: `Generates a random API token for a person or a program (the subject) and
prints it once, with the line to add under auth.tokens in Salve's config
file. Salve keeps only the token's SHA-256, so the token cannot be shown
again: store it now (a password manager, a secret store, SALVE_TOKEN).
Nothing is sent anywhere; the token works once the server loads the entry.

Roles: viewer reads runs, runbooks, approvals and the audit log; operator
may also launch and cancel runs and decide approvals; admin may do
everything. --group puts the subject in groups that runbooks' access lists
can name as group:NAME.`,
		Example: `  salve token create --role operator --subject alice --group sre
  salve token create --role viewer --subject grafana -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := auth.ParseRole(role); err != nil {
				return fmt.Errorf("the --role flag: %w", err)
			}
			subject = strings.TrimSpace(subject)
			if subject == "" {
				return errors.New("the --subject flag is required: who uses the token (a person or a program), as it appears in the audit log")
			}
			for i, g := range groups {
				if groups[i] = strings.TrimSpace(g); groups[i] == "" {
					return errors.New("the --group flag: a group name is empty")
				}
			}
			token, hash, err := auth.NewToken()
			if err != nil {
				return err
			}
			if out.json() {
				return printJSON(stdout, tokenCreated{Token: token, Subject: subject, Role: role, Groups: nonNil(groups), SHA256: hash})
			}
			entry, err := tokenConfigEntry(subject, role, groups, hash)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "API token for %s (role %s):\n\n  %s\n\n", subject, role, token)
			fmt.Fprintln(stdout, "This is the only time it is shown: Salve stores only its SHA-256. Keep it")
			fmt.Fprintln(stdout, "somewhere safe now; commands read it from SALVE_TOKEN or --token-file.")
			fmt.Fprintln(stdout)
			fmt.Fprintln(stdout, "To enable it, add this under auth.tokens in Salve's config file:")
			fmt.Fprintln(stdout)
			fmt.Fprintf(stdout, "  %s\n", entry)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&role, "role", "", "the token's role: "+strings.Join(auth.RoleNames, ", "))
	f.StringVar(&subject, "subject", "", "who uses the token: a person or program, as the audit log names them")
	f.StringSliceVar(&groups, "group", nil, "a group of the subject, for runbooks' access lists (repeat for more)")
	f.VarP(&out, "output", "o", "output format: table (for people) or json (for scripts)")
	_ = cmd.MarkFlagRequired("role")
	return cmd
}

// tokenConfigEntry is the auth.tokens list item for a token, one line of
// flow-style YAML with values quoted where YAML needs it.
func tokenConfigEntry(subject, role string, groups []string, hash string) (string, error) {
	str := func(v string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v} }
	m := &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle}
	add := func(k string, v *yaml.Node) { m.Content = append(m.Content, str(k), v) }
	add("subject", str(subject))
	add("role", str(role))
	g := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
	for _, name := range groups {
		g.Content = append(g.Content, str(name))
	}
	add("groups", g)
	add("sha256", str(hash))
	b, err := yaml.Marshal([]*yaml.Node{m})
	if err != nil {
		return "", fmt.Errorf("write the config entry: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}
