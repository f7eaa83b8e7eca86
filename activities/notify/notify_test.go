package notify_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/salve-sre/salve/activities/notify"
	"github.com/salve-sre/salve/activities/step"
)

// secret is part of every target URL the tests use: no error, output or
// printed config may contain it.
const (
	secret     = "s3cr3t-token-42"
	secretPath = "/services/T0000/B0000/" + secret
)

// received is one request a receiver got.
type received struct {
	path   string
	header http.Header
	body   []byte
}

// receiver is a real HTTP server on a loopback port that records what it
// receives and answers with the status and body the test sets.
type receiver struct {
	*httptest.Server
	mu      sync.Mutex
	got     []received
	status  int
	reply   string
	headers map[string]string
}

func newReceiver(t *testing.T, status int) *receiver {
	t.Helper()
	r := &receiver{status: status}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.got = append(r.got, received{path: req.URL.RequestURI(), header: req.Header.Clone(), body: b})
		status, reply := r.status, r.reply
		for k, v := range r.headers {
			w.Header().Set(k, v)
		}
		r.mu.Unlock()
		w.WriteHeader(status)
		_, _ = io.WriteString(w, reply)
	}))
	t.Cleanup(r.Close)
	return r
}

// url is the receiver's URL with the secret path.
func (r *receiver) url() string { return r.URL + secretPath }

func (r *receiver) requests() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// only returns the single request the receiver got, decoded.
func (r *receiver) only(t *testing.T) (received, map[string]any) {
	t.Helper()
	reqs := r.requests()
	require.Len(t, reqs, 1)
	var m map[string]any
	require.NoError(t, json.Unmarshal(reqs[0].body, &m), "body: %s", reqs[0].body)
	return reqs[0], m
}

func newNotifier(t *testing.T, cfg notify.Config) *notify.Notifier {
	t.Helper()
	n, err := notify.New(cfg, nil)
	require.NoError(t, err)
	return n
}

var baseRequest = step.Request{
	WorkflowID:     "salve/restart/abc",
	RunID:          "run-1",
	Runbook:        "restart",
	Step:           "tell",
	Kind:           notify.Kind,
	IdempotencyKey: "salve/restart/abc/run-1/tell",
}

func execute(t *testing.T, n *notify.Notifier, params map[string]any) (step.Result, error) {
	t.Helper()
	req := baseRequest
	req.Params = params
	return n.Spec().Executor.Execute(context.Background(), req)
}

func requireNoSecret(t *testing.T, text string) {
	t.Helper()
	require.NotContains(t, text, secret)
	require.NotContains(t, text, "T0000/B0000")
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
	return p
}

func TestNewRejectsBadConfig(t *testing.T) {
	dir := t.TempDir()
	good := "https://hooks.example.com" + secretPath
	empty := writeFile(t, dir, "empty", "\n  \n")
	ftp := writeFile(t, dir, "ftp", "ftp://hooks.example.com"+secretPath+"\n")
	missing := filepath.Join(dir, "missing")
	ops := func(tg notify.Target) map[string]notify.Target { return map[string]notify.Target{"ops": tg} }
	okTargets := ops(notify.Target{Kind: "slack", URL: good})
	allEvents := "started, approval_needed, approval_timed_out, succeeded, failed, cancelled, rejected"

	for _, tc := range []struct {
		name string
		cfg  notify.Config
		want string
	}{
		{
			name: "unknown kind",
			cfg:  notify.Config{Targets: ops(notify.Target{Kind: "slak", URL: good})},
			want: `targets.ops.kind: unknown kind "slak" (did you mean "slack"?) (known: slack, webhook)`,
		},
		{
			name: "missing kind",
			cfg:  notify.Config{Targets: ops(notify.Target{URL: good})},
			want: `targets.ops.kind: required (known: slack, webhook)`,
		},
		{
			name: "url and urlFile both set",
			cfg:  notify.Config{Targets: ops(notify.Target{Kind: "slack", URL: good, URLFile: ftp})},
			want: `targets.ops: set url or urlFile, not both`,
		},
		{
			name: "neither url nor urlFile",
			cfg:  notify.Config{Targets: ops(notify.Target{Kind: "webhook"})},
			want: `targets.ops: url or urlFile is required (prefer urlFile: a webhook URL is a secret)`,
		},
		{
			name: "unreadable urlFile",
			cfg:  notify.Config{Targets: ops(notify.Target{Kind: "slack", URLFile: missing})},
			want: `targets.ops.urlFile: open ` + missing + `: no such file or directory`,
		},
		{
			name: "empty urlFile",
			cfg:  notify.Config{Targets: ops(notify.Target{Kind: "slack", URLFile: empty})},
			want: `targets.ops.urlFile: "` + empty + `" is empty: write the webhook URL in it`,
		},
		{
			name: "url not http(s)",
			cfg:  notify.Config{Targets: ops(notify.Target{Kind: "slack", URL: "ftp://hooks.example.com" + secretPath})},
			want: `targets.ops.url: must start with http:// or https://`,
		},
		{
			name: "urlFile holding a URL that is not http(s)",
			cfg:  notify.Config{Targets: ops(notify.Target{Kind: "slack", URLFile: ftp})},
			want: `targets.ops.urlFile: the URL in "` + ftp + `" must start with http:// or https://`,
		},
		{
			name: "url without host",
			cfg:  notify.Config{Targets: ops(notify.Target{Kind: "webhook", URL: "https://" + secretPath})},
			want: `targets.ops.url: has no host`,
		},
		{
			name: "url that does not parse",
			cfg:  notify.Config{Targets: ops(notify.Target{Kind: "webhook", URL: "https://hooks.example.com/\x7f" + secret})},
			want: `targets.ops.url: is not a valid URL (look for spaces, stray characters or a bad port or escape)`,
		},
		{
			name: "bad header name",
			cfg:  notify.Config{Targets: ops(notify.Target{Kind: "webhook", URL: good, Headers: map[string]string{"X Token": "v"}})},
			want: `targets.ops.headers: "X Token" is not a valid header name`,
		},
		{
			name: "header value with a line break (never quoted: it may be a secret)",
			cfg:  notify.Config{Targets: ops(notify.Target{Kind: "webhook", URL: good, Headers: map[string]string{"X-Token": secret + "\r\nX-Evil: 1"}})},
			want: `targets.ops.headers.X-Token: the value contains a line break or NUL`,
		},
		{
			name: "target with an empty name",
			cfg:  notify.Config{Targets: map[string]notify.Target{"": {Kind: "slack", URL: good}}},
			want: `targets: a target has an empty name`,
		},
		{
			name: "publicURL not http(s)",
			cfg:  notify.Config{PublicURL: "salve.example.com", Targets: okTargets},
			want: `publicURL: must start with http:// or https://, e.g. https://salve.example.com`,
		},
		{
			name: "hook naming an unknown target",
			cfg:  notify.Config{Targets: okTargets, Hooks: []notify.Hook{{Target: "opz"}}},
			want: `hooks[0].target: unknown target "opz" (did you mean "ops"?) (known: ops)`,
		},
		{
			name: "hook without targets configured",
			cfg:  notify.Config{Hooks: []notify.Hook{{Target: "ops"}}},
			want: `hooks[0].target: unknown target "ops" (known: none)`,
		},
		{
			name: "hook without a target",
			cfg:  notify.Config{Targets: okTargets, Hooks: []notify.Hook{{Events: []string{"failed"}}}},
			want: `hooks[0].target: required, the name of a target (known: ops)`,
		},
		{
			name: "hook with an unknown event",
			cfg:  notify.Config{Targets: okTargets, Hooks: []notify.Hook{{Target: "ops", Events: []string{"failed", "aproval_needed"}}}},
			want: `hooks[0].events[1]: unknown event "aproval_needed" (did you mean "approval_needed"?) (known: ` + allEvents + `)`,
		},
		{
			name: "hook with an unknown event and no near miss",
			cfg:  notify.Config{Targets: okTargets, Hooks: []notify.Hook{{Target: "ops", Events: []string{"exploded"}}}},
			want: `hooks[0].events[0]: unknown event "exploded" (known: ` + allEvents + `)`,
		},
		{
			name: "hook with an empty runbook name",
			cfg:  notify.Config{Targets: okTargets, Hooks: []notify.Hook{{Target: "ops", Runbooks: []string{""}}}},
			want: `hooks[0].runbooks[0]: empty runbook name (leave runbooks out to match every runbook)`,
		},
		{
			name: "every problem is reported, targets in name order",
			cfg: notify.Config{
				Targets: map[string]notify.Target{
					"zulu":  {Kind: "webhook"},
					"alpha": {Kind: "email", URL: good},
				},
				Hooks: []notify.Hook{{Target: "zulu"}, {Target: "bravo", Events: []string{"done"}}},
			},
			want: strings.Join([]string{
				`targets.alpha.kind: unknown kind "email" (known: slack, webhook)`,
				`targets.zulu: url or urlFile is required (prefer urlFile: a webhook URL is a secret)`,
				`hooks[1].target: unknown target "bravo" (known: alpha, zulu)`,
				`hooks[1].events[0]: unknown event "done" (known: ` + allEvents + `)`,
			}, "\n"),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := notify.New(tc.cfg, nil)
			require.Error(t, err)
			require.Nil(t, n)
			require.Equal(t, tc.want, err.Error())
			requireNoSecret(t, err.Error())
		})
	}
}

func TestNewAcceptsGoodConfig(t *testing.T) {
	chat := newReceiver(t, http.StatusOK)
	hook := newReceiver(t, http.StatusOK)
	// The URL file may end in a newline or be indented: it is trimmed.
	file := writeFile(t, t.TempDir(), "url", "  "+chat.url()+"\n\n")
	n := newNotifier(t, notify.Config{
		PublicURL: "https://salve.example.com/",
		Targets: map[string]notify.Target{
			"chat":  {Kind: "slack", URLFile: file},
			"hooks": {Kind: "webhook", URL: hook.url(), Headers: map[string]string{"Authorization": "Bearer x"}},
		},
		Hooks: []notify.Hook{{Target: "chat", Events: step.HookEvents, Runbooks: []string{"restart"}}, {Target: "hooks"}},
	})
	_, err := execute(t, n, map[string]any{"target": "chat", "text": "hi"})
	require.NoError(t, err)
	got, _ := chat.only(t)
	require.Equal(t, secretPath, got.path, "the URL from the file, trimmed")
}

func TestSpec(t *testing.T) {
	for _, n := range []*notify.Notifier{nil, newNotifier(t, notify.Config{})} {
		s := n.Spec()
		require.Equal(t, "notify", s.Kind)
		require.False(t, s.Mutating, "only sends a message: runs in dry-run mode")
		require.Empty(t, s.Credential)
		require.NotNil(t, s.Executor)
		require.NotEmpty(t, s.Summary)
		for name, required := range map[string]bool{"target": true, "text": true, "title": false} {
			p, ok := s.Params.Lookup(name)
			require.True(t, ok, name)
			require.Equal(t, step.TypeString, p.Type, name)
			require.Equal(t, required, p.Required, name)
		}
		require.Empty(t, s.Params.Validate(map[string]any{"target": "chat", "text": "{{ .Params.x }}", "title": "t"}))
		require.Len(t, s.Params.Validate(map[string]any{"target": "chat"}), 1)
		require.NoError(t, step.NewRegistry().Register(s))
	}
}

func TestStepWithoutConfigFailsPermanently(t *testing.T) {
	for name, n := range map[string]*notify.Notifier{
		"nil notifier": nil,
		"no targets":   newNotifier(t, notify.Config{PublicURL: "https://salve.example.com"}),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := execute(t, n, map[string]any{"target": "chat", "text": "hi"})
			require.ErrorIs(t, err, step.ErrPermanent)
			require.Contains(t, err.Error(), "notifications are not configured")
			require.Contains(t, err.Error(), "notifications.targets", "says which config key to set")
		})
	}
}

func TestSlackStepMessage(t *testing.T) {
	for _, tc := range []struct {
		name      string
		publicURL string
		params    map[string]any
		want      string
	}{
		{
			name:      "title, text and a link to the run",
			publicURL: "https://salve.example.com/",
			params:    map[string]any{"target": "chat", "title": "Restarted api", "text": "Pods are back: <!here>"},
			want:      "*Restarted api*\nPods are back: <!here>\n<https://salve.example.com/v1/runs/salve%2Frestart%2Fabc|open run>",
		},
		{
			name:      "no title",
			publicURL: "https://salve.example.com/base",
			params:    map[string]any{"target": "chat", "text": "done"},
			want:      "done\n<https://salve.example.com/base/v1/runs/salve%2Frestart%2Fabc|open run>",
		},
		{
			name:   "no public URL, no link",
			params: map[string]any{"target": "chat", "text": 42},
			want:   "42",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			chat := newReceiver(t, http.StatusOK)
			n := newNotifier(t, notify.Config{PublicURL: tc.publicURL, Targets: map[string]notify.Target{"chat": {Kind: "slack", URL: chat.url()}}})
			res, err := execute(t, n, tc.params)
			require.NoError(t, err)
			require.Equal(t, map[string]any{"target": "chat", "status": 200}, res.Output)
			got, body := chat.only(t)
			require.Equal(t, map[string]any{"text": tc.want}, body)
			require.Equal(t, secretPath, got.path)
			require.Equal(t, "application/json", got.header.Get("Content-Type"))
			require.Empty(t, got.header.Get("Idempotency-Key"), "only webhook targets get one")
		})
	}
}

func TestWebhookStepMessage(t *testing.T) {
	hook := newReceiver(t, http.StatusAccepted)
	n := newNotifier(t, notify.Config{
		PublicURL: "https://salve.example.com",
		Targets: map[string]notify.Target{"hook": {
			Kind: "webhook", URL: hook.url(),
			Headers: map[string]string{"Authorization": "Bearer abc", "X-Team": "sre"},
		}},
	})
	res, err := execute(t, n, map[string]any{"target": "hook", "title": "T", "text": "body"})
	require.NoError(t, err)
	require.Equal(t, map[string]any{"target": "hook", "status": http.StatusAccepted}, res.Output)
	got, body := hook.only(t)
	require.Equal(t, map[string]any{
		"title":      "T",
		"text":       "body",
		"runbook":    "restart",
		"workflowId": "salve/restart/abc",
		"runId":      "run-1",
		"step":       "tell",
		"link":       "https://salve.example.com/v1/runs/salve%2Frestart%2Fabc",
	}, body)
	require.Equal(t, "Bearer abc", got.header.Get("Authorization"))
	require.Equal(t, "sre", got.header.Get("X-Team"))
	require.Equal(t, "application/json", got.header.Get("Content-Type"))
	require.Equal(t, "salve", got.header.Get("User-Agent"))
	require.Equal(t, baseRequest.IdempotencyKey, got.header.Get("Idempotency-Key"))

	// A read-only step may come without an idempotency key: one is made
	// from the run and step, the same for every attempt.
	req := baseRequest
	req.IdempotencyKey = ""
	req.Params = map[string]any{"target": "hook", "text": "again"}
	_, err = n.Spec().Executor.Execute(context.Background(), req)
	require.NoError(t, err)
	reqs := hook.requests()
	require.Len(t, reqs, 2)
	require.Equal(t, "salve/restart/abc/run-1/tell", reqs[1].header.Get("Idempotency-Key"))
}

// The link must open the run in Salve's API, whose route is
// "GET /v1/runs/{id...}", even though workflow IDs contain slashes.
func TestLinkOpensTheRun(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/runs/{id...}", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.PathValue("id"))
	})
	api := httptest.NewServer(mux)
	t.Cleanup(api.Close)
	hook := newReceiver(t, http.StatusOK)
	n := newNotifier(t, notify.Config{PublicURL: api.URL, Targets: map[string]notify.Target{"hook": {Kind: "webhook", URL: hook.url()}}})
	for i, id := range []string{"salve/restart-crashlooping/shop/api/1700000000", "manual/a b?c#d%e", "plain"} {
		req := baseRequest
		req.WorkflowID = id
		req.Params = map[string]any{"target": "hook", "text": "x"}
		_, err := n.Spec().Executor.Execute(context.Background(), req)
		require.NoError(t, err)
		var body struct{ Link string }
		require.NoError(t, json.Unmarshal(hook.requests()[i].body, &body))
		resp, err := http.Get(body.Link)
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode, body.Link)
		require.Equal(t, id, string(b), body.Link)
	}
}

func TestStepParamErrors(t *testing.T) {
	chat := newReceiver(t, http.StatusOK)
	n := newNotifier(t, notify.Config{Targets: map[string]notify.Target{
		"chat": {Kind: "slack", URL: chat.url()},
		"ops":  {Kind: "slack", URL: chat.url()},
	}})
	for _, tc := range []struct {
		name   string
		params map[string]any
		want   string
	}{
		{"missing target", map[string]any{"text": "x"}, "target: required"},
		{"unknown target", map[string]any{"target": "chta", "text": "x"}, `target: unknown target "chta" (did you mean "chat"?) (known: chat, ops)`},
		{"unknown target, no near miss", map[string]any{"target": "pagerduty", "text": "x"}, `target: unknown target "pagerduty" (known: chat, ops)`},
		{"missing text", map[string]any{"target": "chat"}, "text: required"},
		{"blank text", map[string]any{"target": "chat", "text": "  \n"}, "text: required"},
		{"title not a string", map[string]any{"target": "chat", "text": "x", "title": []any{"a"}}, "title: want a string"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := execute(t, n, tc.params)
			require.ErrorIs(t, err, step.ErrInvalidParams)
			require.Contains(t, err.Error(), tc.want)
		})
	}
	require.Empty(t, chat.requests(), "nothing is sent on a parameter error")
}

func TestStepErrorMapping(t *testing.T) {
	for _, tc := range []struct {
		status    int
		reply     string
		permanent bool
		want      string
	}{
		{status: 400, reply: "invalid_payload", permanent: true, want: `target "chat" answered 400 Bad Request: invalid_payload`},
		{status: 401, permanent: true, want: `target "chat" answered 401 Unauthorized`},
		{status: 403, reply: "invalid_token\n", permanent: true, want: `target "chat" answered 403 Forbidden: invalid_token`},
		{status: 404, reply: "no_service", permanent: true, want: `target "chat" answered 404 Not Found: no_service`},
		{status: 410, reply: "channel_is_archived", permanent: true, want: `target "chat" answered 410 Gone: channel_is_archived`},
		{status: 408, want: `target "chat" answered 408 Request Timeout`},
		{status: 429, reply: "rate_limited", want: `target "chat" answered 429 Too Many Requests: rate_limited`},
		{status: 500, reply: "rollup_error", want: `target "chat" answered 500 Internal Server Error: rollup_error`},
		{status: 502, reply: "<html><body>Bad Gateway</body></html>", want: `target "chat" answered 502 Bad Gateway`},
		{status: 503, reply: "try later", want: `target "chat" answered 503 Service Unavailable: try later`},
	} {
		t.Run(fmt.Sprint(tc.status), func(t *testing.T) {
			chat := newReceiver(t, tc.status)
			chat.reply = tc.reply
			n := newNotifier(t, notify.Config{Targets: map[string]notify.Target{"chat": {Kind: "slack", URL: chat.url()}}})
			res, err := execute(t, n, map[string]any{"target": "chat", "text": "x"})
			require.Error(t, err)
			require.Empty(t, res.Output)
			require.Equal(t, tc.permanent, errors.Is(err, step.ErrPermanent), err.Error())
			require.NotErrorIs(t, err, step.ErrInvalidParams)
			require.Contains(t, err.Error(), tc.want)
			if !strings.Contains(tc.reply, "<") {
				require.True(t, strings.HasSuffix(err.Error(), tc.want), "the whole snippet, nothing after: %s", err)
			} else {
				require.NotContains(t, err.Error(), "html", "HTML pages are not quoted")
			}
			requireNoSecret(t, err.Error())
			require.Len(t, chat.requests(), 1, "one request per attempt: retries are Temporal's job")
		})
	}
}

func TestRedirectsAreNotFollowed(t *testing.T) {
	elsewhere := newReceiver(t, http.StatusOK)
	chat := newReceiver(t, http.StatusTemporaryRedirect)
	chat.headers = map[string]string{"Location": elsewhere.URL + "/stolen"}
	n := newNotifier(t, notify.Config{Targets: map[string]notify.Target{"chat": {
		Kind: "webhook", URL: chat.url(), Headers: map[string]string{"Authorization": "Bearer " + secret},
	}}})
	_, err := execute(t, n, map[string]any{"target": "chat", "text": "x"})
	require.ErrorIs(t, err, step.ErrPermanent)
	require.Contains(t, err.Error(), `target "chat" answered 307 Temporary Redirect (redirects are not followed: configure the final URL)`)
	require.Empty(t, elsewhere.requests(), "the headers never travel to another host")
	require.Len(t, chat.requests(), 1)
}

func TestNetworkErrorIsRetryable(t *testing.T) {
	chat := newReceiver(t, http.StatusOK)
	n := newNotifier(t, notify.Config{Targets: map[string]notify.Target{"chat": {Kind: "slack", URL: chat.url() + "?token=" + secret}}})
	chat.Close()
	_, err := execute(t, n, map[string]any{"target": "chat", "text": "x"})
	require.Error(t, err)
	require.NotErrorIs(t, err, step.ErrPermanent)
	require.Contains(t, err.Error(), `target "chat": `)
	require.Contains(t, err.Error(), "connection refused")
	requireNoSecret(t, err.Error())
}

func TestResponseBodyIsBounded(t *testing.T) {
	chat := newReceiver(t, http.StatusInternalServerError)
	chat.reply = strings.Repeat("overloaded ", 1<<20)
	n := newNotifier(t, notify.Config{Targets: map[string]notify.Target{"chat": {Kind: "slack", URL: chat.url()}}})
	_, err := execute(t, n, map[string]any{"target": "chat", "text": "x"})
	require.Error(t, err)
	require.Contains(t, err.Error(), "500 Internal Server Error: overloaded overloaded")
	require.Less(t, len(err.Error()), 300, "errors go into history: the body is quoted briefly")
}

// slowServer answers nothing until the test ends or the client gives up;
// arrived gets a value when a request comes in.
func slowServer(t *testing.T) (url string, arrived <-chan struct{}) {
	t.Helper()
	got := make(chan struct{}, 10)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // runs first: lets the handler end
	return srv.URL + secretPath, got
}

func TestStepRespectsContext(t *testing.T) {
	url, arrived := slowServer(t)
	n := newNotifier(t, notify.Config{Targets: map[string]notify.Target{"chat": {Kind: "slack", URL: url}}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		req := baseRequest
		req.Params = map[string]any{"target": "chat", "text": "x"}
		_, err := n.Spec().Executor.Execute(ctx, req)
		done <- err
	}()
	<-arrived
	cancel()
	select {
	case err := <-done:
		require.ErrorIs(t, err, context.Canceled)
		require.NotErrorIs(t, err, step.ErrPermanent, "a cancelled attempt may be retried")
		require.Contains(t, err.Error(), `target "chat"`)
		requireNoSecret(t, err.Error())
	case <-time.After(10 * time.Second):
		t.Fatal("the step did not return after its context was cancelled")
	}
}

var hookEvent = step.HookEvent{
	Event:       step.HookApprovalNeeded,
	Time:        time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC),
	Runbook:     "restart-crashlooping",
	WorkflowID:  "salve/restart-crashlooping/ns/api",
	RunID:       "run-7",
	IncidentKey: "ns/api",
	Step:        "scale",
	State:       "waiting_approval",
	Summary:     "needs approval before step scale",
}

func TestHookSlackMessages(t *testing.T) {
	link := "<https://salve.example.com/v1/runs/salve%2Frestart-crashlooping%2Fns%2Fapi|open run>"
	ev := func(change func(*step.HookEvent)) step.HookEvent {
		e := hookEvent
		change(&e)
		return e
	}
	for _, tc := range []struct {
		name string
		ev   step.HookEvent
		want string
	}{
		{
			name: "approval needed",
			ev:   hookEvent,
			want: ":warning: restart-crashlooping needs approval before step `scale` — incident ns/api — " + link,
		},
		{
			name: "started by someone",
			ev:   ev(func(e *step.HookEvent) { e.Event, e.Step, e.Actor = step.HookStarted, "", "alice" }),
			want: ":arrow_forward: restart-crashlooping started by alice — incident ns/api — " + link,
		},
		{
			name: "started by an alert",
			ev:   ev(func(e *step.HookEvent) { e.Event, e.Step = step.HookStarted, "" }),
			want: ":arrow_forward: restart-crashlooping started — incident ns/api — " + link,
		},
		{
			name: "approval timed out",
			ev:   ev(func(e *step.HookEvent) { e.Event = step.HookApprovalTimedOut }),
			want: ":hourglass: restart-crashlooping: approval for step `scale` timed out — incident ns/api — " + link,
		},
		{
			name: "succeeded",
			ev:   ev(func(e *step.HookEvent) { e.Event, e.Step = step.HookSucceeded, "" }),
			want: ":white_check_mark: restart-crashlooping succeeded — incident ns/api — " + link,
		},
		{
			name: "failed, with the error escaped for Slack",
			ev:   ev(func(e *step.HookEvent) { e.Event, e.Error = step.HookFailed, "step scale: <oom> & more" }),
			want: ":x: restart-crashlooping failed: step scale: &lt;oom&gt; &amp; more — incident ns/api — " + link,
		},
		{
			name: "cancelled",
			ev:   ev(func(e *step.HookEvent) { e.Event, e.Step, e.Actor = step.HookCancelled, "", "bob" }),
			want: ":no_entry_sign: restart-crashlooping was cancelled by bob — incident ns/api — " + link,
		},
		{
			name: "rejected, with actor and reason",
			ev:   ev(func(e *step.HookEvent) { e.Event, e.Actor, e.Error = step.HookRejected, "carol", "not during the sale" }),
			want: ":no_entry: restart-crashlooping: step `scale` was rejected by carol: not during the sale — incident ns/api — " + link,
		},
		{
			name: "an event this build does not know falls back to the summary",
			ev:   ev(func(e *step.HookEvent) { e.Event, e.Summary = "paused", "paused by policy" }),
			want: ":information_source: restart-crashlooping: paused by policy — incident ns/api — " + link,
		},
		{
			name: "no incident key, no workflow ID: no incident part, no link",
			ev:   ev(func(e *step.HookEvent) { e.Event, e.Step, e.IncidentKey, e.WorkflowID = step.HookSucceeded, "", "", "" }),
			want: ":white_check_mark: restart-crashlooping succeeded",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			chat := newReceiver(t, http.StatusOK)
			n := newNotifier(t, notify.Config{
				PublicURL: "https://salve.example.com",
				Targets:   map[string]notify.Target{"chat": {Kind: "slack", URL: chat.url()}},
				Hooks:     []notify.Hook{{Target: "chat"}},
			})
			require.NoError(t, n.Hook(context.Background(), tc.ev))
			_, body := chat.only(t)
			require.Equal(t, map[string]any{"text": tc.want}, body)
		})
	}
}

func TestHookFailedErrorIsTruncated(t *testing.T) {
	chat := newReceiver(t, http.StatusOK)
	n := newNotifier(t, notify.Config{
		Targets: map[string]notify.Target{"chat": {Kind: "slack", URL: chat.url()}},
		Hooks:   []notify.Hook{{Target: "chat"}},
	})
	ev := hookEvent
	ev.Event, ev.Error = step.HookFailed, strings.Repeat("é", 5000)
	require.NoError(t, n.Hook(context.Background(), ev))
	_, body := chat.only(t)
	text := body["text"].(string)
	require.Less(t, len(text), 1200)
	require.Contains(t, text, "é…")
}

func TestHookWebhookPayload(t *testing.T) {
	hook := newReceiver(t, http.StatusNoContent)
	n := newNotifier(t, notify.Config{
		PublicURL: "https://salve.example.com",
		Targets:   map[string]notify.Target{"hook": {Kind: "webhook", URL: hook.url(), Headers: map[string]string{"X-Team": "sre"}}},
		Hooks:     []notify.Hook{{Target: "hook"}},
	})
	ev := hookEvent
	ev.Actor = "alice"
	require.NoError(t, n.Hook(context.Background(), ev))
	got, body := hook.only(t)
	require.Equal(t, map[string]any{
		"event":       "approval_needed",
		"time":        "2025-03-01T12:00:00Z",
		"runbook":     "restart-crashlooping",
		"workflowId":  "salve/restart-crashlooping/ns/api",
		"runId":       "run-7",
		"incidentKey": "ns/api",
		"step":        "scale",
		"state":       "waiting_approval",
		"actor":       "alice",
		"summary":     "needs approval before step scale",
		"link":        "https://salve.example.com/v1/runs/salve%2Frestart-crashlooping%2Fns%2Fapi",
		"text":        "restart-crashlooping needs approval before step scale — incident ns/api",
	}, body)
	require.Equal(t, "sre", got.header.Get("X-Team"))
	require.Equal(t, "salve/restart-crashlooping/ns/api/run-7/approval_needed/scale", got.header.Get("Idempotency-Key"))
}

func TestHookFiltering(t *testing.T) {
	type hookCase struct {
		event, runbook string
		want           []string // targets that get the event
	}
	for _, tc := range []hookCase{
		{step.HookApprovalNeeded, "restart", []string{"all", "approvals", "restart"}},
		{step.HookApprovalNeeded, "rollback", []string{"all", "approvals"}},
		{step.HookApprovalTimedOut, "rollback", []string{"all", "approvals"}},
		{step.HookFailed, "restart", []string{"all", "restart", "restart-failures"}},
		{step.HookFailed, "rollback", []string{"all"}},
		{step.HookSucceeded, "restart", []string{"all", "restart"}},
		{step.HookStarted, "scale", []string{"all", "restart"}},
		{step.HookStarted, "other", []string{"all"}},
	} {
		t.Run(tc.event+"/"+tc.runbook, func(t *testing.T) {
			receivers := map[string]*receiver{}
			targets := map[string]notify.Target{}
			for _, name := range []string{"all", "approvals", "restart", "restart-failures", "unused"} {
				receivers[name] = newReceiver(t, http.StatusOK)
				targets[name] = notify.Target{Kind: "webhook", URL: receivers[name].url()}
			}
			n := newNotifier(t, notify.Config{Targets: targets, Hooks: []notify.Hook{
				{Target: "all"},
				{Target: "approvals", Events: []string{step.HookApprovalNeeded, step.HookApprovalTimedOut}},
				{Target: "restart", Runbooks: []string{"restart", "scale"}},
				{Target: "restart-failures", Events: []string{step.HookFailed}, Runbooks: []string{"restart"}},
				// Matches nothing these cases send.
				{Target: "unused", Events: []string{step.HookRejected}},
			}})
			ev := hookEvent
			ev.Event, ev.Runbook = tc.event, tc.runbook
			require.NoError(t, n.Hook(context.Background(), ev))
			var got []string
			for name, r := range receivers {
				reqs := r.requests()
				require.LessOrEqual(t, len(reqs), 1, name)
				if len(reqs) == 1 {
					got = append(got, name)
					var body step.HookEvent
					require.NoError(t, json.Unmarshal(reqs[0].body, &body))
					require.Equal(t, tc.event, body.Event)
					require.Equal(t, tc.runbook, body.Runbook)
				}
			}
			slices.Sort(got)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestHookSendsOncePerTarget(t *testing.T) {
	chat := newReceiver(t, http.StatusOK)
	n := newNotifier(t, notify.Config{
		Targets: map[string]notify.Target{"chat": {Kind: "slack", URL: chat.url()}},
		Hooks: []notify.Hook{
			{Target: "chat", Events: []string{step.HookApprovalNeeded}},
			{Target: "chat", Runbooks: []string{hookEvent.Runbook}},
			{Target: "chat"},
		},
	})
	require.NoError(t, n.Hook(context.Background(), hookEvent))
	require.Len(t, chat.requests(), 1)
}

func TestHookWithNothingToDo(t *testing.T) {
	var nilNotifier *notify.Notifier
	require.NoError(t, nilNotifier.Hook(context.Background(), hookEvent))

	chat := newReceiver(t, http.StatusOK)
	targets := map[string]notify.Target{"chat": {Kind: "slack", URL: chat.url()}}
	noHooks := newNotifier(t, notify.Config{Targets: targets})
	require.NoError(t, noHooks.Hook(context.Background(), hookEvent))
	noMatch := newNotifier(t, notify.Config{Targets: targets, Hooks: []notify.Hook{{Target: "chat", Events: []string{step.HookFailed}}}})
	require.NoError(t, noMatch.Hook(context.Background(), hookEvent))
	require.Empty(t, chat.requests())
	// The step still works without hooks.
	_, err := execute(t, noHooks, map[string]any{"target": "chat", "text": "x"})
	require.NoError(t, err)
}

func TestHookOneFailingTargetDoesNotStopOthers(t *testing.T) {
	ok1 := newReceiver(t, http.StatusOK)
	down := newReceiver(t, http.StatusServiceUnavailable)
	gone := newReceiver(t, http.StatusNotFound)
	gone.reply = "no_service"
	ok2 := newReceiver(t, http.StatusOK)
	n := newNotifier(t, notify.Config{
		Targets: map[string]notify.Target{
			"ok1":  {Kind: "slack", URL: ok1.url()},
			"down": {Kind: "webhook", URL: down.url()},
			"gone": {Kind: "slack", URL: gone.url()},
			"ok2":  {Kind: "webhook", URL: ok2.url()},
		},
		Hooks: []notify.Hook{{Target: "ok1"}, {Target: "down"}, {Target: "gone"}, {Target: "ok2"}},
	})
	err := n.Hook(context.Background(), hookEvent)
	require.Error(t, err)
	for name, r := range map[string]*receiver{"ok1": ok1, "down": down, "gone": gone, "ok2": ok2} {
		require.Len(t, r.requests(), 1, name)
	}
	require.Equal(t,
		`hook event approval_needed: target "down" answered 503 Service Unavailable`+"\n"+
			`hook event approval_needed: permanent step failure: target "gone" answered 404 Not Found: no_service`,
		err.Error(), "failures in hook order, every one named")
	require.NotErrorIs(t, err, step.ErrPermanent, "one retryable failure: worth retrying")
	requireNoSecret(t, err.Error())

	// Only permanent failures: a retry cannot help, and the error says so.
	n = newNotifier(t, notify.Config{
		Targets: map[string]notify.Target{"ok1": {Kind: "slack", URL: ok1.url()}, "gone": {Kind: "slack", URL: gone.url()}},
		Hooks:   []notify.Hook{{Target: "gone"}, {Target: "ok1"}},
	})
	err = n.Hook(context.Background(), hookEvent)
	require.ErrorIs(t, err, step.ErrPermanent)
	require.Len(t, ok1.requests(), 2)
}

// A target that hangs does not delay the others: they are sent to at the
// same time.
func TestHookSlowTargetDoesNotDelayOthers(t *testing.T) {
	slowURL, arrived := slowServer(t)
	fast := newReceiver(t, http.StatusOK)
	n := newNotifier(t, notify.Config{
		Targets: map[string]notify.Target{
			"slow": {Kind: "slack", URL: slowURL},
			"fast": {Kind: "slack", URL: fast.url()},
		},
		// The slow target comes first.
		Hooks: []notify.Hook{{Target: "slow"}, {Target: "fast"}},
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- n.Hook(ctx, hookEvent) }()
	<-arrived
	require.Eventually(t, func() bool { return len(fast.requests()) == 1 }, 10*time.Second, 5*time.Millisecond,
		"the fast target gets the message while the slow one is still answering")
	select {
	case err := <-done:
		t.Fatalf("Hook returned before the slow target answered: %v", err)
	default:
	}
	cancel()
	<-done
}

// Hook gives up when the activity's context ends.
func TestHookRespectsContext(t *testing.T) {
	slowURL, arrived := slowServer(t)
	n := newNotifier(t, notify.Config{
		Targets: map[string]notify.Target{"slow": {Kind: "webhook", URL: slowURL}},
		Hooks:   []notify.Hook{{Target: "slow"}},
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Hook(ctx, hookEvent) }()
	<-arrived
	cancel()
	select {
	case err := <-done:
		require.ErrorIs(t, err, context.Canceled)
		require.NotErrorIs(t, err, step.ErrPermanent)
		require.Contains(t, err.Error(), `hook event approval_needed: target "slow": `)
		requireNoSecret(t, err.Error())
	case <-time.After(10 * time.Second):
		t.Fatal("Hook did not return after its context was cancelled")
	}
}

// The URL and header values are secrets: whatever a target answers, they
// appear in no error, output or printed config.
func TestSecretsNeverLeak(t *testing.T) {
	headerSecret := "Bearer hdr-" + secret
	// The receiver echoes what it got, as some error pages do.
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, "bad request to %s from %s (auth %s)", r.URL.RequestURI(), r.Host, r.Header.Get("Authorization"))
	}))
	t.Cleanup(echo.Close)
	urlWithToken := echo.URL + secretPath + "?token=q-" + secret
	cfg := notify.Config{
		Targets: map[string]notify.Target{
			"echo": {Kind: "webhook", URL: urlWithToken, Headers: map[string]string{"Authorization": headerSecret}},
			"chat": {Kind: "slack", URL: echo.URL + secretPath},
		},
		Hooks: []notify.Hook{{Target: "echo"}, {Target: "chat"}},
	}
	n := newNotifier(t, cfg)

	var texts []string
	_, err := execute(t, n, map[string]any{"target": "echo", "text": "x"})
	require.ErrorIs(t, err, step.ErrPermanent)
	require.Contains(t, err.Error(), "bad request to <redacted>?<redacted> from 127.0.0.1:", "the body is quoted, scrubbed")
	texts = append(texts, err.Error())
	_, err = execute(t, n, map[string]any{"target": "chat", "text": "x"})
	require.Error(t, err)
	texts = append(texts, err.Error())
	err = n.Hook(context.Background(), hookEvent)
	require.Error(t, err)
	texts = append(texts, err.Error())

	// Printed and marshalled configs redact the URL and header values.
	texts = append(texts, fmt.Sprintf("%v", cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg), fmt.Sprint(cfg.Targets["echo"]))
	j, err := json.Marshal(cfg)
	require.NoError(t, err)
	y, err := yaml.Marshal(cfg)
	require.NoError(t, err)
	texts = append(texts, string(j), string(y))
	require.Contains(t, string(j), `"url":"\u003credacted\u003e"`)
	require.Contains(t, string(y), "url: <redacted>")
	require.Contains(t, string(y), "Authorization: <redacted>")

	// Network errors.
	echo.Close()
	_, err = execute(t, n, map[string]any{"target": "echo", "text": "x"})
	require.Error(t, err)
	texts = append(texts, err.Error())
	err = n.Hook(context.Background(), hookEvent)
	require.Error(t, err)
	texts = append(texts, err.Error())

	for _, text := range texts {
		requireNoSecret(t, text)
		require.NotContains(t, text, "hdr-")
	}
}

func TestSuccessfulOutputHoldsNoURL(t *testing.T) {
	chat := newReceiver(t, http.StatusOK)
	n := newNotifier(t, notify.Config{Targets: map[string]notify.Target{"chat": {Kind: "slack", URL: chat.url()}}})
	res, err := execute(t, n, map[string]any{"target": "chat", "text": "x"})
	require.NoError(t, err)
	out, err := json.Marshal(res)
	require.NoError(t, err)
	require.JSONEq(t, `{"output":{"target":"chat","status":200}}`, string(out))
}

// A dry-run plan's message says so, so nobody mistakes it for a fix.
func TestNotifyDryRunIsMarked(t *testing.T) {
	var got map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewDecoder(r.Body).Decode(&got)
	}))
	defer srv.Close()
	n, err := notify.New(notify.Config{Targets: map[string]notify.Target{"ops": {Kind: notify.KindWebhook, URL: srv.URL}}}, nil)
	require.NoError(t, err)
	_, err = n.Spec().Executor.Execute(context.Background(), step.Request{WorkflowID: "w", Step: "tell", DryRun: true,
		Params: map[string]any{"target": "ops", "text": "Restarted shop/api"}})
	require.NoError(t, err)
	require.Equal(t, notify.DryRunPrefix+"Restarted shop/api", got["text"])
}
