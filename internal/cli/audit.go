package cli

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/salve-sre/salve/internal/app"
	"github.com/salve-sre/salve/internal/audit"
)

func newAudit(stdout, stderr, raw io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Read, export and verify the tamper-evident audit log",
	}
	cmd.AddCommand(newAuditVerify(stdout), newAuditTail(stdout, stderr), newAuditExport(raw))
	return cmd
}

// errBrokenChain makes Execute exit 1 without printing a second message.
var errBrokenChain = errors.New("the audit chain is broken")

func newAuditVerify(stdout io.Writer) *cobra.Command {
	var db, natsURL string
	var natsCfg app.NATSClientConfig
	var secrets secretFiles
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Recompute the audit hash chain; exit 1 if any row was edited, deleted, reordered or cut off",
		Long: `Reads the audit store directly (the SQLite file under the data dir, or a
PostgreSQL URL) and recomputes every hash. With --nats it also checks the chain
against the anchors the recorder wrote to JetStream, which detects a truncated
tail. Exit code 0: intact; 1: broken (the first bad sequence number is printed).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			store, err := audit.Open(ctx, db)
			if err != nil {
				return err
			}
			defer store.Close()
			var anchors audit.Anchors
			var js jetstream.JetStream
			if natsURL != "" {
				nc, err := nats.Connect(natsURL, append(natsCfg.Options(), nats.Name("salve-audit-verify"), nats.Timeout(5*time.Second))...)
				if err != nil {
					return fmt.Errorf("connect to NATS for the anchors (or pass --nats '' to skip them): %w", err)
				}
				defer nc.Close()
				js, err = jetstream.New(nc)
				if err != nil {
					return err
				}
				anchors = audit.JetStreamAnchors{JS: js}
			}
			res, err := audit.Verify(ctx, store, anchors)
			if err != nil {
				return err
			}
			if js != nil && res.OK {
				if n, err := audit.Unrecorded(ctx, js); err == nil {
					res.Unrecorded = &n
				}
			}
			fmt.Fprintln(stdout, res.Summary())
			if !res.OK {
				return errBrokenChain
			}
			return nil
		},
	}
	f := cmd.Flags()
	secrets.add(f, &db, "db", "audit store: SQLite file or postgres:// URL (default .salve/audit.db); a URL with a password belongs in --db-file")
	f.StringVar(&natsURL, "nats", "nats://127.0.0.1:4222", "NATS URL for the chain anchors; '' to skip")
	// The same connection options as salve server and salve worker.
	f.StringVar(&natsCfg.CredsFile, "nats-creds", "", "NATS credentials file (JWT and NKey)")
	f.StringVar(&natsCfg.CAFile, "nats-ca", "", "CA certificate of the NATS servers' TLS certificates")
	f.StringVar(&natsCfg.CertFile, "nats-tls-cert", "", "client certificate for NATS mTLS, with --nats-tls-key")
	f.StringVar(&natsCfg.KeyFile, "nats-tls-key", "", "client key for NATS mTLS")
	cmd.PreRunE = func(*cobra.Command, []string) error {
		if err := secrets.resolve(); err != nil {
			return err
		}
		if err := natsCfg.Check(); err != nil {
			return usageError{err}
		}
		if db == "" {
			db = filepath.Join(".salve", "audit.db")
		}
		return nil
	}
	return cmd
}

type auditQuery struct {
	server, token, run, runbook, incident, action, since string
	limit                                                int
}

func (q *auditQuery) flags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&q.server, "server", "http://127.0.0.1:8080", "Salve API base URL")
	f.StringVar(&q.token, "token", "", "API token with role viewer (default $SALVE_TOKEN, or salve dev's .salve/admin-token on this machine)")
	f.StringVar(&q.run, "run", "", "only events of this run (workflow ID)")
	f.StringVar(&q.runbook, "runbook", "", "only events of this runbook")
	f.StringVar(&q.incident, "incident", "", "only events of this incident key")
	f.StringVar(&q.action, "action", "", "only this action, e.g. step.failed")
	f.StringVar(&q.since, "since", "", "only events newer than this: an age (90m, 1h, 7d) or an RFC 3339 time")
}

// fetch reads one page of audit events after seq.
func (q *auditQuery) fetch(ctx context.Context, after int64, limit int) ([]audit.Record, error) {
	v := url.Values{}
	for k, val := range map[string]string{"workflowId": q.run, "runbook": q.runbook, "incidentKey": q.incident, "action": q.action, "since": q.since} {
		if val != "" {
			v.Set(k, val)
		}
	}
	v.Set("after", strconv.FormatInt(after, 10))
	v.Set("limit", strconv.Itoa(limit))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(q.server, "/")+"/v1/audit?"+v.Encode(), nil)
	if err != nil {
		return nil, err
	}
	if err := authorize(req, q.server, q.token); err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reach Salve at %s (is it running? set --server): %w", q.server, err)
	}
	defer resp.Body.Close()
	var body struct {
		Events []audit.Record `json:"events"`
		Error  string         `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("read audit events: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("salve answered %d: %s", resp.StatusCode, body.Error)
	}
	return body.Events, nil
}

func newAuditTail(stdout, stderr io.Writer) *cobra.Command {
	q := &auditQuery{}
	var follow bool
	var n int
	cmd := &cobra.Command{
		Use:   "tail",
		Short: "Show the latest audit events; -f follows new ones",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			// Page through to the end, keeping the last n.
			var last []audit.Record
			after := int64(0)
			for {
				page, err := q.fetch(ctx, after, 1000)
				if err != nil {
					return err
				}
				last = append(last, page...)
				if len(last) > n {
					last = last[len(last)-n:]
				}
				if len(page) < 1000 {
					break
				}
				after = page[len(page)-1].Seq
			}
			for _, r := range last {
				printRecord(stdout, r)
				after = r.Seq
			}
			for follow {
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(time.Second):
				}
				page, err := q.fetch(ctx, after, 1000)
				if err != nil {
					fmt.Fprintln(stderr, "salve:", err)
					continue
				}
				for _, r := range page {
					printRecord(stdout, r)
					after = r.Seq
				}
			}
			return nil
		},
	}
	q.flags(cmd)
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new events until interrupted")
	cmd.Flags().IntVarP(&n, "lines", "n", 20, "how many of the latest events to show")
	return cmd
}

func printRecord(w io.Writer, r audit.Record) {
	ev := r.Event
	fmt.Fprintf(w, "%6d %s %-18s", r.Seq, ev.Time.Format(time.RFC3339), ev.Action)
	for _, kv := range [][2]string{{"runbook", ev.Runbook}, {"run", ev.WorkflowID}, {"step", ev.Step}, {"outcome", ev.Outcome}, {"actor", ev.Actor.Kind + ":" + ev.Actor.Name}, {"error", ev.Error}} {
		if kv[1] != "" && kv[1] != ":" {
			fmt.Fprintf(w, " %s=%q", kv[0], kv[1])
		}
	}
	fmt.Fprintln(w)
}

func newAuditExport(stdout io.Writer) *cobra.Command {
	q := &auditQuery{}
	var format string
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Write audit events as JSON lines or CSV",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "jsonl" && format != "csv" {
				return fmt.Errorf("--format %q: want jsonl or csv", format)
			}
			var cw *csv.Writer
			if format == "csv" {
				cw = csv.NewWriter(stdout)
				_ = cw.Write([]string{"seq", "time", "action", "actor", "runbook", "workflow_id", "incident_key", "step", "outcome", "error", "event_id", "hash"})
			}
			enc := json.NewEncoder(stdout)
			after := int64(0)
			for {
				page, err := q.fetch(cmd.Context(), after, 1000)
				if err != nil {
					return err
				}
				for _, r := range page {
					ev := r.Event
					if cw != nil {
						_ = cw.Write([]string{strconv.FormatInt(r.Seq, 10), ev.Time.Format(time.RFC3339Nano), ev.Action, ev.Actor.Kind + ":" + ev.Actor.Name,
							ev.Runbook, ev.WorkflowID, ev.IncidentKey, ev.Step, ev.Outcome, ev.Error, ev.ID, r.Hash})
					} else if err := enc.Encode(r); err != nil {
						return err
					}
					after = r.Seq
				}
				if len(page) < 1000 {
					break
				}
			}
			if cw != nil {
				cw.Flush()
				return cw.Error()
			}
			return nil
		},
	}
	q.flags(cmd)
	cmd.Flags().StringVar(&format, "format", "jsonl", "jsonl or csv")
	return cmd
}
