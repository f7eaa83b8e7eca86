// Package auth authenticates API callers by bearer token and decides what
// each role may do. Tokens are configured as SHA-256 hashes; a request's
// token is hashed and compared in constant time.
package auth
