// Package httpreq is the http.request step kind: call an HTTP endpoint
// (a webhook, a service's admin API) and check the answer.
package httpreq

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/salve-sre/salve/activities/egress"
	"github.com/salve-sre/salve/activities/step"
)

// Kind is the step kind's name in runbooks.
const Kind = "http.request"

// maxBody bounds how much of a response is kept as step output (keepBody):
// outputs go into workflow history and every viewer sees them.
const maxBody = 4 << 10

// maxRead bounds how much of a response is read to size and hash it.
const maxRead = 16 << 20

// Doer is the part of *http.Client the step needs.
type Doer interface {
	Do(*http.Request) (*http.Response, error)
}

// Spec returns the step kind. A nil client uses http.DefaultClient's
// transport with no overall timeout of its own: the step's timeout (the
// activity's start-to-close timeout, carried by ctx) bounds each request.
func Spec(client Doer) step.Spec { return SpecWith(Options{Client: client}) }

// Secrets resolves a secret reference ("secret/pagerduty#token": a KV
// mount, a path and a key) for one step attempt. Values stay in the
// activity's memory; they are never logged, returned or audited.
type Secrets interface {
	Resolve(ctx context.Context, req step.Request, ref string) (string, error)
}

// Options configures the step kind.
type Options struct {
	Client  Doer
	Secrets Secrets // nil: secretHeaders fail and say Vault is needed
}

// SpecWith returns the step kind with its dependencies.
func SpecWith(opts Options) step.Spec {
	client := opts.Client
	if client == nil {
		// Link-local and cloud metadata addresses are refused, also
		// after redirects (activities/egress).
		client = &http.Client{Transport: egress.Transport()}
	}
	return step.Spec{
		Kind:     Kind,
		Summary:  "Send an HTTP request and check the response status.",
		Mutating: true,
		Params: step.ParamSchema{Params: []step.Param{
			{Name: "url", Type: step.TypeString, Required: true, Doc: "http:// or https:// URL", Sink: step.SinkURL},
			{Name: "method", Type: step.TypeString, Doc: "HTTP method; default GET"},
			{Name: "headers", Type: step.TypeMap, Doc: "request headers"},
			{Name: "secretHeaders", Type: step.TypeMap, Doc: "headers with secrets from Vault KV: ${mount/path#key} is replaced, e.g. Authorization: 'Bearer ${secret/pagerduty#token}'; sent only to a host written in the runbook", Sink: step.SinkSecret},
			{Name: "body", Type: step.TypeString, Doc: "request body"},
			{Name: "expectStatus", Type: step.TypeList, Doc: "acceptable status codes; default any 2xx"},
			{Name: "keepBody", Type: step.TypeBool, Doc: "keep the first 4 KiB of the response body in the step's output, where every viewer and later steps see it; default false: the output holds only status, size and sha256"},
		}},
		Executor: executor{client: client, secrets: opts.Secrets},
	}
}

type executor struct {
	client  Doer
	secrets Secrets
}

type params struct {
	url, method, body string
	headers           map[string]string
	secretHeaders     map[string]string
	expect            []int
	keepBody          bool
}

func parse(p map[string]any) (params, error) {
	var out params
	var err error
	if out.url, err = step.String(p["url"]); err != nil || out.url == "" {
		return out, fmt.Errorf("%w: url: required, e.g. https://example.internal/hook", step.ErrInvalidParams)
	}
	// Errors name the URL only in redacted form: user info and query
	// strings carry tokens, and errors reach history and the audit log.
	u, err := url.Parse(out.url)
	if err != nil {
		return out, fmt.Errorf("%w: url is not a valid URL", step.ErrInvalidParams)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return out, fmt.Errorf("%w: url %q must start with http:// or https://", step.ErrInvalidParams, redact(u))
	}
	if u.Host == "" {
		return out, fmt.Errorf("%w: url %q has no host", step.ErrInvalidParams, redact(u))
	}
	out.method = http.MethodGet
	if v, ok := p["method"]; ok {
		if out.method, err = step.String(v); err != nil {
			return out, fmt.Errorf("%w: method: %v", step.ErrInvalidParams, err)
		}
		out.method = strings.ToUpper(out.method)
	}
	if v, ok := p["headers"]; ok {
		if out.headers, err = step.StringMap(v); err != nil {
			return out, fmt.Errorf("%w: headers: %v", step.ErrInvalidParams, err)
		}
	}
	if v, ok := p["secretHeaders"]; ok {
		if out.secretHeaders, err = step.StringMap(v); err != nil {
			return out, fmt.Errorf("%w: secretHeaders: %v", step.ErrInvalidParams, err)
		}
		for name, val := range out.secretHeaders {
			if len(secretRef.FindAllStringIndex(val, -1)) == 0 {
				return out, fmt.Errorf("%w: secretHeaders.%s has no ${mount/path#key} reference; put plain values in headers", step.ErrInvalidParams, name)
			}
		}
	}
	if v, ok := p["body"]; ok {
		if out.body, err = step.String(v); err != nil {
			return out, fmt.Errorf("%w: body: %v", step.ErrInvalidParams, err)
		}
	}
	if v, ok := p["keepBody"]; ok {
		if out.keepBody, err = step.Bool(v); err != nil {
			return out, fmt.Errorf("%w: keepBody: %v", step.ErrInvalidParams, err)
		}
	}
	if v, ok := p["expectStatus"]; ok {
		list, isList := v.([]any)
		if !isList {
			return out, fmt.Errorf("%w: expectStatus: want a list of status codes, e.g. [200, 204]", step.ErrInvalidParams)
		}
		for _, e := range list {
			code, err := step.Int(e)
			if err != nil || code < 100 || code > 599 {
				return out, fmt.Errorf("%w: expectStatus: %v is not an HTTP status code", step.ErrInvalidParams, e)
			}
			out.expect = append(out.expect, code)
		}
	}
	return out, nil
}

func (p params) ok(code int) bool {
	if len(p.expect) == 0 {
		return code >= 200 && code < 300
	}
	for _, c := range p.expect {
		if c == code {
			return true
		}
	}
	return false
}

// Execute sends the request once. Retries are Temporal's job; the
// Idempotency-Key header lets the receiver recognise a retried attempt.
func (e executor) Execute(ctx context.Context, req step.Request) (step.Result, error) {
	p, err := parse(req.Params)
	if err != nil {
		return step.Result{}, err
	}
	var body io.Reader
	if p.body != "" {
		body = strings.NewReader(p.body)
	}
	hreq, err := http.NewRequestWithContext(ctx, p.method, p.url, body)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return step.Result{}, fmt.Errorf("%w: build request: %v", step.ErrInvalidParams, err)
	}
	for k, v := range p.headers {
		hreq.Header.Set(k, v)
	}
	for name, tmpl := range p.secretHeaders {
		val, err := e.resolve(ctx, req, tmpl)
		if err != nil {
			return step.Result{}, fmt.Errorf("secretHeaders.%s: %w", name, err)
		}
		hreq.Header.Set(name, val)
	}
	if req.IdempotencyKey != "" {
		hreq.Header.Set("Idempotency-Key", req.IdempotencyKey)
	}
	hreq.Header.Set("User-Agent", "salve")
	client := e.client
	if hc, ok := client.(*http.Client); ok && len(p.secretHeaders) > 0 {
		// A redirect would carry the secret headers to wherever it points:
		// with secrets, the first answer is the answer.
		c := *hc
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		client = &c
	}
	resp, err := client.Do(hreq)
	if err != nil {
		// *url.Error repeats the full URL; keep only its cause.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return step.Result{}, fmt.Errorf("%s %s: %w", p.method, redact(hreq.URL), err)
	}
	defer resp.Body.Close()
	out := step.Result{Output: p.output(resp)}
	if !p.ok(resp.StatusCode) {
		err := fmt.Errorf("%s %s: unexpected status %d", p.method, redact(hreq.URL), resp.StatusCode)
		// 4xx other than timeouts and throttling will not change on retry.
		if step.PermanentStatus(resp.StatusCode) {
			err = fmt.Errorf("%w: %v", step.ErrPermanent, err)
		}
		return out, err
	}
	return out, nil
}

// output is what the step records of a response. By default not the body:
// a response is another system's data, and a step's output is shown to
// every viewer and kept in history, so an alert that could point a step
// at an internal address must not be able to read the answer through
// Salve. Size and hash still let a runbook or a person tell answers apart.
func (p params) output(resp *http.Response) map[string]any {
	h := sha256.New()
	var kept bytes.Buffer
	w := io.Writer(h)
	if p.keepBody {
		w = io.MultiWriter(h, &limitedBuffer{b: &kept, n: maxBody})
	}
	n, _ := io.Copy(w, io.LimitReader(resp.Body, maxRead))
	out := map[string]any{"status": resp.StatusCode, "size": n, "sha256": hex.EncodeToString(h.Sum(nil))}
	if p.keepBody {
		out["body"] = kept.String()
	}
	return out
}

// limitedBuffer keeps the first n bytes written and drops the rest.
type limitedBuffer struct {
	b *bytes.Buffer
	n int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.n - l.b.Len(); room > 0 {
		l.b.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

var secretRef = regexp.MustCompile(`\$\{([^}#]+)#([^}]+)\}`)

// resolve replaces every ${mount/path#key} in a header value with the
// secret. Errors name the reference, never a value.
func (e executor) resolve(ctx context.Context, req step.Request, tmpl string) (string, error) {
	if e.secrets == nil {
		return "", fmt.Errorf("%w: secret headers need Vault: start Salve with --vault-addr", step.ErrPermanent)
	}
	var out strings.Builder
	last := 0
	for _, m := range secretRef.FindAllStringSubmatchIndex(tmpl, -1) {
		out.WriteString(tmpl[last:m[0]])
		ref := tmpl[m[2]:m[3]] + "#" + tmpl[m[4]:m[5]]
		val, err := e.secrets.Resolve(ctx, req, ref)
		if err != nil {
			return "", err
		}
		out.WriteString(val)
		last = m[1]
	}
	out.WriteString(tmpl[last:])
	return out.String(), nil
}

// redact drops user info, query and fragment (where tokens hide) from a
// URL shown in error text.
func redact(in *url.URL) string {
	u := *in
	u.User = nil
	u.RawQuery = ""
	u.Fragment = ""
	return u.String()
}
