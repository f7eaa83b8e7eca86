package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
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
