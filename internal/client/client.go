// Package client is a typed HTTP client for Salve's API: launch runbooks,
// list and inspect runs, cancel them, decide approvals and follow a run's
// events as they happen. The CLI's remote commands use it; so can scripts
// and tests written in Go.
//
// Request and response bodies are the server's own types (internal/runs,
// runbooks), so the two sides share one definition. Responses are decoded
// leniently: fields this version does not know are ignored, fields it
// expects but the server leaves out keep their zero values.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/salve-sre/salve/internal/runs"
	"github.com/salve-sre/salve/internal/trust"
	"github.com/salve-sre/salve/runbooks"
	"github.com/salve-sre/salve/triggers"
)

// DefaultAddr is where `salve dev` serves the API.
const DefaultAddr = "http://127.0.0.1:8080"

// requestTimeout bounds a request whose context has no deadline. Event
// streams are not bounded: they last as long as the run.
const requestTimeout = time.Minute

// maxBody bounds the response bodies the client reads.
const maxBody = 64 << 20

// Config says where the API is and how to authenticate.
type Config struct {
	// Addr is the API's base URL; default DefaultAddr. A bare host:port
	// means http.
	Addr string
	// Token is sent as "Authorization: Bearer <token>"; "" sends none.
	Token string
	// CACertFile is a PEM file of CA certificates that sign the server's
	// TLS certificate (for https addresses); "" trusts the system's CAs.
	CACertFile string
	// HTTP is the client to send requests with; nil builds one (with
	// CACertFile). Set either HTTP or CACertFile, not both.
	HTTP *http.Client
}

// Client calls Salve's API. It is safe for concurrent use.
type Client struct {
	base  *url.URL
	token string
	hc    *http.Client

	// reconnect bounds how an event stream is resumed after it drops.
	reconnect backoff
	// body, when set, receives the body of each successful answer.
	body *[]byte
}

// RecordBody returns a copy of c that stores the body of each successful
// answer in *dst, verbatim: for callers that print the API's JSON as it
// came (fields this version does not know included).
func (c *Client) RecordBody(dst *[]byte) *Client {
	cp := *c
	cp.body = dst
	return &cp
}

// New checks cfg and returns a Client. It does not contact the server.
func New(cfg Config) (*Client, error) {
	addr := strings.TrimSpace(cfg.Addr)
	if addr == "" {
		addr = DefaultAddr
	}
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil {
		return nil, fmt.Errorf("API address %q: %w", cfg.Addr, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("API address %q: want an http:// or https:// URL", cfg.Addr)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("API address %q: no host", cfg.Addr)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("API address %q: want a base URL without query or fragment", cfg.Addr)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	if strings.ContainsAny(cfg.Token, "\r\n") {
		return nil, errors.New("the API token contains a line break (check the token file)")
	}
	hc := cfg.HTTP
	switch {
	case hc != nil && cfg.CACertFile != "":
		return nil, errors.New("client.Config: set either HTTP or CACertFile, not both")
	case hc == nil:
		tr := http.DefaultTransport.(*http.Transport).Clone()
		if cfg.CACertFile != "" {
			pem, err := os.ReadFile(cfg.CACertFile)
			if err != nil {
				return nil, fmt.Errorf("read CA certificate: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("CA certificate %s: no PEM certificates in it", cfg.CACertFile)
			}
			tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		}
		hc = &http.Client{Transport: tr}
	}
	return &Client{base: u, token: cfg.Token, hc: hc, reconnect: defaultBackoff}, nil
}

// Addr is the API's base URL.
func (c *Client) Addr() string { return c.base.String() }

// APIError is an error answer of the API: `{"error": "...", "detail": ...}`
// with a 4xx or 5xx status.
type APIError struct {
	Status  int
	Message string
	// Detail is the answer's "detail", if any: more about what to fix,
	// e.g. the list of problems with a launch's params.
	Detail json.RawMessage
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
	b.WriteString(detailText(e.Detail))
	if e.Status == http.StatusUnauthorized {
		b.WriteString(" (set SALVE_TOKEN or --token")
		if !strings.Contains(e.Message, "salve token create") {
			b.WriteString("; create one with: salve token create --role operator --subject NAME")
		}
		b.WriteString(")")
	}
	return b.String()
}

// detailText renders an error's detail for people: a string or a list of
// strings as text, anything else as compact JSON.
func detailText(d json.RawMessage) string {
	d = bytes.TrimSpace(d)
	if len(d) == 0 || string(d) == "null" {
		return ""
	}
	var s string
	if json.Unmarshal(d, &s) == nil {
		if s == "" {
			return ""
		}
		return " (" + s + ")"
	}
	var list []string
	if json.Unmarshal(d, &list) == nil && len(list) > 0 {
		return "\n  " + strings.Join(list, "\n  ")
	}
	var buf bytes.Buffer
	if json.Compact(&buf, d) == nil {
		return " " + buf.String()
	}
	return ""
}

// StatusCode returns the HTTP status of an *APIError in err's chain, or 0.
func StatusCode(err error) int {
	if ae, ok := errors.AsType[*APIError](err); ok {
		return ae.Status
	}
	return 0
}

// UnreachableError says the API could not be reached at all.
type UnreachableError struct {
	Addr string
	Err  error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("cannot reach Salve at %s: %v (is it running? start one with 'salve dev', or point SALVE_ADDR or --addr at yours)", e.Addr, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// transportError explains an error from sending a request.
func (c *Client) transportError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("no answer from Salve at %s in time: %w", c.Addr(), ctx.Err())
		}
		return ctx.Err()
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // the URL is said once, below
	}
	if op, ok := errors.AsType[*net.OpError](err); ok && op.Op == "dial" {
		return &UnreachableError{Addr: c.Addr(), Err: op.Err}
	}
	if dns, ok := errors.AsType[*net.DNSError](err); ok {
		return &UnreachableError{Addr: c.Addr(), Err: dns}
	}
	var unknownCA x509.UnknownAuthorityError
	if errors.As(err, &unknownCA) {
		return fmt.Errorf("%s: %w (pass the CA certificate that signs it with --cacert or SALVE_CACERT)", c.Addr(), err)
	}
	return fmt.Errorf("%s: %w", c.Addr(), err)
}

// url builds the URL of an API path. Each element of segs is one path
// segment, escaped: workflow IDs contain slashes.
func (c *Client) url(q url.Values, segs ...string) string {
	u := *c.base
	raw := u.EscapedPath()
	for _, s := range segs {
		raw += "/" + url.PathEscape(s)
	}
	p, err := url.PathUnescape(raw)
	if err != nil {
		p = raw
	}
	u.Path, u.RawPath = p, raw
	if len(q) > 0 {
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// newRequest builds a request with the token and JSON headers.
func (c *Client) newRequest(ctx context.Context, method, u string, body any) (*http.Request, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("encode request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "salve-client")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	return req, nil
}

// do sends a request and decodes a 2xx answer's JSON body into out (nil:
// ignore it). Other answers become an *APIError.
func (c *Client) do(ctx context.Context, method, u string, in, out any) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, requestTimeout)
		defer cancel()
	}
	req, err := c.newRequest(ctx, method, u, in)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return c.transportError(ctx, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return c.transportError(ctx, fmt.Errorf("read the answer to %s %s: %w", method, req.URL.Path, err))
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return apiError(resp.StatusCode, body)
	}
	if c.body != nil {
		*c.body = body
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("decode the answer to %s %s: %w", method, req.URL.Path, err)
	}
	return nil
}

// apiError reads an error answer. A body that is not the API's JSON (a
// proxy's page, say) is kept as the message, shortened.
func apiError(status int, body []byte) *APIError {
	var e struct {
		Error  string          `json:"error"`
		Detail json.RawMessage `json:"detail"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		return &APIError{Status: status, Message: e.Error, Detail: e.Detail}
	}
	msg := strings.TrimSpace(string(body))
	if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	if msg == "" {
		msg = "no error message"
	}
	return &APIError{Status: status, Message: msg}
}

// RunbookInfo describes a loaded runbook (an item of GET /v1/runbooks).
type RunbookInfo struct {
	Name        string   `json:"name"`
	Description string   `json:"description,omitempty"`
	Owner       string   `json:"owner,omitempty"`
	Matchers    []string `json:"matchers,omitempty"`
	// Steps are "name (action)".
	Steps  []string                  `json:"steps"`
	Params map[string]runbooks.Param `json:"params,omitempty"`
	// Mode is enforce or dry-run; "" means enforce.
	Mode string `json:"mode,omitempty"`
	// Approval says whether the runbook or any of its steps needs one.
	Approval    bool    `json:"approval"`
	ToilMinutes float64 `json:"toilMinutes,omitempty"`
	Source      string  `json:"source"`
	Hash        string  `json:"hash"`
}

// RunbookDetail is GET /v1/runbooks/{name}: the runbook, its recent runs
// and how they went.
type RunbookDetail struct {
	Runbook RunbookInfo `json:"runbook"`
	// Spec is the runbook as the server loaded it.
	Spec       *runbooks.Runbook `json:"spec,omitempty"`
	RecentRuns []runs.Summary    `json:"recentRuns"`
	Stats      runs.RunbookStats `json:"stats"`
	// StatsError says why RecentRuns and Stats are missing.
	StatsError string `json:"statsError,omitempty"`
}

// Launch starts a run of a runbook, or with req.DryRun returns the plan
// of one and starts nothing (POST /v1/runbooks/{name}/launch).
func (c *Client) Launch(ctx context.Context, runbook string, req runs.LaunchRequest) (runs.LaunchResult, error) {
	var res runs.LaunchResult
	err := c.do(ctx, http.MethodPost, c.url(nil, "v1", "runbooks", runbook, "launch"), req, &res)
	return res, err
}

// Runbooks lists the runbooks the server has loaded (GET /v1/runbooks).
func (c *Client) Runbooks(ctx context.Context) ([]RunbookInfo, error) {
	var res struct {
		Runbooks []RunbookInfo `json:"runbooks"`
	}
	err := c.do(ctx, http.MethodGet, c.url(nil, "v1", "runbooks"), nil, &res)
	return res.Runbooks, err
}

// Runbook returns one runbook with its recent runs (GET /v1/runbooks/{name}).
func (c *Client) Runbook(ctx context.Context, name string) (RunbookDetail, error) {
	var res RunbookDetail
	err := c.do(ctx, http.MethodGet, c.url(nil, "v1", "runbooks", name), nil, &res)
	return res, err
}

// Runs lists runs, newest first (GET /v1/runs). limit <= 0 leaves the page
// size to the server. An empty next page token means the last page.
func (c *Client) Runs(ctx context.Context, f runs.ListFilter, limit int, pageToken string) ([]runs.Summary, string, error) {
	q := url.Values{}
	for k, v := range map[string]string{"runbook": f.Runbook, "status": f.Status, "incidentKey": f.IncidentKey, "pageToken": pageToken} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if !f.Since.IsZero() {
		q.Set("since", f.Since.UTC().Format(time.RFC3339))
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var res struct {
		Runs          []runs.Summary `json:"runs"`
		NextPageToken string         `json:"nextPageToken"`
	}
	err := c.do(ctx, http.MethodGet, c.url(q, "v1", "runs"), nil, &res)
	return res.Runs, res.NextPageToken, err
}

// Run returns one run with its steps (GET /v1/runs/{id}); runID "" means
// the latest run of workflowID.
func (c *Client) Run(ctx context.Context, workflowID, runID string) (runs.Detail, error) {
	q := url.Values{}
	if runID != "" {
		q.Set("runId", runID)
	}
	var res runs.Detail
	err := c.do(ctx, http.MethodGet, c.url(q, "v1", "runs", workflowID), nil, &res)
	return res, err
}

// Cancel asks a running run to stop (POST /v1/runs/{id}/cancel). Its
// onFailure steps still run.
func (c *Client) Cancel(ctx context.Context, workflowID string, req runs.CancelRequest) (runs.CancelResult, error) {
	var res runs.CancelResult
	err := c.do(ctx, http.MethodPost, c.url(nil, "v1", "runs", workflowID, "cancel"), req, &res)
	return res, err
}

// Approvals lists the runs waiting for a person (GET /v1/approvals).
func (c *Client) Approvals(ctx context.Context) ([]runs.PendingApproval, error) {
	var res struct {
		Approvals []runs.PendingApproval `json:"approvals"`
	}
	err := c.do(ctx, http.MethodGet, c.url(nil, "v1", "approvals"), nil, &res)
	return res.Approvals, err
}

// FailedAlerts lists the alerts the trigger parked (GET /v1/failed-alerts).
func (c *Client) FailedAlerts(ctx context.Context) ([]triggers.FailedAlert, error) {
	var res struct {
		FailedAlerts []triggers.FailedAlert `json:"failedAlerts"`
	}
	err := c.do(ctx, http.MethodGet, c.url(nil, "v1", "failed-alerts"), nil, &res)
	return res.FailedAlerts, err
}

// RetryFailedAlert sends a parked alert back to the trigger
// (POST /v1/failed-alerts/{id}/retry).
func (c *Client) RetryFailedAlert(ctx context.Context, id, reason string) (triggers.FailedAlert, error) {
	var res struct {
		Retried triggers.FailedAlert `json:"retried"`
	}
	err := c.do(ctx, http.MethodPost, c.url(nil, "v1", "failed-alerts", id, "retry"), map[string]string{"reason": reason}, &res)
	return res.Retried, err
}

// Approve approves the approval a run waits for (POST /v1/runs/{id}/approve).
func (c *Client) Approve(ctx context.Context, workflowID string, req runs.DecisionRequest) (runs.DecisionResult, error) {
	return c.decide(ctx, workflowID, "approve", req)
}

// Reject rejects the approval a run waits for; the run stops
// (POST /v1/runs/{id}/reject).
func (c *Client) Reject(ctx context.Context, workflowID string, req runs.DecisionRequest) (runs.DecisionResult, error) {
	return c.decide(ctx, workflowID, "reject", req)
}

func (c *Client) decide(ctx context.Context, workflowID, verb string, req runs.DecisionRequest) (runs.DecisionResult, error) {
	var res runs.DecisionResult
	err := c.do(ctx, http.MethodPost, c.url(nil, "v1", "runs", workflowID, verb), req, &res)
	return res, err
}

// Evidence returns a runbook's trust evidence (GET
// /v1/runbooks/{name}/evidence); with backtest (e.g. "7d") also a
// backtest of it over the alerts Salve received in that window.
func (c *Client) Evidence(ctx context.Context, runbook, backtest string) (trust.EvidenceAnswer, error) {
	var q url.Values
	if backtest != "" {
		q = url.Values{"backtest": {backtest}}
	}
	var res trust.EvidenceAnswer
	err := c.do(ctx, http.MethodGet, c.url(q, "v1", "runbooks", runbook, "evidence"), nil, &res)
	return res, err
}

// Promote asks to move a runbook up the trust ladder (POST
// /v1/runbooks/{name}/promote).
func (c *Client) Promote(ctx context.Context, runbook string, req trust.PromoteRequest) (trust.PromoteAnswer, error) {
	var res trust.PromoteAnswer
	err := c.do(ctx, http.MethodPost, c.url(nil, "v1", "runbooks", runbook, "promote"), req, &res)
	return res, err
}
