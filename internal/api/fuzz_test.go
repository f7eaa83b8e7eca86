package api_test

import (
	"encoding/json"
	"net/http"
	"testing"
)

// FuzzOperateBodies sends arbitrary bodies to the endpoints that take
// one. Whatever arrives, the answer is a JSON 2xx or 4xx (never a 5xx or a
// panic), and a run is started or decided only for a body that is valid
// JSON.
func FuzzOperateBodies(f *testing.F) {
	for _, seed := range []string{
		`{"params":{"namespace":"shop","deployment":"api"}}`,
		`{"params":{"namespace":"shop","deployment":"api"},"dryRun":true,"reason":"r","incidentKey":"k"}`,
		`{"reason":"ok","step":"restart"}`, `{"to":"approve","override":true,"reason":"x"}`,
		`{"dryrun":true}`, `{"params":{"namespace":1}}`, `[]`, `null`, `{"reason":"\u0000"}`, `{"a":`, ``,
		`{"params":{"namespace":"shop","deployment":"api"}} {"x":1}`,
	} {
		f.Add(seed)
	}
	fx := newFixture(f)
	paths := []string{launchPath, approvePath, "/v1/runs/salve%2Frestart-crashlooping%2Fshop%2Fapi/reject", "/v1/runs/salve%2Frestart-crashlooping%2Fshop%2Fapi/cancel",
		"/v1/runbooks/restart-crashlooping/promote"}
	f.Fuzz(func(t *testing.T, body string) {
		for _, p := range paths {
			before := len(fx.runs.launchCalls()) + len(fx.runs.decisionCalls())
			rec := fx.do(request{method: http.MethodPost, path: p, token: fx.tok.admin, body: body})
			if rec.Code >= 500 {
				t.Fatalf("%s: %d for body %q: %s", p, rec.Code, body, rec.Body.String())
			}
			var out map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
				t.Fatalf("%s: answer is not a JSON object: %q", p, rec.Body.String())
			}
			after := len(fx.runs.launchCalls()) + len(fx.runs.decisionCalls())
			if after > before && !json.Valid([]byte(body)) && body != "" {
				t.Fatalf("%s: acted on invalid JSON %q", p, body)
			}
		}
	})
}
