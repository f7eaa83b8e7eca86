package api_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

// encoding/json matches field names case-insensitively; the API does not,
// so "dryrun" is an error, not a quiet dry run (or, worse, a quiet launch).
func TestLaunchFieldCaseIsExact(t *testing.T) {
	fx := newFixture(t)
	for _, body := range []string{`{"dryrun":true}`, `{"DryRun":true}`, `{"Params":{}}`} {
		rec := fx.do(request{method: http.MethodPost, path: launchPath, token: fx.tok.operator, body: body})
		require.Equal(t, http.StatusBadRequest, rec.Code, body)
		require.Contains(t, errorOf(t, rec), "unknown field", body)
		require.Contains(t, errorOf(t, rec), "known: params, dryRun, reason, incidentKey", body)
	}
	require.Empty(t, fx.runs.launchCalls())
}

// A path that exists for another method is a 405 naming the right one.
func TestWrongMethodIs405(t *testing.T) {
	fx := newFixture(t)
	rec := fx.do(request{method: http.MethodGet, path: "/v1/alertmanager"})
	require.Equal(t, http.StatusMethodNotAllowed, rec.Code)
	require.Equal(t, "POST", rec.Header().Get("Allow"))
	rec = fx.do(request{method: http.MethodGet, path: launchPath, token: fx.tok.operator})
	require.Equal(t, http.StatusMethodNotAllowed, rec.Code)
	rec = fx.do(request{method: http.MethodGet, path: "/v1/nothing"})
	require.Equal(t, http.StatusNotFound, rec.Code)
}

// Anonymous refusals are audited at most about once a second, so anyone
// who reaches the port cannot flood the audit log; the next record counts
// the ones skipped.
func TestAnonymousRefusalsAreRateLimited(t *testing.T) {
	fx := newFixture(t)
	for range 50 {
		rec := fx.do(request{method: http.MethodGet, path: "/v1/runs"})
		require.Equal(t, http.StatusUnauthorized, rec.Code)
	}
	require.Len(t, fx.recorder.events("auth.denied"), 1)
}
