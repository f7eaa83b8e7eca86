package backtest

import (
	"context"
	"fmt"
	"time"

	"github.com/salve-sre/salve/internal/audit"
)

// AlertLister reads Salve's alert history (GET /v1/alerts); the API
// client implements it.
type AlertLister interface {
	Alerts(ctx context.Context, since time.Time, limit int) ([]audit.AlertState, error)
}

// salvePage is the most GET /v1/alerts answers at once.
const salvePage = 10000

// SalveOccurrences reads the alert occurrences Salve received that started
// in [start, end), page by page: each page starts at the last start time
// of the previous one, and occurrences already read are skipped. An alert
// firing at received time is what Salve's trigger saw; its resolution
// ends it.
func SalveOccurrences(ctx context.Context, l AlertLister, start, end time.Time, progress func(read int)) ([]Occurrence, error) {
	type key struct {
		fp string
		at time.Time
	}
	seen := map[key]bool{}
	var out []Occurrence
	for since := start; ; {
		page, err := l.Alerts(ctx, since, salvePage)
		if err != nil {
			return nil, fmt.Errorf("read Salve's alert history since %s: %w", since.Format(time.RFC3339), err)
		}
		added := 0
		for _, a := range page {
			k := key{a.Fingerprint, a.StartsAt}
			if seen[k] || !a.StartsAt.Before(end) {
				continue
			}
			seen[k], added = true, added+1
			out = append(out, Occurrence{Labels: a.Labels, Fingerprint: a.Fingerprint, Start: a.ReceivedAt, End: a.ResolvedAt})
		}
		if progress != nil {
			progress(len(out))
		}
		if len(page) < salvePage || page[len(page)-1].StartsAt.After(end) {
			return out, nil
		}
		if added == 0 {
			return nil, fmt.Errorf("more than %d alerts start at %s: Salve's API cannot page past them", salvePage, since.Format(time.RFC3339Nano))
		}
		since = page[len(page)-1].StartsAt
	}
}
