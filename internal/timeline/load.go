package timeline

import (
	"context"
	"slices"
	"time"

	"github.com/salve-sre/salve/internal/audit"
	"github.com/salve-sre/salve/internal/domain"
)

// Querier reads audit records; *audit.Store implements it.
type Querier interface {
	Query(ctx context.Context, f audit.Filter) ([]audit.Record, error)
}

// MaxRecords bounds each audit query a timeline makes.
const MaxRecords = 10000

// Load reads an incident's timeline from the audit log: the records that
// carry its key, every record of its runs (step events carry the run, not
// the key), and the alerts accepted from a day before its first record on
// (Build keeps those of the incident's fingerprints). found is false when
// the log has no record of the incident. The API and the dashboard both
// read timelines through it.
func Load(ctx context.Context, q Querier, incident string) (tl Timeline, found bool, err error) {
	recs, err := q.Query(ctx, audit.Filter{IncidentKey: incident, Limit: MaxRecords})
	if err != nil || len(recs) == 0 {
		return Timeline{}, false, err
	}
	seen := make(map[int64]bool, len(recs))
	for _, rec := range recs {
		seen[rec.Seq] = true
	}
	all := slices.Clone(recs)
	runsSeen := map[string]bool{}
	for _, rec := range recs {
		wf := rec.Event.WorkflowID
		if wf == "" || runsSeen[wf] {
			continue
		}
		runsSeen[wf] = true
		more, err := q.Query(ctx, audit.Filter{WorkflowID: wf, Limit: MaxRecords})
		if err != nil {
			return Timeline{}, false, err
		}
		for _, m := range more {
			if !seen[m.Seq] {
				seen[m.Seq] = true
				all = append(all, m)
			}
		}
	}
	alerts, err := q.Query(ctx, audit.Filter{Action: domain.ActionAlertAccepted, Since: recs[0].Event.Time.Add(-24 * time.Hour), Limit: MaxRecords})
	if err != nil {
		return Timeline{}, false, err
	}
	return Build(incident, all, alerts), true, nil
}
