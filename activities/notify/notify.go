// Package notify sends messages to chat rooms (Slack-compatible incoming
// webhooks: Slack, Mattermost, Rocket.Chat) and to generic JSON webhooks.
// It provides the notify step kind, which runbooks use to say something,
// and the run-level hook activity (step.HookActivity) the workflow calls
// when a run starts, needs approval, finishes, and so on.
//
// Target URLs are secrets (a Slack webhook URL is a bearer token). They
// never appear in errors, logs or step outputs: targets are named instead.
package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/salve-sre/salve/activities/step"
	"github.com/salve-sre/salve/internal/tracing"
)

// Kind is the step kind's name in runbooks.
const Kind = "notify"

const (
	// maxResponse bounds how much of a response is read.
	maxResponse = 4 << 10
	// maxSnippet bounds how much of an error response an error quotes.
	maxSnippet = 200
	// maxRunError bounds how much of a run's error a hook message quotes.
	maxRunError = 1000
	// defaultTimeout bounds one request when New gets no client.
	defaultTimeout = 15 * time.Second
)

// errNotConfigured is what the notify step returns without targets.
var errNotConfigured = fmt.Errorf("%w: notifications are not configured: add a target under notifications.targets in Salve's --config file", step.ErrPermanent)

// Notifier sends notifications to the configured targets. A nil *Notifier
// is valid: its step fails and says notifications are not configured, and
// its Hook does nothing.
type Notifier struct {
	publicURL string
	targets   map[string]target
	names     []string // every configured target name, sorted, for messages
	hooks     []Hook
	client    *http.Client
}

// target is a resolved Target.
type target struct {
	name, kind, url string
	headers         map[string]string
	secrets         []string // scrubbed from quoted text, longest first
}

// New validates cfg, reads URL files, and returns the Notifier. Every
// problem is reported, one per line, naming the target or hook to fix. A
// nil client uses one with a 15s timeout; the activity's context bounds
// each request as well. Redirects are never followed: the first answer is
// the answer, so custom headers never travel to another host.
func New(cfg Config, client *http.Client) (*Notifier, error) {
	n := &Notifier{}
	if err := n.configure(cfg); err != nil {
		return nil, err
	}
	c := http.Client{Timeout: defaultTimeout, Transport: tracing.Transport(nil)}
	if client != nil {
		c = *client
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	n.client = &c
	return n, nil
}

// Spec returns the notify step kind. It is read-only (it only sends a
// message), so it also runs in dry-run mode. Register it even without a
// config, so that runbooks using it validate.
func (n *Notifier) Spec() step.Spec {
	return step.Spec{
		Kind:    Kind,
		Summary: "Send a message to a configured chat (Slack-compatible) or webhook target.",
		Params: step.ParamSchema{Params: []step.Param{
			{Name: "target", Type: step.TypeString, Required: true, Doc: "name of a target under notifications.targets in Salve's config", Sink: step.SinkName},
			{Name: "text", Type: step.TypeString, Required: true, Doc: "the message; Slack markup is passed through"},
			{Name: "title", Type: step.TypeString, Doc: "a title, shown in bold above the text"},
		}},
		Executor: executor{n: n},
	}
}

type executor struct{ n *Notifier }

type stepParams struct{ target, text, title string }

func parseParams(p map[string]any) (stepParams, error) {
	var out stepParams
	var err error
	if out.target, err = step.String(p["target"]); err != nil || out.target == "" {
		return out, fmt.Errorf("%w: target: required, the name of a target under notifications.targets", step.ErrInvalidParams)
	}
	if out.text, err = step.String(p["text"]); err != nil || strings.TrimSpace(out.text) == "" {
		return out, fmt.Errorf("%w: text: required, the message to send", step.ErrInvalidParams)
	}
	if v, ok := p["title"]; ok {
		if out.title, err = step.String(v); err != nil {
			return out, fmt.Errorf("%w: title: %v", step.ErrInvalidParams, err)
		}
	}
	return out, nil
}

// DryRunPrefix starts every message a dry-run plan sends.
const DryRunPrefix = "[dry run: nothing was changed] "

// Execute sends the message once. Retries are Temporal's job; a webhook
// target gets an Idempotency-Key header to recognise a retried attempt.
func (e executor) Execute(ctx context.Context, req step.Request) (step.Result, error) {
	n := e.n
	if n == nil || len(n.targets) == 0 {
		return step.Result{}, errNotConfigured
	}
	p, err := parseParams(req.Params)
	if err != nil {
		return step.Result{}, err
	}
	t, ok := n.targets[p.target]
	if !ok {
		return step.Result{}, fmt.Errorf("%w: target: unknown target %q%s (known: %s)", step.ErrInvalidParams, p.target, didYouMean(p.target, n.names), known(n.names))
	}
	if req.DryRun {
		// A dry-run plan still tells people, but must not read as if
		// something was done: earlier steps did not act, and their
		// outputs in the text are empty.
		p.text = DryRunPrefix + p.text
	}
	link := n.link(req.WorkflowID)
	var msg any
	switch t.kind {
	case KindSlack:
		lines := []string{}
		if p.title != "" {
			lines = append(lines, "*"+p.title+"*")
		}
		lines = append(lines, p.text)
		if link != "" {
			lines = append(lines, "<"+link+"|open run>")
		}
		msg = slackMessage{Text: strings.Join(lines, "\n")}
	default:
		msg = stepPayload{Title: p.title, Text: p.text, Runbook: req.Runbook, WorkflowID: req.WorkflowID, RunID: req.RunID, Step: req.Step, Link: link}
	}
	key := req.IdempotencyKey
	if key == "" {
		key = req.WorkflowID + "/" + req.RunID + "/" + req.Step
	}
	status, err := n.send(ctx, t, msg, key)
	if err != nil {
		return step.Result{}, err
	}
	return step.Result{Output: map[string]any{"target": t.name, "status": status}}, nil
}

// slackMessage is a Slack-compatible incoming-webhook message.
type slackMessage struct {
	Text string `json:"text"`
}

// stepPayload is what the notify step sends a webhook target.
type stepPayload struct {
	Title      string `json:"title"`
	Text       string `json:"text"`
	Runbook    string `json:"runbook"`
	WorkflowID string `json:"workflowId"`
	RunID      string `json:"runId"`
	Step       string `json:"step"`
	Link       string `json:"link"`
}

// hookPayload is what a hook sends a webhook target: the event, a link to
// the run and the one-line text a chat message would carry.
type hookPayload struct {
	step.HookEvent
	Link string `json:"link"`
	Text string `json:"text"`
}

// Hook is the activity registered as step.HookActivity: it sends ev to
// every target of every hook whose events and runbooks match, once per
// target even when several hooks name it, concurrently, so that one slow
// or failing target neither delays nor stops the others. It returns the
// failures joined; the error matches step.ErrPermanent only when every
// failure is permanent (one retryable failure makes a retry worth it).
//
// Not idempotent across attempts: when Temporal retries the activity after
// a failure, targets that already got the message get it again. Within one
// call each target gets at most one request. Webhook targets get an
// Idempotency-Key header (workflowID/runID/event[/step]) to deduplicate.
func (n *Notifier) Hook(ctx context.Context, ev step.HookEvent) error {
	if n == nil || len(n.hooks) == 0 {
		return nil
	}
	var names []string
	for _, h := range n.hooks {
		if h.matches(ev) && !slices.Contains(names, h.Target) {
			names = append(names, h.Target)
		}
	}
	if len(names) == 0 {
		return nil
	}
	link := n.link(ev.WorkflowID)
	key := ev.WorkflowID + "/" + ev.RunID + "/" + ev.Event
	if ev.Step != "" {
		key += "/" + ev.Step
	}
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		t := n.targets[name]
		wg.Go(func() {
			var msg any
			switch t.kind {
			case KindSlack:
				msg = slackMessage{Text: describe(ev, link, true)}
			default:
				msg = hookPayload{HookEvent: ev, Link: link, Text: describe(ev, link, false)}
			}
			if _, err := n.send(ctx, t, msg, key); err != nil {
				errs[i] = fmt.Errorf("hook event %s: %w", ev.Event, err)
			}
		})
	}
	wg.Wait()
	var failed []error
	allPermanent := true
	for _, err := range errs {
		if err != nil {
			failed = append(failed, err)
			allPermanent = allPermanent && errors.Is(err, step.ErrPermanent)
		}
	}
	if !allPermanent {
		for i, err := range failed {
			if errors.Is(err, step.ErrPermanent) {
				failed[i] = errors.New(err.Error())
			}
		}
	}
	return errors.Join(failed...)
}

// HookEvents lists the run-level events some hook wants for runbook, in
// step.HookEvents order: a run schedules no hook activity for the others.
func (n *Notifier) HookEvents(runbook string) []string {
	if n == nil {
		return nil
	}
	var out []string
	for _, e := range step.HookEvents {
		for _, h := range n.hooks {
			if h.matches(step.HookEvent{Event: e, Runbook: runbook}) {
				out = append(out, e)
				break
			}
		}
	}
	return out
}

func (h Hook) matches(ev step.HookEvent) bool {
	return (len(h.Events) == 0 || slices.Contains(h.Events, ev.Event)) &&
		(len(h.Runbooks) == 0 || slices.Contains(h.Runbooks, ev.Runbook))
}

// link is the run's page, or "" without a public URL or workflow ID.
func (n *Notifier) link(workflowID string) string {
	if n.publicURL == "" || workflowID == "" {
		return ""
	}
	return n.publicURL + "/v1/runs/" + url.PathEscape(workflowID)
}

var slackEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// describe is the one-line text of a run-level event: Slack markup with an
// emoji and a link for chat, plain text for webhooks (which carry the
// link in a field of its own).
func describe(ev step.HookEvent, link string, slack bool) string {
	esc := func(s string) string { return s }
	code := esc
	if slack {
		esc = slackEscaper.Replace
		code = func(s string) string { return "`" + slackEscaper.Replace(s) + "`" }
	}
	rb := esc(ev.Runbook)
	if rb == "" {
		rb = "a run"
	}
	by := ""
	if ev.Actor != "" {
		by = " by " + esc(ev.Actor)
	}
	stepPart := func(prefix string) string {
		if ev.Step == "" {
			return ""
		}
		return prefix + "step " + code(ev.Step)
	}
	var emoji, s string
	switch ev.Event {
	case step.HookStarted:
		emoji, s = ":arrow_forward:", rb+" started"+by
	case step.HookApprovalNeeded:
		emoji, s = ":warning:", rb+" needs approval"+stepPart(" before ")
	case step.HookApprovalTimedOut:
		emoji, s = ":hourglass:", rb+": approval"+stepPart(" for ")+" timed out"
	case step.HookSucceeded:
		emoji, s = ":white_check_mark:", rb+" succeeded"
	case step.HookFailed:
		emoji, s = ":x:", rb+" failed"
		if ev.Error != "" {
			s += ": " + esc(truncate(ev.Error, maxRunError))
		}
	case step.HookCancelled:
		emoji, s = ":no_entry_sign:", rb+" was cancelled"+by
	case step.HookRejected:
		emoji = ":no_entry:"
		if ev.Step != "" {
			s = rb + ": " + stepPart("") + " was rejected" + by
		} else {
			s = rb + " was rejected" + by
		}
		if ev.Error != "" {
			s += ": " + esc(truncate(ev.Error, maxRunError))
		}
	default:
		what := ev.Summary
		if what == "" {
			what = ev.Event
		}
		emoji, s = ":information_source:", rb+": "+esc(what)
	}
	if ev.IncidentKey != "" {
		s += " — incident " + esc(ev.IncidentKey)
	}
	if !slack {
		return s
	}
	s = emoji + " " + s
	if link != "" {
		s += " — <" + link + "|open run>"
	}
	return s
}

// truncate cuts s to at most n bytes on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// send POSTs one JSON message to a target and maps the answer to retry
// semantics: 2xx is success; 3xx (redirects are not followed) and 4xx
// other than 408 and 429 are permanent; the rest, and transport errors,
// are retryable. Errors name the target, never its URL.
func (n *Notifier) send(ctx context.Context, t target, msg any, idempotencyKey string) (int, error) {
	body, err := json.Marshal(msg)
	if err != nil {
		return 0, fmt.Errorf("%w: target %q: encode message: %v", step.ErrPermanent, t.name, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("%w: target %q: build request: %v", step.ErrPermanent, t.name, t.redact(cause(err)))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "salve")
	for k, v := range t.headers {
		req.Header.Set(k, v)
	}
	if t.kind == KindWebhook && idempotencyKey != "" {
		req.Header.Set("Idempotency-Key", idempotencyKey)
	}
	resp, err := n.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("target %q: %w", t.name, t.redact(cause(err)))
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	code := resp.StatusCode
	if code >= 200 && code < 300 {
		return code, nil
	}
	msgText := fmt.Sprintf("target %q answered %d %s", t.name, code, http.StatusText(code))
	// Scrub before cutting, so a cut cannot leave half a secret behind.
	if s := snippet(t.scrub(string(b))); s != "" {
		msgText += ": " + s
	}
	switch {
	case code >= 300 && code < 400:
		return code, fmt.Errorf("%w: %s (redirects are not followed: configure the final URL)", step.ErrPermanent, msgText)
	case step.PermanentStatus(code):
		// The same message to the same URL will get the same answer.
		return code, fmt.Errorf("%w: %s", step.ErrPermanent, msgText)
	default:
		return code, errors.New(msgText)
	}
}

// cause drops *url.Error's wrapping, which repeats the full URL.
func cause(err error) error {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		return uerr.Err
	}
	return err
}

// redact returns err, or a copy of its text with the target's secrets
// scrubbed if the text held one (the copy does not unwrap, so the
// original text cannot be reached).
func (t target) redact(err error) error {
	if msg := err.Error(); t.scrub(msg) != msg {
		return errors.New(t.scrub(msg))
	}
	return err
}

func (t target) scrub(s string) string {
	for _, secret := range t.secrets {
		s = strings.ReplaceAll(s, secret, redacted)
	}
	return s
}

// snippet is the start of an error response on one line, if it reads as a
// short message (Slack answers "invalid_token", "no_service", ...) rather
// than an HTML page.
func snippet(body string) string {
	s := strings.Join(strings.Fields(body), " ")
	if s == "" || strings.HasPrefix(s, "<") || !utf8.ValidString(s) {
		return ""
	}
	return truncate(s, maxSnippet)
}
