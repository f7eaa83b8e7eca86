package notify_test

import (
	"strings"
	"testing"

	"github.com/salve-sre/salve/activities/notify"
)

// FuzzNewNeverQuotesURL checks that no config error quotes a target's URL,
// whatever it looks like (only URLs that pass are kept, and never shown).
func FuzzNewNeverQuotesURL(f *testing.F) {
	for _, seed := range [][2]string{
		{"https://hooks.example.com/services/", "slack"},
		{"ftp://hooks.example.com/", "slack"},
		{"https:///", "webhook"},
		{"https://hooks.example.com/\x7f", "webhook"},
		{"http://user:", "slak"},
		{"https://[::1", "webhook"},
		{"", ""},
	} {
		f.Add(seed[0], seed[1])
	}
	const marker = "zz-s3cr3t-zz"
	f.Fuzz(func(t *testing.T, prefix, kind string) {
		raw := prefix + marker
		_, err := notify.New(notify.Config{
			Targets: map[string]notify.Target{"t": {Kind: kind, URL: raw, Headers: map[string]string{"X-Key": marker + "\n"}}},
			Hooks:   []notify.Hook{{Target: "t", Events: []string{kind}}},
		}, nil)
		if err != nil && strings.Contains(err.Error(), marker) {
			t.Fatalf("config error quotes the URL or a header value: %v", err)
		}
	})
}
