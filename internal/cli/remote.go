package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/salve-sre/salve/internal/client"
	"github.com/salve-sre/salve/internal/domain"
)

// The commands that operate Salve talk to its API only, through
// internal/client. They share the connection flags below.

// Environment variables of the connection flags.
const (
	envAddr    = "SALVE_ADDR"
	envToken   = "SALVE_TOKEN"
	envCACert  = "SALVE_CACERT"
	envDataDir = "SALVE_DATA_DIR"
)

// adminTokenFile is where `salve dev` keeps its admin token, in its data
// directory.
const adminTokenFile = "admin-token"

// connectionHelp is the part of each remote command's help that says how
// it finds and authenticates to the API.
const connectionHelp = `
Connection: --addr (or SALVE_ADDR; default http://127.0.0.1:8080) is the API.
The token is the first of --token, --token-file, SALVE_TOKEN and, only when
the address is on this machine (loopback), the admin token 'salve dev' keeps
in .salve/admin-token (in $SALVE_DATA_DIR when that is set). --cacert (or
SALVE_CACERT) trusts a private CA for https addresses.`

// remote holds the connection and output flags of a remote command.
type remote struct {
	addr, token, tokenFile, cacert string
	output                         outputFormat
	// body is the API's last answer, verbatim, for -o json.
	body []byte
}

func (r *remote) flags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&r.addr, "addr", "", "Salve API address (default $SALVE_ADDR, else "+client.DefaultAddr+")")
	f.StringVar(&r.token, "token", "", "API token (default $SALVE_TOKEN; prefer the variable or --token-file: flags show up in ps)")
	f.StringVar(&r.tokenFile, "token-file", "", "file holding the API token")
	f.StringVar(&r.cacert, "cacert", "", "CA certificate file that signs the API's TLS certificate (default $SALVE_CACERT)")
	f.VarP(&r.output, "output", "o", "output format: table (for people) or json (for scripts)")
}

// address is the API address the command uses.
func (r *remote) address() string {
	return firstOf(r.addr, os.Getenv(envAddr), client.DefaultAddr)
}

// client builds the API client from the flags and the environment.
func (r *remote) client() (*client.Client, error) {
	addr := r.address()
	token, err := r.resolveToken(addr)
	if err != nil {
		return nil, err
	}
	c, err := client.New(client.Config{Addr: addr, Token: token, CACertFile: firstOf(r.cacert, os.Getenv(envCACert))})
	if err != nil {
		return nil, err
	}
	return c.RecordBody(&r.body), nil
}

// printBody prints the API's last answer as it came, indented; typed is
// printed instead if there was no body.
func (r *remote) printBody(w io.Writer, typed any) error {
	var buf bytes.Buffer
	body := bytes.TrimSpace(r.body)
	if len(body) == 0 || json.Indent(&buf, body, "", "  ") != nil {
		return printJSON(w, typed)
	}
	buf.WriteByte('\n')
	_, err := w.Write(buf.Bytes())
	return err
}

// resolveToken picks the token: --token, --token-file, SALVE_TOKEN, then
// the dev admin token when addr is loopback; "" if none.
func (r *remote) resolveToken(addr string) (string, error) {
	if r.token != "" {
		return strings.TrimSpace(r.token), nil
	}
	if r.tokenFile != "" {
		b, err := os.ReadFile(r.tokenFile)
		if err != nil {
			return "", fmt.Errorf("read the API token: %w", err)
		}
		t := strings.TrimSpace(string(b))
		if t == "" {
			return "", fmt.Errorf("token file %s is empty", r.tokenFile)
		}
		return t, nil
	}
	if t := strings.TrimSpace(os.Getenv(envToken)); t != "" {
		return t, nil
	}
	if !isLoopback(addr) {
		return "", nil
	}
	path := filepath.Join(firstOf(os.Getenv(envDataDir), ".salve"), adminTokenFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read the dev admin token: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// authorize adds the bearer token for server to a request of the older
// commands (audit, incident), resolved like the remote commands' token.
func authorize(req *http.Request, server, token string) error {
	tok, err := (&remote{token: token}).resolveToken(server)
	if err != nil {
		return err
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	return nil
}

// isLoopback reports whether an API address is on this machine.
func isLoopback(addr string) bool {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil {
		return false
	}
	host := u.Hostname()
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// hint is the connection flags to repeat in suggested commands: the
// address and CA when given as flags (never the token).
func (r *remote) hint() string {
	var b strings.Builder
	if r.addr != "" {
		b.WriteString(" --addr " + shellQuote(r.addr))
	}
	if r.cacert != "" {
		b.WriteString(" --cacert " + shellQuote(r.cacert))
	}
	return b.String()
}

func firstOf(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

// outputFormat is the -o flag: table or json.
type outputFormat string

const (
	outputTable = "table"
	outputJSON  = "json"
)

func (o *outputFormat) String() string {
	if *o == "" {
		return outputTable
	}
	return string(*o)
}

func (o *outputFormat) Set(s string) error {
	if s != outputTable && s != outputJSON {
		return errors.New("want table or json")
	}
	*o = outputFormat(s)
	return nil
}

func (o *outputFormat) Type() string { return "table|json" }

func (o outputFormat) json() bool { return o == outputJSON }

// paramsFlag is a repeatable -p key=value flag.
type paramsFlag map[string]string

func (p paramsFlag) String() string {
	keys := make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k + "=" + p[k]
	}
	return strings.Join(out, ",")
}

func (p paramsFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	k = strings.TrimSpace(k)
	switch {
	case !ok:
		return errors.New("want key=value, e.g. -p namespace=shop")
	case k == "":
		return errors.New("the key before = is empty; want key=value, e.g. -p namespace=shop")
	}
	if _, dup := p[k]; dup {
		return fmt.Errorf("param %q is given twice", k)
	}
	p[k] = v
	return nil
}

func (p paramsFlag) Type() string { return "key=value" }

// sinceFlag is a point in time given as an age (1h, 2d) or RFC 3339.
type sinceFlag struct {
	t   *time.Time
	raw string
}

func (s *sinceFlag) String() string { return s.raw }

func (s *sinceFlag) Set(v string) error {
	t, err := domain.ParseSince(v, time.Now())
	if err != nil {
		return err
	}
	*s.t, s.raw = t, strings.TrimSpace(v)
	return nil
}

func (s *sinceFlag) Type() string { return "age|time" }

// exactArgs is cobra.ExactArgs with the usage line in the message.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) == n {
			return nil
		}
		return fmt.Errorf("%s takes %d argument(s), got %d; usage: %s", cmd.CommandPath(), n, len(args), cmd.UseLine())
	}
}

// runArg turns a RUN argument into a workflow ID: the "salve/" prefix may
// be left out.
func runArg(s string) string {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, domain.WorkflowIDPrefix) {
		return s
	}
	return domain.WorkflowIDPrefix + s
}

// requireReason checks the --reason flag of commands that need one.
func requireReason(reason, why string) error {
	if strings.TrimSpace(reason) == "" {
		return fmt.Errorf("the --reason flag is required: %s", why)
	}
	return nil
}

// printJSON writes v indented, for scripts.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// shellQuote quotes s for a POSIX shell when it needs it, so suggested
// commands can be pasted.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/_.:@%+=,-", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Times and durations for people: local time, rounded durations.

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

func fmtClock(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("15:04:05")
}

func fmtDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "-"
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// fmtAgo says how long ago t was (or how far ahead: "in 5m"), rounded
// for people.
func fmtAgo(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	if d < 0 {
		return "in " + fmtRough(-d)
	}
	return fmtRough(d) + " ago"
}

// fmtRough is a duration to the second under a minute, else to the minute.
func fmtRough(d time.Duration) string {
	if d < time.Minute {
		return d.Round(time.Second).String()
	}
	d = d.Round(time.Minute)
	h, m := int(d/time.Hour), int((d%time.Hour)/time.Minute)
	switch {
	case h >= 48:
		return fmt.Sprintf("%dd%dh", h/24, h%24)
	case h > 0:
		return fmt.Sprintf("%dh%dm", h, m)
	}
	return fmt.Sprintf("%dm", m)
}

// newTable is a tabwriter for the tables people read, without the
// trailing spaces an empty last column leaves.
func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(&trimTrailing{w: w}, 0, 4, 2, ' ', 0)
}

// trimTrailing drops spaces at the ends of lines.
type trimTrailing struct {
	w      io.Writer
	spaces int // held back until something other than a newline follows
}

func (t *trimTrailing) Write(p []byte) (int, error) {
	out := make([]byte, 0, len(p)+t.spaces)
	for _, b := range p {
		switch b {
		case ' ':
			t.spaces++
			continue
		case '\n':
			t.spaces = 0
		default:
			for ; t.spaces > 0; t.spaces-- {
				out = append(out, ' ')
			}
		}
		out = append(out, b)
	}
	if _, err := t.w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// compactValue renders a value for one table cell: strings as they are
// (quoted when they contain spaces or are empty), the rest as JSON.
func compactValue(v any) string {
	if s, ok := v.(string); ok {
		if s == "" || strings.ContainsAny(s, " \t\n\"") {
			return strconv.Quote(s)
		}
		return s
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// compactMap renders a map as "k=v k=v", keys sorted.
func compactMap[V any](m map[string]V) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + compactValue(m[k])
	}
	return strings.Join(parts, " ")
}

// oneLine shortens text for a table cell: its first line, at most n runes.
func oneLine(s string, n int) string {
	s = strings.TrimSpace(s)
	cut := false
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s, cut = s[:i], true
	}
	if r := []rune(s); len(r) > n {
		s, cut = string(r[:n]), true
	}
	if cut {
		s += "…"
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
