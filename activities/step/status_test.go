package step_test

import (
	"testing"

	"github.com/salve-sre/salve/activities/step"
)

func TestPermanentStatus(t *testing.T) {
	for code, want := range map[int]bool{200: false, 302: false, 400: true, 404: true, 408: false, 429: false, 499: true, 500: false, 503: false} {
		if got := step.PermanentStatus(code); got != want {
			t.Errorf("PermanentStatus(%d) = %v, want %v", code, got, want)
		}
	}
}
