package httpreq_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/activities/httpreq"
	"github.com/salve-sre/salve/activities/step"
)

// seen is what the test server received.
type seen struct {
	method, path, body string
	header             http.Header
}

// server is a real HTTP server on a loopback port that records each request
// and answers with the status and body the test sets.
type server struct {
	*httptest.Server
	mu     sync.Mutex
	reqs   []seen
	status int
	body   string
}

func newServer(t *testing.T, status int, body string) *server {
	t.Helper()
	s := &server{status: status, body: body}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.reqs = append(s.reqs, seen{method: r.Method, path: r.URL.Path, body: string(b), header: r.Header.Clone()})
		status, body := s.status, s.body
		s.mu.Unlock()
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *server) requests() []seen {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]seen(nil), s.reqs...)
}

func execute(t *testing.T, ctx context.Context, params map[string]any) (step.Result, error) {
	t.Helper()
	return httpreq.Spec(nil).Executor.Execute(ctx, step.Request{
		WorkflowID:     "salve/restart/abc",
		RunID:          "run-1",
		Runbook:        "restart",
		Step:           "notify",
		Kind:           httpreq.Kind,
		Params:         params,
		IdempotencyKey: "salve/restart/abc/notify",
	})
}

func TestSpec(t *testing.T) {
	s := httpreq.Spec(nil)
	require.Equal(t, "http.request", s.Kind)
	require.Equal(t, httpreq.Kind, s.Kind)
	require.True(t, s.Mutating)
	require.NotNil(t, s.Executor)
	p, ok := s.Params.Lookup("url")
	require.True(t, ok)
	require.True(t, p.Required)
}

func TestRequestIsSentAsAsked(t *testing.T) {
	for _, tc := range []struct {
		name       string
		params     map[string]any
		wantMethod string
		wantBody   string
		wantHeader map[string]string
	}{
		{
			name:       "default method is GET without a body",
			params:     map[string]any{},
			wantMethod: http.MethodGet,
		},
		{
			name: "POST with headers and body",
			params: map[string]any{
				"method":  "POST",
				"headers": map[string]any{"Content-Type": "application/json", "X-Salve-Test": "yes"},
				"body":    `{"restart":"api"}`,
			},
			wantMethod: http.MethodPost,
			wantBody:   `{"restart":"api"}`,
			wantHeader: map[string]string{"Content-Type": "application/json", "X-Salve-Test": "yes"},
		},
		{
			name:       "method is upper-cased",
			params:     map[string]any{"method": "put", "body": "x"},
			wantMethod: http.MethodPut,
			wantBody:   "x",
		},
		{
			name: "headers as map[string]string",
			params: map[string]any{
				"method":  "DELETE",
				"headers": map[string]string{"Authorization-Ref": "role/ops"},
			},
			wantMethod: http.MethodDelete,
			wantHeader: map[string]string{"Authorization-Ref": "role/ops"},
		},
		{
			name: "the step's own User-Agent and Idempotency-Key win over headers",
			params: map[string]any{
				"headers": map[string]any{"User-Agent": "curl", "Idempotency-Key": "forged"},
			},
			wantMethod: http.MethodGet,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, http.StatusOK, "ok")
			params := map[string]any{"url": srv.URL + "/hook"}
			for k, v := range tc.params {
				params[k] = v
			}
			res, err := execute(t, context.Background(), params)
			require.NoError(t, err)
			require.Equal(t, http.StatusOK, res.Output["status"])
			require.NotContains(t, res.Output, "body", "the answer is not kept unless the step asks (keepBody)")
			require.EqualValues(t, 2, res.Output["size"])
			sum := sha256.Sum256([]byte("ok"))
			require.Equal(t, hex.EncodeToString(sum[:]), res.Output["sha256"])

			reqs := srv.requests()
			require.Len(t, reqs, 1, "one request per attempt: retries are Temporal's job")
			got := reqs[0]
			require.Equal(t, tc.wantMethod, got.method)
			require.Equal(t, "/hook", got.path)
			require.Equal(t, tc.wantBody, got.body)
			require.Equal(t, "salve/restart/abc/notify", got.header.Get("Idempotency-Key"))
			require.Equal(t, "salve", got.header.Get("User-Agent"))
			for k, v := range tc.wantHeader {
				require.Equal(t, v, got.header.Get(k), "header %s", k)
			}
		})
	}
}

func TestNoIdempotencyKeyHeaderWithoutKey(t *testing.T) {
	srv := newServer(t, http.StatusNoContent, "")
	_, err := httpreq.Spec(nil).Executor.Execute(context.Background(), step.Request{
		Kind:   httpreq.Kind,
		Params: map[string]any{"url": srv.URL},
	})
	require.NoError(t, err)
	reqs := srv.requests()
	require.Len(t, reqs, 1)
	_, present := reqs[0].header["Idempotency-Key"]
	require.False(t, present)
}

func TestStatusChecks(t *testing.T) {
	for _, tc := range []struct {
		name          string
		status        int
		expect        []any // nil: default (any 2xx)
		wantErr       bool
		wantPermanent bool
	}{
		{name: "200 by default", status: 200},
		{name: "201 by default", status: 201},
		{name: "204 by default", status: 204},
		{name: "299 by default", status: 299},
		{name: "302 is not 2xx", status: 302, wantErr: true},
		{name: "404 is permanent", status: 404, wantErr: true, wantPermanent: true},
		{name: "409 is permanent", status: 409, wantErr: true, wantPermanent: true},
		{name: "400 is permanent", status: 400, wantErr: true, wantPermanent: true},
		{name: "403 is permanent", status: 403, wantErr: true, wantPermanent: true},
		{name: "408 is retryable", status: 408, wantErr: true},
		{name: "429 is retryable", status: 429, wantErr: true},
		{name: "500 is retryable", status: 500, wantErr: true},
		{name: "502 is retryable", status: 502, wantErr: true},
		{name: "503 is retryable", status: 503, wantErr: true},
		{name: "expected 404 is success", status: 404, expect: []any{404}},
		{name: "expected list of ints", status: 202, expect: []any{200, 202}},
		{name: "expected list of float64 (JSON round trip)", status: 409, expect: []any{float64(409)}},
		{name: "expected list of strings (rendered templates)", status: 410, expect: []any{"410"}},
		{name: "200 not in the list fails", status: 200, expect: []any{204}, wantErr: true},
		{name: "404 not in the list is permanent", status: 404, expect: []any{200}, wantErr: true, wantPermanent: true},
		{name: "500 not in the list is retryable", status: 500, expect: []any{200}, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, tc.status, "answer")
			params := map[string]any{"url": srv.URL}
			if tc.expect != nil {
				params["expectStatus"] = tc.expect
			}
			res, err := execute(t, context.Background(), params)
			// The answer is kept even when the status is wrong, so a
			// failure's audit and history say what the server said.
			require.Equal(t, tc.status, res.Output["status"])
			wantSize := len("answer")
			if tc.status == http.StatusNoContent {
				wantSize = 0 // a 204 has no body
			}
			require.EqualValues(t, wantSize, res.Output["size"])
			if !tc.wantErr {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			require.Contains(t, err.Error(), "unexpected status")
			require.False(t, errors.Is(err, step.ErrInvalidParams))
			require.Equal(t, tc.wantPermanent, errors.Is(err, step.ErrPermanent), "errors.Is(err, ErrPermanent) for %d: %v", tc.status, err)
		})
	}
}

func TestBodyIsKeptOnlyWhenAskedAndTruncatedTo4KiB(t *testing.T) {
	for _, tc := range []struct {
		name    string
		size    int
		wantLen int
	}{
		{name: "small", size: 10, wantLen: 10},
		{name: "exactly 4 KiB", size: 4096, wantLen: 4096},
		{name: "one byte over", size: 4097, wantLen: 4096},
		{name: "1 MiB", size: 1 << 20, wantLen: 4096},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := strings.Repeat("x", tc.size)
			srv := newServer(t, http.StatusOK, body)
			res, err := execute(t, context.Background(), map[string]any{"url": srv.URL})
			require.NoError(t, err)
			require.NotContains(t, res.Output, "body")
			require.EqualValues(t, tc.size, res.Output["size"], "the size is of the whole answer")
			res, err = execute(t, context.Background(), map[string]any{"url": srv.URL, "keepBody": true})
			require.NoError(t, err)
			got, ok := res.Output["body"].(string)
			require.True(t, ok)
			require.Len(t, got, tc.wantLen)
			require.Equal(t, body[:tc.wantLen], got)
			require.Equal(t, http.StatusOK, res.Output["status"])
		})
	}
}

func TestConnectionRefusedIsRetryable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens on the port any more

	_, err := execute(t, context.Background(), map[string]any{"url": url + "/hook"})
	require.Error(t, err)
	require.False(t, errors.Is(err, step.ErrPermanent))
	require.False(t, errors.Is(err, step.ErrInvalidParams))
	require.Contains(t, err.Error(), "GET")
}

// TestErrorsDoNotLeakURLSecrets checks that user info and query strings —
// where tokens hide — never reach error text (which goes to logs, audit and
// workflow history).
func TestErrorsDoNotLeakURLSecrets(t *testing.T) {
	const (
		password = "hunter2-pass"
		token    = "tok-s3cr3t-value"
	)
	for _, tc := range []struct {
		name   string
		status int
	}{
		{name: "unexpected 500", status: 500},
		{name: "unexpected 404", status: 404},
		{name: "unexpected 429", status: 429},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, tc.status, "")
			u := strings.Replace(srv.URL, "http://", "http://ops:"+password+"@", 1) + "/hook?token=" + token
			_, err := execute(t, context.Background(), map[string]any{"url": u})
			require.Error(t, err)
			require.NotContains(t, err.Error(), password)
			require.NotContains(t, err.Error(), token)
			require.NotContains(t, err.Error(), "ops:")
			require.Contains(t, err.Error(), "/hook", "the error still says which endpoint failed")
		})
	}

	// Transport errors: net/http's *url.Error repeats the whole URL.
	t.Run("connection refused", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		u := strings.Replace(srv.URL, "http://", "http://ops:"+password+"@", 1) + "/hook?token=" + token
		srv.Close()
		_, err := execute(t, context.Background(), map[string]any{"url": u})
		require.Error(t, err)
		require.NotContains(t, err.Error(), password)
		require.NotContains(t, err.Error(), token)
		require.NotContains(t, err.Error(), "ops")
	})
	// Invalid parameters never echo the secret parts either.
	for _, u := range []string{
		"ftp://ops:" + password + "@x/?token=" + token,
		"http://ops:" + password + "@x:bad/?token=" + token,
		"http://ops:" + password + "@/?token=" + token,
	} {
		t.Run("invalid "+u[:8], func(t *testing.T) {
			_, err := execute(t, context.Background(), map[string]any{"url": u})
			require.ErrorIs(t, err, step.ErrInvalidParams)
			require.NotContains(t, err.Error(), password)
			require.NotContains(t, err.Error(), token)
		})
	}
}

func TestBadParamsAreInvalid(t *testing.T) {
	for _, tc := range []struct {
		name   string
		params map[string]any
		want   string
	}{
		{name: "missing url", params: map[string]any{}, want: "url"},
		{name: "empty url", params: map[string]any{"url": ""}, want: "url"},
		{name: "url not a string", params: map[string]any{"url": []any{"http://x"}}, want: "url"},
		{name: "ftp url", params: map[string]any{"url": "ftp://files.internal/x"}, want: "http:// or https://"},
		{name: "relative url", params: map[string]any{"url": "/hook"}, want: "http:// or https://"},
		{name: "method not a string", params: map[string]any{"url": "http://127.0.0.1:1/", "method": []any{"GET"}}, want: "method"},
		{name: "headers not a map", params: map[string]any{"url": "http://127.0.0.1:1/", "headers": "X-A: b"}, want: "headers"},
		{name: "header value not a string", params: map[string]any{"url": "http://127.0.0.1:1/", "headers": map[string]any{"X-A": []any{"b"}}}, want: "headers"},
		{name: "body not a string", params: map[string]any{"url": "http://127.0.0.1:1/", "body": map[string]any{"a": "b"}}, want: "body"},
		{name: "expectStatus not a list", params: map[string]any{"url": "http://127.0.0.1:1/", "expectStatus": 200}, want: "expectStatus"},
		{name: "expectStatus a string", params: map[string]any{"url": "http://127.0.0.1:1/", "expectStatus": "200"}, want: "expectStatus"},
		{name: "expectStatus code 99", params: map[string]any{"url": "http://127.0.0.1:1/", "expectStatus": []any{200, 99}}, want: "99"},
		{name: "expectStatus code 600", params: map[string]any{"url": "http://127.0.0.1:1/", "expectStatus": []any{600}}, want: "600"},
		{name: "expectStatus not a number", params: map[string]any{"url": "http://127.0.0.1:1/", "expectStatus": []any{"ok"}}, want: "expectStatus"},
		{name: "expectStatus fraction", params: map[string]any{"url": "http://127.0.0.1:1/", "expectStatus": []any{200.5}}, want: "expectStatus"},
		{name: "method with a space", params: map[string]any{"url": "http://127.0.0.1:1/", "method": "GET X"}, want: "build request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := execute(t, context.Background(), tc.params)
			require.Error(t, err)
			require.ErrorIs(t, err, step.ErrInvalidParams)
			require.False(t, errors.Is(err, step.ErrPermanent))
			require.Contains(t, err.Error(), tc.want)
			require.Nil(t, res.Output)
		})
	}
}

func TestContextDeadlineCancelsSlowServer(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // runs before srv.Close

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := execute(t, ctx, map[string]any{"url": srv.URL})
	elapsed := time.Since(start)

	require.Error(t, err)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.False(t, errors.Is(err, step.ErrPermanent))
	require.False(t, errors.Is(err, step.ErrInvalidParams))
	require.Less(t, elapsed, 10*time.Second, "the request must end with the context, not the server")
	select {
	case <-arrived:
	default:
		t.Fatal("the request never reached the server")
	}
}

type fakeSecrets map[string]string

func (f fakeSecrets) Resolve(_ context.Context, _ step.Request, ref string) (string, error) {
	v, ok := f[ref]
	if !ok {
		return "", fmt.Errorf("%w: no secret %s", step.ErrPermanent, ref)
	}
	return v, nil
}

// Secret headers are resolved in the activity and sent; the secret never
// appears in the output or an error.
func TestSecretHeaders(t *testing.T) {
	var got http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		w.WriteHeader(http.StatusForbidden)
	}))
	defer srv.Close()
	spec := httpreq.SpecWith(httpreq.Options{Secrets: fakeSecrets{"secret/pd#token": "s3cr3t-value"}})
	res, err := spec.Executor.Execute(context.Background(), step.Request{Params: map[string]any{
		"url": srv.URL, "secretHeaders": map[string]any{"Authorization": "Bearer ${secret/pd#token}"},
	}})
	require.Error(t, err)
	require.Equal(t, "Bearer s3cr3t-value", got.Get("Authorization"))
	require.NotContains(t, err.Error(), "s3cr3t")
	require.NotContains(t, fmt.Sprint(res.Output), "s3cr3t")

	_, err = spec.Executor.Execute(context.Background(), step.Request{Params: map[string]any{
		"url": srv.URL, "secretHeaders": map[string]any{"X-Token": "${secret/missing#token}"},
	}})
	require.ErrorIs(t, err, step.ErrPermanent)
	require.ErrorContains(t, err, "no secret secret/missing#token")

	_, err = spec.Executor.Execute(context.Background(), step.Request{Params: map[string]any{
		"url": srv.URL, "secretHeaders": map[string]any{"X-Token": "plain"},
	}})
	require.ErrorIs(t, err, step.ErrInvalidParams)

	_, err = httpreq.Spec(nil).Executor.Execute(context.Background(), step.Request{Params: map[string]any{
		"url": srv.URL, "secretHeaders": map[string]any{"X-Token": "${secret/pd#token}"},
	}})
	require.ErrorContains(t, err, "secret headers need Vault")
}

// A redirect never carries secret headers anywhere: with secrets, the
// first answer is the answer.
func TestSecretHeadersAreNotFollowedThroughRedirects(t *testing.T) {
	var leaked atomic.Bool
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Api-Key") != "" {
			leaked.Store(true)
		}
	}))
	defer other.Close()
	redirect := httptest.NewServer(http.RedirectHandler(other.URL, http.StatusFound))
	defer redirect.Close()
	spec := httpreq.SpecWith(httpreq.Options{Secrets: fakeSecrets{"secret/k#v": "s3cr3t"}})
	_, err := spec.Executor.Execute(context.Background(), step.Request{Params: map[string]any{
		"url": redirect.URL, "secretHeaders": map[string]any{"X-Api-Key": "${secret/k#v}"},
	}})
	require.ErrorContains(t, err, "unexpected status 302")
	require.False(t, leaked.Load(), "the secret header followed the redirect")
}
