package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math"
)

// TokenPrefix marks Salve API tokens, so secret scanners can find leaked
// ones and people can tell them from the webhook token.
const TokenPrefix = "salve_"

// NewToken returns a new random API token and the hash to put in the
// configuration. The token itself is shown once and never stored.
func NewToken() (token, hash string, err error) {
	buf := make([]byte, 32)
	if _, err := rand.Read(buf); err != nil {
		return "", "", fmt.Errorf("generate token: %w", err)
	}
	token = TokenPrefix + base64.RawURLEncoding.EncodeToString(buf)
	return token, HashToken(token), nil
}

// HashToken is how a token is stored: hex SHA-256. Tokens are 256 random
// bits, so a fast hash is enough (there is nothing to brute-force); a slow
// password hash would only make every API request slower.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// MinTokenBits is the least entropy a webhook token may carry.
const MinTokenBits = 128

// CheckWebhookToken refuses a webhook token a guesser could find: the
// token lets its holder start any runbook whose matchers its alerts meet,
// with label-chosen parameters. The estimate is the token's length times
// the bits of the character classes it uses, and it needs 12 distinct
// characters: "aaaa…" or a word repeated does not pass however long.
func CheckWebhookToken(tok string) error {
	classes := map[string]float64{}
	distinct := map[rune]bool{}
	for _, r := range tok {
		distinct[r] = true
		switch {
		case r >= '0' && r <= '9':
			classes["digit"] = 10
		case r >= 'a' && r <= 'z':
			classes["lower"] = 26
		case r >= 'A' && r <= 'Z':
			classes["upper"] = 26
		default:
			classes["other"] = 33
		}
	}
	var alphabet float64
	for _, n := range classes {
		alphabet += n
	}
	if isHex(tok) {
		alphabet = 16 // hex digits: 4 bits each, letters or not
	}
	bits := 0.0
	if alphabet > 1 {
		bits = float64(len([]rune(tok))) * math.Log2(alphabet)
	}
	if bits < MinTokenBits || len(distinct) < 12 {
		return fmt.Errorf("the webhook token is too weak (about %.0f bits, %d distinct characters; want at least %d bits and 12): anyone who guesses it can start runbooks. Leave --webhook-token and SALVE_WEBHOOK_TOKEN unset to have one generated, or use e.g. `openssl rand -hex 32`", bits, len(distinct), MinTokenBits)
	}
	return nil
}

func isHex(s string) bool {
	for _, r := range s {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f' || r >= 'A' && r <= 'F') {
			return false
		}
	}
	return s != ""
}
