// Package httpjson writes Salve's JSON answers: the one error body shape
// ({"error": "...", "detail": ...}) every HTTP handler uses — the webhook,
// the API and the role probes.
package httpjson

import (
	"encoding/json"
	"net/http"
)

// WriteError writes Salve's JSON error body: {"error": "...", "detail": ...}.
func WriteError(w http.ResponseWriter, code int, msg string, detail any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	body := map[string]any{"error": msg}
	if detail != nil {
		body["detail"] = detail
	}
	_ = json.NewEncoder(w).Encode(body)
}
