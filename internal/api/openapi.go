package api

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"

	"gopkg.in/yaml.v3"
)

// openapiYAML is the API's description, written by hand next to the
// handlers; a test checks it against Routes and validates real answers
// against its schemas.
//
//go:embed openapi.yaml
var openapiYAML []byte

// OpenAPI returns the API description as JSON.
func OpenAPI() ([]byte, error) {
	var doc any
	if err := yaml.Unmarshal(openapiYAML, &doc); err != nil {
		return nil, fmt.Errorf("openapi.yaml: %w", err)
	}
	return json.MarshalIndent(doc, "", "  ")
}

var openapiJSON, openapiErr = OpenAPI()

func (s *Server) openAPI(w http.ResponseWriter, r *http.Request) {
	if openapiErr != nil {
		http.Error(w, openapiErr.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(openapiJSON)
}
