package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/salve-sre/salve/internal/auth"
	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/internal/httpjson"
	"github.com/salve-sre/salve/internal/runs"
	"github.com/salve-sre/salve/runbooks"
	"github.com/salve-sre/salve/workflows"
)

// maxBody bounds API request bodies; none needs more.
const maxBody = 1 << 20

type principalKey struct{}

// SessionCookie holds the web dashboard's session ID (HTTP-only; the
// session itself is kept server-side, auth.SessionStore), and CSRFHeader
// must accompany cookie-authenticated POSTs.
const (
	SessionCookie = "salve_session"
	CSRFHeader    = "X-Salve-Request"
)

// PrincipalFrom returns the caller a guarded handler runs for.
func PrincipalFrom(r *http.Request) (auth.Principal, bool) {
	p, ok := r.Context().Value(principalKey{}).(auth.Principal)
	return p, ok
}

// refusalLimiter lets one anonymous refusal a second into the audit log
// and counts the rest.
type refusalLimiter struct {
	mu      sync.Mutex
	last    time.Time
	skipped int64
}

func (l *refusalLimiter) allow(now time.Time) (bool, int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.last) < time.Second {
		l.skipped++
		return false, 0
	}
	l.last = now
	n := l.skipped
	l.skipped = 0
	return true, n
}

// SessionPrincipal returns the holder of the request's session cookie:
// the session must be live, and the API token that opened it still
// configured (removing a token ends its sessions).
func (s *Server) SessionPrincipal(r *http.Request) (auth.Principal, error) {
	c, err := r.Cookie(SessionCookie)
	if err != nil || c.Value == "" {
		return auth.Principal{}, auth.ErrNoToken
	}
	if s.Sessions == nil || s.Auth == nil {
		return auth.Principal{}, errors.New("this server keeps no dashboard sessions: use an API token")
	}
	sess, err := s.Sessions.Get(r.Context(), c.Value)
	if err != nil {
		return auth.Principal{}, err
	}
	return s.Auth.ByHash(sess.TokenSHA256)
}

// SecureRequest reports whether the browser reached Salve over HTTPS:
// directly, or — per a proxy listed in TrustedProxies — through a proxy
// that terminated TLS (X-Forwarded-Proto: https), or because PublicURL is
// https. Cookies are then marked Secure.
func (s *Server) SecureRequest(r *http.Request) bool {
	if r.TLS != nil || strings.HasPrefix(s.PublicURL, "https://") {
		return true
	}
	if r.Header.Get("X-Forwarded-Proto") != "https" {
		return false
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	for _, p := range s.TrustedProxies {
		if p.Contains(ip.Unmap()) {
			return true
		}
	}
	return false
}

// principal is the authenticated caller of a guarded request.
func principal(r *http.Request) auth.Principal {
	p, _ := r.Context().Value(principalKey{}).(auth.Principal)
	return p
}

// guard authenticates and authorizes a request for rt. 401 means "who are
// you?" (no or unknown token), 403 "you may not" (role or runbook policy);
// both say what is missing, and both are audited.
func (s *Server) guard(rt Route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rt.Role == auth.RoleNone {
			rt.handler(w, r)
			return
		}
		if s.Auth == nil {
			s.refuse(w, r, http.StatusUnauthorized, auth.Principal{}, "no API tokens are configured on this server: add auth.tokens to its config (salve token create prints an entry)")
			return
		}
		p, err := s.Auth.Authenticate(r)
		if errors.Is(err, auth.ErrNoToken) {
			// The web dashboard's session: the token in an HTTP-only
			// cookie. A state-changing request must also carry a header
			// that a cross-site form cannot send (there is no CORS), so a
			// page on another site cannot act with the cookie.
			if _, cerr := r.Cookie(SessionCookie); cerr == nil {
				p, err = s.SessionPrincipal(r)
				if err == nil && r.Method != http.MethodGet && r.Method != http.MethodHead && r.Header.Get(CSRFHeader) == "" {
					s.refuse(w, r, http.StatusForbidden, p, "a request authenticated by the session cookie must carry the header "+CSRFHeader+": 1")
					return
				}
			}
		}
		if err != nil {
			s.refuse(w, r, http.StatusUnauthorized, auth.Principal{}, err.Error())
			return
		}
		if !p.Can(rt.Role) {
			s.refuse(w, r, http.StatusForbidden, p, fmt.Sprintf("%s has role %s; %s %s needs role %s", p.Subject, p.Role, rt.Method, rt.Path, rt.Role))
			return
		}
		rt.handler(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	})
}

// refuse answers 401 or 403 and audits the refusal. Refusals of callers
// without a valid token are audited at most about once a second, each
// record counting those skipped since the last: anyone who can reach the
// port must not be able to flood the audit log. Refusals of authenticated
// callers are always audited.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, code int, p auth.Principal, msg string) {
	actor := domain.Actor{Kind: domain.ActorUser, Name: p.Subject}
	detail := map[string]string{"method": r.Method, "path": r.URL.EscapedPath(), "remote": r.RemoteAddr}
	audit := true
	if p.Subject == "" {
		actor.Name = "anonymous"
		var skipped int64
		audit, skipped = s.anonymous.allow(time.Now())
		if skipped > 0 {
			detail["unauditedSince"] = strconv.FormatInt(skipped, 10) + " more anonymous refusals since the last record"
		}
	}
	if audit {
		s.record(r.Context(), domain.AuditEvent{
			Actor:   actor,
			Action:  domain.ActionAuthDenied,
			Outcome: strconv.Itoa(code),
			Error:   msg,
			Detail:  detail,
		})
	} else {
		s.Log.Warn("refused request not audited (rate limit)", "status", code, "path", r.URL.EscapedPath(), "remote", r.RemoteAddr)
	}
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="salve"`)
	}
	httpjson.WriteError(w, code, msg, nil)
}

// record audits an API action. The ID is random: each request is its own
// action. A failure is logged; the request's own outcome stands.
func (s *Server) record(ctx context.Context, ev domain.AuditEvent) {
	if s.Recorder == nil {
		return
	}
	if err := s.recordOrFail(ctx, ev); err != nil {
		s.Log.Error("audit API action", "action", ev.Action, "error", err)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func actorOf(p auth.Principal) domain.Actor {
	return domain.Actor{Kind: domain.ActorUser, Name: p.Subject}
}

func (s *Server) whoami(w http.ResponseWriter, r *http.Request) {
	p := principal(r)
	groups := p.Groups
	if groups == nil {
		groups = []string{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"subject": p.Subject, "role": p.Role.String(), "groups": groups})
}

// decodeBody reads a JSON body strictly: unknown fields are errors, and so
// are known ones in the wrong case (encoding/json alone would take "dryrun"
// for "dryRun"), so a misspelt field never silently changes what happens.
// An empty body is {}.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			httpjson.WriteError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d bytes", maxBody), nil)
			return false
		}
		httpjson.WriteError(w, http.StatusBadRequest, "cannot read the request body: "+err.Error(), nil)
		return false
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		return true
	}
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		httpjson.WriteError(w, http.StatusUnsupportedMediaType, "send the body as Content-Type: application/json", nil)
		return false
	}
	if msg := unknownKeys(body, v); msg != "" {
		httpjson.WriteError(w, http.StatusBadRequest, "invalid JSON body: "+msg, nil)
		return false
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		httpjson.WriteError(w, http.StatusBadRequest, "invalid JSON body: "+strings.TrimPrefix(err.Error(), "json: "), nil)
		return false
	}
	if dec.More() {
		httpjson.WriteError(w, http.StatusBadRequest, "invalid JSON body: trailing data after the object", nil)
		return false
	}
	return true
}

// unknownKeys names the top-level keys of a JSON object that are not
// exactly the json names of v's struct fields; "" when all are.
func unknownKeys(body []byte, v any) string {
	var obj map[string]json.RawMessage
	if json.Unmarshal(body, &obj) != nil {
		return "" // not an object: the decoder says what is wrong
	}
	t := reflect.TypeOf(v)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return ""
	}
	names := map[string]bool{}
	var list []string
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			names[name] = true
			list = append(list, name)
		}
	}
	for k := range obj {
		if !names[k] {
			return fmt.Sprintf("unknown field %q (known: %s)", k, strings.Join(list, ", "))
		}
	}
	return ""
}

// runError answers an error from the run service with the status its
// kind calls for.
func (s *Server) runError(w http.ResponseWriter, what string, err error) {
	code := http.StatusServiceUnavailable
	switch {
	case errors.Is(err, runs.ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, runs.ErrConflict), errors.Is(err, runs.ErrNotRunning):
		code = http.StatusConflict
	case errors.Is(err, runs.ErrForbidden):
		code = http.StatusForbidden
	case errors.Is(err, runs.ErrBadRequest), errors.Is(err, runbooks.ErrParams):
		code = http.StatusBadRequest
	case errors.Is(err, runs.ErrNoWorker):
		s.Log.Warn(what, "error", err)
	default:
		s.Log.Error(what, "error", err)
		err = fmt.Errorf("cannot %s: Temporal: %w", what, err)
	}
	httpjson.WriteError(w, code, err.Error(), nil)
}

func (s *Server) runbook(w http.ResponseWriter, name string) (*runbooks.Runbook, bool) {
	set := s.Runbooks.Current()
	if set != nil {
		if rb, ok := set.Get(name); ok {
			return rb, true
		}
	}
	var names []string
	if set != nil {
		for _, rb := range set.All() {
			names = append(names, rb.Name())
		}
	}
	httpjson.WriteError(w, http.StatusNotFound, fmt.Sprintf("no runbook %q (loaded: %s)", name, strings.Join(names, ", ")), nil)
	return nil, false
}

var manualKeyTime = "20060102T150405Z"

// checkReason bounds a reason: it goes into history, the audit log, chat
// messages and other people's terminals. Writes the 400 when it fails.
func checkReason(w http.ResponseWriter, reason string) bool {
	if len(reason) > 1000 || strings.IndexFunc(reason, func(c rune) bool { return c != '\n' && c != '\t' && unicode.IsControl(c) }) >= 0 {
		httpjson.WriteError(w, http.StatusBadRequest, "reason must be at most 1000 characters of text (no control characters)", nil)
		return false
	}
	return true
}

// validIncidentKey: printable, bounded; slashes are fine (keys like ns/app).
var badKeyChar = regexp.MustCompile(`[\x00-\x1f\x7f]`)

// launch serves POST /v1/runbooks/{name}/launch.
func (s *Server) launch(w http.ResponseWriter, r *http.Request) {
	p := principal(r)
	rb, ok := s.runbook(w, r.PathValue("name"))
	if !ok {
		return
	}
	if err := rb.Spec.Access.MayLaunch(rb.Name(), p.Subject, p.Groups); err != nil {
		s.refuse(w, r, http.StatusForbidden, p, err.Error())
		return
	}
	var req runs.LaunchRequest
	if !decodeBody(w, r, &req) {
		return
	}
	idem := r.Header.Get("Idempotency-Key")
	if len(idem) > 200 {
		httpjson.WriteError(w, http.StatusBadRequest, "Idempotency-Key is longer than 200 characters", nil)
		return
	}
	key := req.IncidentKey
	switch {
	case key == "" && idem != "":
		// A retried request must name the same incident to find its run.
		sum := sha256.Sum256([]byte(p.Subject + "\x00" + rb.Name() + "\x00" + idem))
		key = "manual-" + hex.EncodeToString(sum[:6])
	case key == "":
		key = "manual-" + time.Now().UTC().Format(manualKeyTime) + "-" + randomHex(3)
	case len(key) > 200 || badKeyChar.MatchString(key) || strings.TrimSpace(key) != key:
		httpjson.WriteError(w, http.StatusBadRequest, "incidentKey must be at most 200 printable characters with no surrounding spaces", nil)
		return
	}
	if !checkReason(w, req.Reason) {
		return
	}
	workflowID := rb.WorkflowID(key)
	// The plan also checks the params: a bad one is a 400 naming it, and
	// nothing starts.
	plan, err := rb.Plan(s.Catalog, workflowID, key, nil, req.Params)
	if err != nil {
		if errors.Is(err, runbooks.ErrParams) {
			httpjson.WriteError(w, http.StatusBadRequest, err.Error(), nil)
		} else {
			httpjson.WriteError(w, http.StatusBadRequest, "cannot plan the run: "+err.Error(), nil)
		}
		return
	}
	if req.DryRun && plan.SLO != nil {
		s.planSLO(r.Context(), rb, plan.SLO)
	}
	detail := map[string]string{"reason": req.Reason}
	for k, v := range plan.Params {
		detail["param."+k] = v
	}
	// The run's safety target, so a shadow run watching it learns that a
	// person acted on it (internal/trust).
	if t, err := rb.Target(nil, req.Params); err == nil && t != "" {
		detail["target"] = t
		// Whether the run could act at all: a shadow runbook's is a
		// shadow run too, which is no person acting.
		detail["acts"] = strconv.FormatBool(rb.Spec.Safety.Acts())
	}
	base := domain.AuditEvent{Actor: actorOf(p), Runbook: rb.Name(), RunbookHash: rb.Hash, IncidentKey: key, Detail: detail}
	if req.DryRun {
		ev := base
		ev.Action, ev.Outcome = domain.ActionRunPlanned, "dry-run"
		s.record(r.Context(), ev)
		writeJSON(w, http.StatusOK, runs.LaunchResult{Runbook: rb.Name(), IncidentKey: key, Plan: plan})
		return
	}
	// An Idempotency-Key makes a retried POST find the run it started.
	requestID := idem
	if requestID == "" {
		requestID = randomHex(16)
	} else {
		requestID = p.Subject + "/" + requestID // one caller's key never finds another's run
	}
	wfID, runID, started, err := s.Runs.Launch(r.Context(), rb, key, req.Params, actorOf(p), req.Reason, requestID)
	if err != nil {
		if errors.Is(err, runs.ErrConflict) {
			ev := base
			ev.Action, ev.WorkflowID, ev.RunID, ev.Outcome, ev.Error = domain.ActionRunLaunched, wfID, runID, "conflict", err.Error()
			s.record(r.Context(), ev)
		}
		s.runError(w, "launch the run", err)
		return
	}
	ev := base
	ev.Action, ev.WorkflowID, ev.RunID, ev.Outcome = domain.ActionRunLaunched, wfID, runID, "started"
	if !started {
		ev.Outcome = "deduplicated" // a retry of a launch that already started this run
	}
	s.record(r.Context(), ev)
	writeJSON(w, http.StatusAccepted, runs.LaunchResult{WorkflowID: wfID, RunID: runID, Runbook: rb.Name(), IncidentKey: key, URL: s.runURL(r, wfID)})
}

func (s *Server) runURL(r *http.Request, workflowID string) string {
	base := s.PublicURL
	if base == "" {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		base = scheme + "://" + r.Host
	}
	return strings.TrimSuffix(base, "/") + "/v1/runs/" + url.PathEscape(workflowID)
}

// cancelRun serves POST /v1/runs/{id}/cancel.
func (s *Server) cancelRun(w http.ResponseWriter, r *http.Request) {
	p := principal(r)
	id := r.PathValue("id")
	var req runs.CancelRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if !checkReason(w, req.Reason) {
		return
	}
	rbName, key, _ := domain.ParseWorkflowID(id)
	if set := s.Runbooks.Current(); set != nil {
		if rb, ok := set.Get(rbName); ok {
			if err := rb.Spec.Access.MayCancel(rbName, p.Subject, p.Groups, p.Can(auth.RoleAdmin)); err != nil {
				s.refuse(w, r, http.StatusForbidden, p, err.Error())
				return
			}
		}
	}
	runID, err := s.Runs.Cancel(r.Context(), id, req.RunID, req.Reason, p.Subject+"@salve-api")
	if err != nil {
		s.runError(w, "cancel the run", err)
		return
	}
	s.record(r.Context(), domain.AuditEvent{Actor: actorOf(p), Action: domain.ActionRunCancelRequest, Runbook: rbName, IncidentKey: key,
		WorkflowID: id, RunID: runID, Outcome: "requested", Detail: map[string]string{"reason": req.Reason}})
	writeJSON(w, http.StatusAccepted, runs.CancelResult{WorkflowID: id, RunID: runID, Status: "cancel_requested"})
}

// decide serves POST /v1/runs/{id}/approve and /reject.
func (s *Server) decide(approve bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p := principal(r)
		id := r.PathValue("id")
		var req runs.DecisionRequest
		if !decodeBody(w, r, &req) {
			return
		}
		if strings.TrimSpace(req.Reason) == "" {
			httpjson.WriteError(w, http.StatusBadRequest, `a reason is required: send {"reason": "..."}; it goes into the audit log`, nil)
			return
		}
		if !checkReason(w, req.Reason) {
			return
		}
		ack, runID, err := s.Runs.Decide(r.Context(), id, req.RunID, workflows.Decision{
			Approve: approve, Step: req.Step, Reason: req.Reason, Actor: actorOf(p), Groups: p.Groups,
		})
		if errors.Is(err, runs.ErrForbidden) {
			s.refuse(w, r, http.StatusForbidden, p, err.Error())
			return
		}
		if err != nil {
			s.runError(w, "record the decision", err)
			return
		}
		writeJSON(w, http.StatusOK, runs.DecisionResult{WorkflowID: id, RunID: runID, Step: ack.Step, Decision: ack.Decision, By: p.Subject})
	}
}

func (s *Server) listApprovals(w http.ResponseWriter, r *http.Request) {
	list, err := s.Runs.PendingApprovals(r.Context())
	if err != nil {
		s.runError(w, "list approvals", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"approvals": list})
}

// getRunbook serves GET /v1/runbooks/{name}: the runbook, its latest runs
// and their success rate.
func (s *Server) getRunbook(w http.ResponseWriter, r *http.Request) {
	rb, ok := s.runbook(w, r.PathValue("name"))
	if !ok {
		return
	}
	body := map[string]any{"runbook": itemOf(rb), "spec": rb}
	if s.Safety != nil {
		if st, err := s.Safety.State(r.Context(), rb.Name()); err == nil {
			body["safety"] = st
		} else {
			body["safetyError"] = "safety state unavailable: " + err.Error()
		}
	}
	recent, stats, err := s.Runs.Stats(r.Context(), rb.Name(), 100)
	if err != nil {
		s.Log.Warn("runbook stats", "runbook", rb.Name(), "error", err)
		body["statsError"] = "recent runs unavailable: " + err.Error()
	} else {
		if len(recent) > 20 {
			recent = recent[:20]
		}
		body["recentRuns"], body["stats"] = recent, stats
	}
	writeJSON(w, http.StatusOK, body)
}

func (s *Server) reloadRunbooks(w http.ResponseWriter, r *http.Request) {
	if s.Reload == nil {
		httpjson.WriteError(w, http.StatusNotImplemented, "this server does not load runbooks from a directory", nil)
		return
	}
	s.record(r.Context(), domain.AuditEvent{Actor: actorOf(principal(r)), Action: domain.ActionRunbookReload, Outcome: "requested"})
	ch, err := s.Reload(r.Context())
	if err != nil {
		httpjson.WriteError(w, http.StatusInternalServerError, "reload runbooks: "+err.Error(), nil)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"loaded": nonNil(ch.Loaded), "removed": nonNil(ch.Removed), "rejected": nonNil(ch.Rejected)})
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
