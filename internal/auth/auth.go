package auth

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// Role is what a token may do. Each role includes the ones below it.
type Role int

// Roles, weakest first.
const (
	RoleNone     Role = iota // public endpoints: health, readiness, the API description
	RoleViewer               // read runs, runbooks, approvals, audit
	RoleOperator             // launch, cancel, approve and reject runs
	RoleAdmin                // everything, incl. runbook reload and circuit-breaker reset
)

// RoleNames lists the configurable roles.
var RoleNames = []string{"viewer", "operator", "admin"}

func (r Role) String() string {
	switch r {
	case RoleViewer:
		return "viewer"
	case RoleOperator:
		return "operator"
	case RoleAdmin:
		return "admin"
	}
	return "none"
}

// ParseRole reads a role name.
func ParseRole(s string) (Role, error) {
	switch s {
	case "viewer":
		return RoleViewer, nil
	case "operator":
		return RoleOperator, nil
	case "admin":
		return RoleAdmin, nil
	}
	return RoleNone, fmt.Errorf("unknown role %q: want one of %s", s, strings.Join(RoleNames, ", "))
}

// TokenConfig is one API token in Salve's configuration. Only the hash of
// the token is stored: `salve token create` prints both.
type TokenConfig struct {
	Subject string   `yaml:"subject" json:"subject"`
	Role    string   `yaml:"role" json:"role"`
	Groups  []string `yaml:"groups,omitempty" json:"groups,omitempty"`
	SHA256  string   `yaml:"sha256" json:"sha256"`
}

// Principal is an authenticated caller.
type Principal struct {
	Subject string   `json:"subject"`
	Role    Role     `json:"-"`
	Groups  []string `json:"groups,omitempty"`
}

// Can reports whether the principal's role includes need.
func (p Principal) Can(need Role) bool { return p.Role >= need }

type entry struct {
	hash []byte
	p    Principal
}

// Authenticator checks bearer tokens against the configured hashes.
type Authenticator struct {
	tokens []entry
}

// Errors of Authenticate; both mean HTTP 401.
var (
	ErrNoToken  = errors.New("no API token: send the header Authorization: Bearer <token> (create a token with: salve token create --role viewer --subject NAME)")
	ErrBadToken = errors.New("the API token is not valid: it is unknown, revoked, or not an API token (the Alertmanager webhook token only works on POST /v1/alertmanager)")
)

// New checks the configured tokens and returns an Authenticator. Every
// problem is reported at once, naming the entry.
func New(cfgs []TokenConfig) (*Authenticator, error) {
	a := &Authenticator{}
	var problems []string
	seen := map[string]int{}
	for i, c := range cfgs {
		where := fmt.Sprintf("auth.tokens[%d]", i)
		if c.Subject != "" {
			where += " (" + c.Subject + ")"
		}
		role, err := ParseRole(c.Role)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s.role: %v", where, err))
		}
		if strings.TrimSpace(c.Subject) == "" {
			problems = append(problems, where+".subject: required: who holds the token, as the audit log should name them")
		}
		h, err := hex.DecodeString(strings.ToLower(c.SHA256))
		if err != nil || len(h) != 32 {
			problems = append(problems, where+".sha256: want the 64 hex digits `salve token create` printed (the token's SHA-256), not the token itself")
		}
		if j, dup := seen[strings.ToLower(c.SHA256)]; dup && c.SHA256 != "" {
			problems = append(problems, fmt.Sprintf("%s.sha256: the same token as auth.tokens[%d]", where, j))
		}
		seen[strings.ToLower(c.SHA256)] = i
		a.tokens = append(a.tokens, entry{hash: h, p: Principal{Subject: c.Subject, Role: role, Groups: slices.Clone(c.Groups)}})
	}
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "\n"))
	}
	return a, nil
}

// Len is the number of configured tokens.
func (a *Authenticator) Len() int { return len(a.tokens) }

// Authenticate returns the caller of r. Every configured hash is compared,
// in constant time, whatever matches: timing tells nothing about which
// tokens exist.
func (a *Authenticator) Authenticate(r *http.Request) (Principal, error) {
	tok, ok := BearerToken(r)
	if !ok {
		return Principal{}, ErrNoToken
	}
	return a.Token(tok)
}

// Token returns the holder of a token.
func (a *Authenticator) Token(tok string) (Principal, error) {
	if tok == "" {
		return Principal{}, ErrNoToken
	}
	return a.ByHash(HashToken(tok))
}

// BearerToken returns the request's bearer token, if it has one.
func BearerToken(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}
